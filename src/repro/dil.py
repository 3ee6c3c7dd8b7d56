"""D3 / NSD-DIL: one inverse of mild blur, learned from blur kernels alone.

Saraswathula & Gorthi, "D3: Deep Deconvolution Deblurring for Natural Images" (arXiv
2407.04815, first titled "NSD-DIL: Null-Shot Deblurring Using Deep Identity Learning"); the
implementation facts come from ``papers/FACTS.md`` ("NSD-DIL / D3"). The summary we reproduce
from (``papers/d3-nsd-dil.md``) numbers no equations, so this module names the terms instead
(identity, R1 area, R2 zero phase, R3 unit magnitude) and the docstrings say which sentence of
the summary or of FACTS.md each piece implements.

The idea in four steps, which is also the order of this file:

1. **A deep linear network** (L-CNN): five 3×3 convolutions, 1→32→32→32→32→1 channels, no
   bias, no activation. Without activations the whole network is one linear shift-invariant
   filter: a single 11×11 kernel.
2. **Collapse** (the Deep Restoration Kernel, DRK): compose the five layers into that kernel.
3. **Deep Identity Learning** (DIL): train the network so that, for every blur kernel k of a
   Random Kernel Gallery (RKG) of anisotropic Gaussians, k ⊛ DRK ≈ δ. No image is ever seen.
4. **Deblur**: convolve each colour channel of a blurred image with the DRK, clamp to [0, 1].

Orientation and borders, once for the whole module
--------------------------------------------------

* The DRK is a **convolution** kernel with its origin at index (5, 5), the project convention
  (``repro.ops``): deblurring is ``ops.blur(y, drk, op="conv")``. ``torch.nn.functional.conv2d``
  is a correlation, so the L-CNN correlates and its convolution kernel is the flipped
  correlation kernel; :func:`collapse` returns the convolution kernel.
* The L-CNN's layers have **no padding** (each 3×3 layer shrinks the image by 2 pixels, the
  network by 10). Any border convention is applied once, to the input, by :func:`lcnn_apply`:
  padding the input by 5 pixels with ``mode`` and running the valid network gives *exactly*
  ``ops.blur(x, drk, mode)`` for every mode of ``repro.ops`` (zero, symmetric, reflect, ...),
  borders included, and zero padding by 10 gives the full linear convolution. The common
  alternative, zero padding of 1 pixel in *every* layer, agrees with the DRK only 5 pixels
  away from the borders: it pads intermediate feature maps, which no single kernel can mimic.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import ops
from ._checks import check_choice, check_positive, check_positive_int, check_tensor, count_parameters
from ._schedule import half_cosine_lr
from ._threads import check_workers, fixed_cpu_threads, parallel_map
from .store import (check_profile, load_cached, load_checkpoint, load_json, move_aside, results_dir, save_checkpoint,
                    save_json)
from .timing import time_call

# --------------------------------------------------------------------------------------------
# 1. The deep linear network
# --------------------------------------------------------------------------------------------


class LinearCNN(nn.Module):
    """The L-CNN of D3: ``depth`` 3×3 convolutions, 1 → width → … → width → 1, no bias, no
    activation, stride 1, **no padding** (FACTS.md: five layers, width 32, 28,224 weights,
    receptive field 11×11).

    ``forward`` maps (B, 1, H, W) to (B, 1, H − 10, W − 10): the valid convolution with the
    DRK (:func:`collapse`). Use :func:`lcnn_apply` to choose a border convention and to run it on
    images of any shape (colour channels are processed independently, as in the paper).

    The weights are drawn from PyTorch's default convolution initialisation (uniform, bound
    1/√fan_in) with a seeded generator, so a seed fixes the network.
    """

    def __init__(self, width: int = 32, depth: int = 5, seed: int = 0):
        super().__init__()
        if not (isinstance(depth, int) and depth >= 1):
            raise ValueError(f"depth must be a positive int, got {depth!r}")
        if not (isinstance(width, int) and width >= 1):
            raise ValueError(f"width must be a positive int, got {width!r}")
        channels = [1] + [width] * (depth - 1) + [1]
        self.layers = nn.ModuleList(
            nn.Conv2d(c_in, c_out, kernel_size=3, bias=False) for c_in, c_out in zip(channels, channels[1:])
        )
        generator = torch.Generator().manual_seed(seed)
        for layer in self.layers:
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)

    @property
    def receptive_field(self) -> int:
        """Side of the collapsed kernel: 2 · depth + 1 (11 for the paper's five layers)."""
        return 2 * len(self.layers) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def multiply_adds_per_pixel(model: LinearCNN) -> int:
    """Multiply-adds per output pixel of the L-CNN: every weight is used once per pixel.

    (28,224 for the paper's network, against 121 for its 11×11 DRK applied directly.)
    """
    return count_parameters(model)


def _check_image(image: torch.Tensor, name: str) -> torch.Tensor:
    """``check_tensor(image, name, (2, 3, 4))`` at the cost of one reduction.

    check_tensor tests finiteness element-wise (several passes and temporaries: on a 1024² RGB
    image it took longer than the FFT filter itself). A NaN or ±Inf anywhere makes the sum NaN
    or ±Inf, so a finite sum proves the image finite; otherwise (or for a malformed argument)
    check_tensor runs and raises its own message. Same accepted inputs, same errors.
    """
    if (isinstance(image, torch.Tensor) and image.dtype in (torch.float32, torch.float64)
            and image.ndim in (2, 3, 4) and image.numel() and torch.isfinite(image.sum())):
        return image
    return check_tensor(image, name, (2, 3, 4))


def _as_batch(image: torch.Tensor, name: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    """View an (H, W), (C, H, W) or (B, C, H, W) image as (B·C, 1, H, W); also return its shape."""
    _check_image(image, name)
    return image.reshape(-1, 1, *image.shape[-2:]), tuple(image.shape)


def lcnn_apply(model: LinearCNN, image: torch.Tensor, mode: str = "symmetric",
               channels_last: bool = False) -> torch.Tensor:
    """Run the L-CNN on every channel of ``image`` under the border convention ``mode``.

    ``image`` is (H, W), (C, H, W) or (B, C, H, W); the result has its shape, except for
    ``mode="valid"`` (each side shrinks by 10) and ``mode="full"`` (each side grows by 10).
    The input is padded once by 5 pixels with ``mode`` (any mode of ``repro.ops.pad``), or by
    10 zeros for ``"full"``, then the unpadded network runs: the result equals
    ``ops.blur(image, collapse(model), mode)`` up to rounding, borders included (module
    docstring). ``channels_last=True`` runs the network on channels-last (NHWC) feature maps,
    the layout oneDNN's 32-channel convolutions run fastest in on the CPU (about twice as fast
    here; pass a model converted with ``model.to(memory_format=torch.channels_last)``); same
    result.
    """
    check_choice(mode, "mode", ops.MODES + ("full",))
    x, shape = _as_batch(image, "image")
    r = len(model.layers)
    if mode == "full":
        x = F.pad(x, (2 * r, 2 * r, 2 * r, 2 * r))
    elif mode != "valid":
        x = ops.pad(x, (r, r, r, r), mode)
    weight = model.layers[0].weight
    x = x.to(device=weight.device, dtype=weight.dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = model(x)
    return out.reshape(*shape[:-2], *out.shape[-2:])


# --------------------------------------------------------------------------------------------
# 2. Collapse: the Deep Restoration Kernel
# --------------------------------------------------------------------------------------------


def collapse_steps(model: LinearCNN) -> list[torch.Tensor]:
    """Effective correlation kernels from the input to every channel after each layer.

    Two correlations in a row are one correlation with the *full convolution* of their
    kernels: corr(corr(x, a), b) = corr(x, a ∗ b). Summing over the channels that connect them
    (the associativity and distributivity of LTI systems, summary "Mechanism 3"), the kernel
    from the input to channel o of layer l + 1 is

        E_{l+1}[o] = Σ_c  E_l[c] ∗ W_{l+1}[o, c]        (∗: full 2D convolution),

    with E_0 = δ. Returns [E_1, …, E_depth], E_l of shape (channels_l, 2l + 1, 2l + 1); E_1 is
    the first layer's 3×3 filters, E_depth the 11×11 correlation kernel of the whole network.
    Differentiable in the weights.
    """
    weight = model.layers[0].weight
    effective = torch.ones(1, 1, 1, 1, dtype=weight.dtype, device=weight.device)  # E_0 = δ, 1 channel
    steps = []
    for layer in model.layers:
        # conv2d correlates; correlating with the flipped filter and zero padding 2 is the full
        # convolution E_l[c] ∗ W[o, c], summed over c by conv2d itself.
        effective = F.conv2d(effective, layer.weight.flip(-2, -1), padding=2)
        steps.append(effective[0])
    return steps


def collapse(model: LinearCNN) -> torch.Tensor:
    """The DRK: the L-CNN as one **convolution** kernel (11, 11), origin at (5, 5).

    The network correlates with E_depth (:func:`collapse_steps`); a correlation with E is a
    convolution with E flipped, hence ``flip``. For every image x and every border mode,
    ``lcnn_apply(model, x, mode) == ops.blur(x, collapse(model), mode, op="conv")``.
    Differentiable in the weights (the DIL losses are computed through it).
    """
    return collapse_steps(model)[-1][0].flip(-2, -1)


# --------------------------------------------------------------------------------------------
# 3. Deep Identity Learning
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DILWeights:
    """Weights of the four terms of the DIL objective; 0 switches a term off.

    The paper's text gives no weights (FACTS.md: "Weights ... *(unverified)*: choose, document,
    and ablate them"). We take them **all equal to 1**, the choice that prefers no term, and
    show in ``d3_evaluation`` what each does (on/off ablation, and a sweep of ``magnitude``).
    What we found on the *training* side (RKG validation kernels, BSDS500 ``train`` images,
    never the test images), and why 1s are a reasonable default:

    * ``identity`` ‖k ⊛ DRK − δ‖₁ summed over the 21×21 pixels, ≈ 1 at initialisation. Alone,
      its L1 minimiser is the *zero* filter: for a blur with centre tap k₀ < ½, any non-zero
      output spreads mass over pixels where δ is 0 (e.g. ‖k ⊛ αδ − δ‖₁ = 1 + α(1 − 2k₀) > 1).
    * ``area`` |1 − Σ DRK| (R1) rules out that collapse and fixes the output brightness.
    * ``phase`` (R2) is nearly inert on this gallery: the per-pixel multiplicative noise of the
      RKG gives every kernel a white spectral floor (|F(k)| ≈ 0.01–0.02) of random phase over
      most high frequencies, which one shared DRK cannot align; the term stays ≈ 1.13 rad.
    * ``magnitude`` (R3) sets the sharpening strength: a larger weight boosts the frequencies
      the blur attenuated, gaining PSNR on noise-free mild blur and losing it under noise.
    """

    identity: float = 1.0
    area: float = 1.0
    phase: float = 1.0
    magnitude: float = 1.0

    def __post_init__(self):
        for name in ("identity", "area", "phase", "magnitude"):
            check_positive(getattr(self, name), f"DILWeights.{name}", allow_zero=True)
        if not any(getattr(self, name) for name in ("identity", "area", "phase", "magnitude")):
            raise ValueError("DILWeights: at least one weight must be > 0")


PHASE_MIN_MAGNITUDE = 1e-3
"""R2 ignores the frequencies where |F(k)·F(DRK)| is below this: there the phase of the
product is round-off noise, and the gradient of an angle grows like 1/|z|."""


def _full_convolution(kernels: torch.Tensor, drk: torch.Tensor) -> torch.Tensor:
    """k ⊛ DRK for a batch (B, s, s) of kernels: the full linear convolution, (B, s + r − 1, …)."""
    r = drk.shape[-1] - 1
    padded = F.pad(kernels[:, None], (r, r, r, r))
    return ops.blur(padded, drk, mode="valid", op="conv", method="direct")[:, 0]


def dil_terms(kernels: torch.Tensor, drk: torch.Tensor) -> dict[str, torch.Tensor]:
    """The four DIL terms for a batch of blur kernels and one inverse, each averaged over the batch.

    ``kernels`` (B, s, s) or (s, s), each summing to 1; ``drk`` (r, r), both with the origin
    at the centre. With o = k ⊛ DRK (full linear convolution, (s + r − 1)², origin at the
    centre) and its spectrum F(o) = F(k)·F(DRK) on the same grid (``ops.psf2otf``: origin at
    frequency-grid index 0, so a centred symmetric kernel has zero phase):

    * ``identity``  ‖o − δ‖₁, summed over pixels: the identity relation k ⊛ k⁻¹ = δ (summary,
      "Mechanism 1"). FACTS.md gives the input (the 11×11 blur kernel itself) and the target (a
      delta) but no padding; ours is the full output, the L-CNN fed k with r − 1 pixels of zero
      padding (``lcnn_apply(model, k, "full") == k ⊛ collapse(model)``), so that every pixel of
      the product is penalised: with "same" padding the outer ring of o would go unpenalised.
      Computing it through the DRK gives the same function and gradients at ~1/200 of the cost.
    * ``area``      |1 − Σ DRK| (R1, area preservation).
    * ``phase``     mean over frequencies of |∠(F(k)·F(DRK))|, i.e. ∠F(k) + ∠F(DRK) wrapped to
      (−π, π], vs 0 (R2, zero phase); frequencies with |F(o)| < :data:`PHASE_MIN_MAGNITUDE`
      count as 0.
    * ``magnitude`` mean over frequencies of ||F(k)|·|F(DRK)| − 1| (R3, unit magnitude).

    All are L1 as in FACTS.md. Differentiable in both arguments.
    """
    check_tensor(kernels, "kernels", (2, 3))
    check_tensor(drk, "drk", (2,))
    if kernels.ndim == 2:
        kernels = kernels[None]
    if kernels.dtype != drk.dtype or kernels.device != drk.device:
        raise ValueError(
            f"kernels ({kernels.dtype}, {kernels.device}) and drk ({drk.dtype}, {drk.device}) "
            f"must share dtype and device"
        )
    output = _full_convolution(kernels, drk)
    grid = tuple(output.shape[-2:])
    delta = torch.zeros(grid, dtype=drk.dtype, device=drk.device)
    delta[grid[0] // 2, grid[1] // 2] = 1

    spectrum_k = ops.psf2otf(kernels, grid)
    spectrum_drk = ops.psf2otf(drk, grid)
    product = spectrum_k * spectrum_drk
    reliable = product.abs().detach() >= PHASE_MIN_MAGNITUDE
    # atan2 on safe values: its gradient is 0/0 where the product vanishes
    phase = torch.atan2(
        torch.where(reliable, product.imag, torch.zeros_like(product.imag)),
        torch.where(reliable, product.real, torch.ones_like(product.real)),
    )
    return {
        "identity": (output - delta).abs().sum(dim=(-2, -1)).mean(),
        "area": (1 - drk.sum()).abs(),
        "phase": phase.abs().mean(),
        "magnitude": (spectrum_k.abs() * spectrum_drk.abs() - 1).abs().mean(),
    }


def dil_loss(
    kernels: torch.Tensor, model: LinearCNN, weights: DILWeights = DILWeights()
) -> tuple[torch.Tensor, dict[str, float]]:
    """The DIL objective: Σ_t weights.t · term_t (:func:`dil_terms`) for the model's DRK.

    Returns ``(loss, terms)``: the weighted sum (a differentiable scalar) and every term's
    value as a float, including the switched-off ones (for the loss curves).
    """
    if not isinstance(weights, DILWeights):
        raise ValueError(f"weights must be a DILWeights, got {type(weights).__name__}")
    terms = dil_terms(kernels, collapse(model))
    loss = sum(getattr(weights, name) * value for name, value in terms.items() if getattr(weights, name))
    return loss, {name: value.item() for name, value in terms.items()}


# --------------------------------------------------------------------------------------------
# 4. Training
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DILConfig:
    """Everything that defines one DIL training run (with the seed of :func:`train_dil`).

    The optimiser and schedule are ours (FACTS.md: *(unverified)*): **Adam** (β = 0.9, 0.999),
    the usual choice for a deep linear network whose layers have very different gradient
    scales, learning rate ``lr`` decayed along a half cosine to ``lr · lr_final_ratio`` over
    ``steps``; mini-batches of ``batch_size`` kernels drawn with replacement from the training
    part of the gallery, the last ``val_fraction`` of the gallery held out for validation.
    """

    weights: DILWeights = field(default_factory=DILWeights)
    gallery_size: int = 2400
    gallery_seed: int = 0
    val_fraction: float = 0.1
    steps: int = 3000
    batch_size: int = 64
    lr: float = 3e-3
    lr_final_ratio: float = 0.01
    log_every: int = 50
    checkpoint_every: int = 500

    def __post_init__(self):
        if not isinstance(self.weights, DILWeights):
            raise ValueError(f"DILConfig.weights must be a DILWeights, got {type(self.weights).__name__}")
        for name in ("gallery_size", "steps", "batch_size", "log_every", "checkpoint_every"):
            check_positive_int(getattr(self, name), f"DILConfig.{name}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"DILConfig.val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.gallery_size - round(self.gallery_size * self.val_fraction) < 1 or round(
            self.gallery_size * self.val_fraction
        ) < 1:
            raise ValueError(
                f"DILConfig: gallery_size={self.gallery_size} with val_fraction={self.val_fraction} "
                f"leaves an empty training or validation split"
            )
        check_positive(self.lr, "DILConfig.lr")
        check_positive(self.lr_final_ratio, "DILConfig.lr_final_ratio")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DILConfig:
        d = dict(d)
        return cls(weights=DILWeights(**d.pop("weights")), **d)

    def learning_rate(self, step: int) -> float:
        """Half-cosine decay from ``lr`` at step 0 to ``lr · lr_final_ratio`` at ``steps``."""
        return half_cosine_lr(self.lr, self.lr_final_ratio, step, self.steps)


@dataclass
class DILRun:
    """A trained (or partly trained) L-CNN with its DRK and loss curves."""

    model: LinearCNN
    config: DILConfig
    seed: int
    step: int
    history: list[dict]

    @property
    def drk(self) -> torch.Tensor:
        with torch.no_grad():
            return collapse(self.model).detach()


def split_gallery(gallery: torch.Tensor, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation): the gallery's kernels are i.i.d., so the last ``val_fraction`` is held out."""
    n_val = round(gallery.shape[0] * val_fraction)
    return gallery[: gallery.shape[0] - n_val], gallery[gallery.shape[0] - n_val :]


def _batch_indices(n: int, batch_size: int, seed: int, step: int, device) -> torch.Tensor:
    """The kernels of one step, a pure function of (seed, step): resuming replays them exactly."""
    if batch_size >= n:
        return torch.arange(n, device=device)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(n, (batch_size,), generator=generator).to(device)


def _fingerprint(gallery: torch.Tensor) -> str:
    return hashlib.sha256(gallery.detach().cpu().to(torch.float64).numpy().tobytes()).hexdigest()[:16]


def _evaluate_terms(kernels: torch.Tensor, model: LinearCNN, weights: DILWeights) -> dict[str, float]:
    with torch.no_grad():
        loss, terms = dil_loss(kernels, model, weights)
    return {"loss": loss.item(), **terms}


def train_dil(
    config: DILConfig = DILConfig(),
    seed: int = 0,
    checkpoint_path: str | Path | None = None,
    resume: bool = True,
    gallery: torch.Tensor | None = None,
    stop_at: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> DILRun:
    """Train an L-CNN by Deep Identity Learning on a Random Kernel Gallery.

    * ``gallery``: the kernels (n, s, s); by default ``kernels.random_kernel_gallery(
      config.gallery_size, 11, config.gallery_seed)`` (FACTS.md: 2,400 kernels of 11×11).
      The last ``config.val_fraction`` of it is the held-out validation split.
    * ``seed`` fixes the initial weights and the mini-batches; on one machine the same
      ``(config, seed, gallery)`` gives bit-identical weights (on the CPU training runs on one
      thread, so the thread count does not matter either).
    * ``checkpoint_path``: the model, optimiser, step and loss history are saved there
      atomically every ``config.checkpoint_every`` steps and at the end, the loss curves also
      as JSON beside it (same name, ``.json``). With ``resume=True`` an existing checkpoint is
      continued (a finished one is simply loaded); it must have been written for the same
      config, seed and gallery, otherwise ``ValueError`` (delete it to start over). Resuming
      replays exactly what an uninterrupted run would have computed, because the mini-batch of
      step t and the learning rate are pure functions of (seed, t).
    * ``stop_at``: stop after this step (saving a checkpoint) instead of ``config.steps``: a long
      run can be split into several shorter calls.

    The loss curves (``history``): every ``config.log_every`` steps, the DIL terms of the
    current mini-batch ("train") and of the whole validation split ("val").
    """
    from . import kernels as kernel_lib  # the gallery generator

    if not isinstance(config, DILConfig):
        raise ValueError(f"config must be a DILConfig, got {type(config).__name__}")
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if stop_at is not None and not (isinstance(stop_at, int) and 0 <= stop_at):
        raise ValueError(f"stop_at must be None or an int >= 0, got {stop_at!r}")
    if gallery is None:
        gallery = kernel_lib.random_kernel_gallery(config.gallery_size, 11, config.gallery_seed)
    check_tensor(gallery, "gallery", (3,))
    if gallery.shape[0] != config.gallery_size:
        raise ValueError(f"gallery has {gallery.shape[0]} kernels but config.gallery_size is {config.gallery_size}")
    device = torch.device(device)
    train_kernels, val_kernels = (part.to(device) for part in split_gallery(gallery, config.val_fraction))

    model = LinearCNN(seed=seed).to(device=device, dtype=gallery.dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    identity = {"config": config.to_dict(), "seed": seed, "gallery": _fingerprint(gallery)}
    step, history = 0, []
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    state = None
    if path is not None and resume:  # a corrupt checkpoint is moved aside and training starts over
        state = load_cached(path, lambda p: load_checkpoint(p, map_location=device),
                            is_valid=lambda s: isinstance(s, dict) and {"model", "optimizer", "step"} <= set(s))
    if state is not None:
        if state.get("run") != identity:
            raise ValueError(
                f"checkpoint {path} was written for another run ({state.get('run')}), not {identity}; "
                f"delete it or pass resume=False"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history = state["step"], state["history"]
    first = step

    def save():
        if path is not None:
            save_checkpoint(
                {"run": identity, "step": step, "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "history": history},
                path,
            )
            save_json({"run": identity, "step": step, "history": history}, path.with_suffix(".json"))

    last = config.steps if stop_at is None else min(stop_at, config.steps)
    bar = tqdm(total=last, initial=min(step, last), desc="DIL", disable=not progress, leave=False)
    with fixed_cpu_threads(device):
        while step < last:
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate(step)
            batch = train_kernels[_batch_indices(len(train_kernels), config.batch_size, seed, step, device)]
            loss, terms = dil_loss(batch, model, config.weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % config.log_every == 0 or step == config.steps:
                history.append({"step": step, "train": {"loss": loss.item(), **terms},
                                "val": _evaluate_terms(val_kernels, model, config.weights)})
                bar.set_postfix(loss=f"{loss.item():.4f}", val=f"{history[-1]['val']['loss']:.4f}")
            if step % config.checkpoint_every == 0:
                save()
            bar.update(1)
    bar.close()
    if step != first:  # a finished run read back is not written again
        save()
    return DILRun(model=model, config=config, seed=seed, step=step, history=history)


# --------------------------------------------------------------------------------------------
# 5. Deblurring with the DRK
# --------------------------------------------------------------------------------------------


def check_drk(drk: torch.Tensor, name: str = "drk") -> torch.Tensor:
    """A DRK is a square kernel (r, r) of odd side, finite, float32/float64."""
    check_tensor(drk, name, (2,))
    if drk.shape[0] != drk.shape[1] or drk.shape[0] % 2 == 0:
        raise ValueError(f"{name} must be a square kernel of odd side, got shape {tuple(drk.shape)}")
    return drk


PREPARED_CACHE_SIZE = 8
"""How many prepared DRK filters (:class:`repro.ops.PreparedBlur`: one per DRK, image size,
dtype, device, mode and method) :func:`deblur_drk` keeps, least recently used first out."""
_prepared: collections.OrderedDict = collections.OrderedDict()


def prepared_drk(drk: torch.Tensor, shape, dtype: torch.dtype = torch.float32, device="cpu",
                 mode: str = "symmetric", method: str = "auto") -> ops.PreparedBlur:
    """The DRK as a :class:`repro.ops.PreparedBlur` for images of ``shape`` (H, W): its FFT
    spectrum (or direct weights) computed once and cached, keyed by the DRK's exact values, so
    that deblurring many images of one size pays for the kernel only once."""
    key = (check_drk(drk).detach().cpu().to(torch.float64).numpy().tobytes(), tuple(shape), dtype, str(torch.device(device)),
           mode, method)
    if key in _prepared:
        _prepared.move_to_end(key)
        return _prepared[key]
    kernel = drk.detach().to(dtype=dtype, device=device)
    prepared = _prepared[key] = ops.PreparedBlur(kernel, tuple(shape), mode=mode, op="conv", method=method)
    while len(_prepared) > PREPARED_CACHE_SIZE:
        _prepared.popitem(last=False)
    return prepared


def deblur_drk(image: torch.Tensor, drk: torch.Tensor, mode: str = "symmetric", method: str = "auto") -> torch.Tensor:
    """Deblur ``image`` by convolving every colour channel with the DRK; clamp to [0, 1].

    ``image`` is (H, W), (C, H, W) or (B, C, H, W), grey or colour (one inverse for all images
    and channels, FACTS.md "Deblurring"); the result has its shape and dtype. ``drk`` is the
    convolution kernel of :func:`collapse`, cast to the image's dtype and device.

    Borders: ``mode="symmetric"`` (half-sample mirror, ``abcd → ba|abcd|dc``, scipy's
    "reflect") by default: the blurred image continues smoothly past its border, so the
    sharpening filter sees no artificial edge there (zero padding would darken the border
    and circular padding would sharpen the jump between opposite sides). Any mode of
    ``repro.ops.blur`` except "valid" is accepted. ``method``: "direct", "fft" or "auto", as in
    ``repro.ops.blur``.

    The result is ``ops.blur(image, drk, mode, "conv", method).clamp(0, 1)`` up to rounding
    (≈1e-7 in float32), computed by a cached :class:`repro.ops.PreparedBlur`
    (:func:`prepared_drk`): by FFT, one ``rfft2``/``irfft2`` pair over all channels on the
    image's own grid with the DRK's spectrum computed once per image size, and the 5-pixel
    border bands recomputed directly; directly, one channels-last depthwise convolution.
    """
    check_drk(drk)
    check_choice(mode, "mode", ops.PAD_MODES)
    check_choice(method, "method", ops.METHODS)
    x, shape = _as_batch(image, "image")
    out = prepared_drk(drk, x.shape[-2:], x.dtype, x.device, mode, method).apply(x)  # x checked above
    return out.clamp_(0, 1).reshape(shape)


# --------------------------------------------------------------------------------------------
# 6. Profiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DILProfile:
    """What one profile trains and evaluates (see ``repro.store.PROFILES``).

    Training: ``gallery_size`` kernels, ``steps`` Adam steps of ``batch_size`` kernels per
    variant, ``gallery_sizes`` for the RKG-size ablation. Evaluation: the first ``n_bsd100``
    images of BSDS500 ``val`` (BSD100) and ``n_kodak`` Kodak images, centre-cropped to
    ``crop`` pixels (None: whole images), each blurred by ``kernels_per_image`` held-out
    kernels; ``n_outside`` of the BSD100 images for the out-of-gallery and noise sweeps;
    ``timing_size`` the side of the RGB image of the compute table; ``nsr_images`` BSDS500
    ``train`` images cropped to ``nsr_crop`` for the Wiener NSR selection (:func:`select_wiener_nsr`).
    """

    name: str
    gallery_size: int
    steps: int
    batch_size: int
    gallery_sizes: tuple[int, ...]
    n_bsd100: int
    n_kodak: int
    crop: int | None
    kernels_per_image: int
    n_outside: int
    noise_levels: tuple[float, ...]
    timing_size: int
    nsr_images: int = 36
    nsr_crop: int = 96

    def config(self, weights: DILWeights = DILWeights(), gallery_size: int | None = None) -> DILConfig:
        """The training config of this profile for ``weights`` (and a gallery size)."""
        return DILConfig(
            weights=weights,
            gallery_size=self.gallery_size if gallery_size is None else gallery_size,
            steps=self.steps,
            batch_size=self.batch_size,
            log_every=max(5, self.steps // 60),
            checkpoint_every=max(1, self.steps // 5),
        )

    def describe(self) -> str:
        """The evaluation set and the training of this profile, in words (for the book)."""
        from .evaluation import counted

        crop = "whole images" if self.crop is None else f"{self.crop}² centre crops"
        return (f"{self.n_bsd100} BSD100 + {self.n_kodak} Kodak24 images, {crop}, "
                f"{counted(self.kernels_per_image, 'kernel')} per image; DRKs trained on {self.gallery_size} "
                f"RKG kernels for {self.steps} steps")


PROFILES = {
    # CI: a small gallery, 150 steps, three 48-pixel crops; seconds.
    "smoke": DILProfile("smoke", 256, 150, 32, (128, 256), 2, 1, 48, 1, 2, (0.0, 0.01), 128, 6, 64),
    # this 2-core CPU: the paper's gallery and a short schedule, 256-pixel crops; minutes. Timing
    # on the 1024×1024 RGB image of the speed targets.
    "quick": DILProfile("quick", 2400, 1000, 64, (800, 1600, 2400, 3200, 4000), 20, 8, 256, 1, 6,
                        (0.0, 0.0025, 0.005, 0.01, 0.02), 1024),
    # a GPU: the full schedule, whole BSD100 and Kodak24 images, one kernel per variance bin.
    "paper": DILProfile("paper", 2400, 6000, 64, (800, 1600, 2400, 3200, 4000), 100, 24, None, 3, 24,
                        (0.0, 0.0025, 0.005, 0.01, 0.02), 1024),
}


def get_profile(profile: str) -> DILProfile:
    """The :class:`DILProfile` of ``profile`` ("smoke", "quick" or "paper"); ValueError otherwise."""
    return PROFILES[check_profile(profile)]


# --------------------------------------------------------------------------------------------
# 7. The chapter: train the variants, build the benchmark, evaluate, time
# --------------------------------------------------------------------------------------------

SEED = 0
"""Seed of every training run of the chapter (the gallery has its own, ``DILConfig.gallery_seed``)."""

VARIANTS = {
    "full": DILWeights(1, 1, 1, 1),
    "identity": DILWeights(1, 0, 0, 0),
    "id+area": DILWeights(1, 1, 0, 0),
    "id+phase": DILWeights(1, 0, 1, 0),
    "id+magnitude": DILWeights(1, 0, 0, 1),
    "no-area": DILWeights(1, 0, 1, 1),
    "no-phase": DILWeights(1, 1, 0, 1),
    "no-magnitude": DILWeights(1, 1, 1, 0),
    "magnitude0.3": DILWeights(1, 1, 1, 0.3),
    "magnitude3": DILWeights(1, 1, 1, 3),
}
"""The DIL weightings the chapter trains: the default (``full``), the identity term alone,
each regulariser added to it, each removed from ``full``, and two other R3 weights."""

PAPER_RESULT = {"psnr": 27.01, "ssim": 0.8333}
"""PSNR/SSIM the paper reports on "mild blur" images. Measured on the authors' own test set,
which FACTS.md could not verify (probably 100 DIV2K validation images): not comparable with
our numbers, quoted in a column of its own, and never a target."""

TEST_KERNEL_SIZES = (11, 13, 15, 17, 19, 21)
TEST_KERNEL_SEED = 10_000
"""Test kernels use the seeds 10,000 + i, streams distinct from the gallery's (seed 0)."""

WIENER_NSR, WIENER_NOISE_FACTOR = 6e-4, 100.0
"""The Wiener baselines' flat noise-to-signal ratio: WIENER_NSR + WIENER_NOISE_FACTOR · σ² for
noise of standard deviation σ (:func:`wiener_nsr`). The output of :func:`select_wiener_nsr`
with its defaults, on 36 blurred BSDS500 *train* crops, never the test images (the
``d3_evaluation`` chapter reruns the selection and shows it; ``tests/test_dil.py`` checks that it
still gives these values): the best NSR there is 5.6e-4 without noise (a flat optimum: 3e-4 to
1e-3 are within 0.15 dB), 0.018 at σ = 0.01 and 0.032 at σ = 0.02. (An earlier, unrecorded
selection had 1e-4; the textbook flat value σ² / var(x) ≈ 20 σ² is 5–15× too small for
natural images, whose power sits at low frequencies.)"""
NSR_CANDIDATES = tuple(float(f"{10 ** (e / 4):.3g}") for e in range(-24, -3))
"""The NSRs :func:`select_wiener_nsr` tries: 1e-6 … 0.1, four per decade."""
NSR_SELECTION_SEED = 20_000
"""Kernels of the NSR selection use the seeds 20,000 + i: distinct from the gallery's (seed 0)
and from the test kernels' (10,000 + i)."""
GUESS_SIGMA = math.sqrt((0.35 + 6.0) / 2)
"""The blind baselines' single Gaussian guess: isotropic, variance = the RKG's mean eigenvalue
(FACTS.md: λ ~ U[0.35, 6]), i.e. σ ≈ 1.78 px, 11×11."""
UNSHARP_SIGMA, UNSHARP_AMOUNT = 1.0, 1.0
"""Unsharp masking y + amount · (y − G_σ ⊛ y), with scikit-image's defaults (radius 1, amount 1)."""


def wiener_nsr(noise_sigma: float) -> float:
    """The flat NSR of the Wiener baselines for noise σ: WIENER_NSR + WIENER_NOISE_FACTOR · σ²."""
    return WIENER_NSR + WIENER_NOISE_FACTOR * noise_sigma**2


def select_wiener_nsr(n_images: int = 36, crop: int = 96, noise_levels=(0.0, 0.01, 0.02),
                      candidates=NSR_CANDIDATES, images: dict | None = None, progress: bool = False) -> dict:
    """Choose the Wiener baselines' NSR rule on BSDS500 **train** crops (never val or test).

    The first ``n_images`` BSDS500 ``train`` images (or ``images``, name → (C, H, W)), each
    blurred ('valid' true convolution, centre crop ``crop``) by one kernel of the mild-blur
    family (``kernels.mild_blur_kernel``, seeds :data:`NSR_SELECTION_SEED` + i, sizes cycling
    through 11–21, variance bins through the three of the benchmark), as the test cases are
    built but from other images and other kernels; white noise of each σ of ``noise_levels``.
    For each σ, every NSR of ``candidates`` is scored by the mean PSNR of Wiener deconvolution
    with the true kernel (symmetric borders, clamped to [0, 1]); the best is kept. The rule
    NSR(σ) = floor + factor · σ² then takes ``floor`` = the best NSR without noise (σ = 0 must be
    among the levels) and ``factor`` = the median over the noisy levels of
    (best − floor) / σ², both rounded to one significant digit.

    Returns a JSON-able dict: ``noise_levels``, ``candidates``, ``psnr`` (one list per level,
    aligned with the candidates), ``best`` (per level), ``floor``, ``noise_factor``, ``images``
    (names) and ``crop``.
    """
    from . import data
    from .evaluation import build_cases
    from .kernels import MILD_BLUR_VARIANCE_BINS, mild_blur_kernel
    from .metrics import psnr
    from .nonblind import wiener

    levels = [check_positive(s, "noise level", allow_zero=True) for s in noise_levels]
    if 0.0 not in levels or len(levels) < 2:
        raise ValueError(f"noise_levels must contain 0 and at least one noisy level, got {noise_levels!r}")
    candidates = [check_positive(c, "candidate NSR") for c in candidates]
    if images is None:
        if not (isinstance(n_images, int) and 1 <= n_images <= len(data.bsds500("train"))):
            raise ValueError(f"n_images must be an int in 1..{len(data.bsds500('train'))}, got {n_images!r}")
        images = {Path(r).stem: data.load_image(r) for r in data.bsds500("train")[:n_images]}
    if not isinstance(images, dict) or not images:
        raise ValueError("images must be a non-empty dict name -> (C, H, W) tensor")
    scores = []
    for sigma in tqdm(levels, desc="NSR selection", disable=not progress, leave=False):
        cases = []
        for i, (name, image) in enumerate(images.items()):
            k = mild_blur_kernel(TEST_KERNEL_SIZES[i % len(TEST_KERNEL_SIZES)], NSR_SELECTION_SEED + i,
                                 MILD_BLUR_VARIANCE_BINS[i % 3])
            cases += build_cases({name: image}, {f"select{i}": k}, crop=crop, noise_sigma=sigma, seed=SEED)
        per_case = torch.stack([
            torch.stack([psnr(wiener(c.y[None], c.k.to(c.y.dtype), nsr)[0].clamp(0, 1), c.x) for nsr in candidates])
            for c in cases])
        scores.append(per_case.mean(0).tolist())
    best = [candidates[max(range(len(candidates)), key=row.__getitem__)] for row in scores]
    floor = best[levels.index(0.0)]
    slopes = sorted(max(b - floor, 0.0) / s**2 for s, b in zip(levels, best) if s > 0)
    factor = slopes[len(slopes) // 2] if len(slopes) % 2 else 0.5 * (slopes[len(slopes) // 2 - 1] + slopes[len(slopes) // 2])

    def one_digit(v: float) -> float:
        return float(f"{v:.0e}") if v > 0 else 0.0

    return {"noise_levels": levels, "candidates": candidates, "psnr": scores, "best": best,
            "floor": one_digit(floor), "noise_factor": one_digit(factor), "images": list(images), "crop": crop}


def unsharp_mask(y: torch.Tensor) -> torch.Tensor:
    """Unsharp masking of y (…, C, H, W) in [0, 1]: y + amount · (y − G_σ ⊛ y) with
    :data:`UNSHARP_SIGMA` and :data:`UNSHARP_AMOUNT` (symmetric boundary), clamped to [0, 1]. A
    blind sharpening baseline: it needs no kernel."""
    from .kernels import gaussian

    check_tensor(y, "y", (3, 4))
    g = gaussian(9, UNSHARP_SIGMA, dtype=y.dtype).to(y.device)
    blurred = ops.blur(y if y.ndim == 4 else y[None], g, mode="symmetric").reshape(y.shape)
    return (y + UNSHARP_AMOUNT * (y - blurred)).clamp(0, 1)


def classical_methods() -> dict:
    """The baselines: the blurred input, Wiener with the true kernel (oracle), Wiener with one
    fixed Gaussian guess and unsharp masking (blind). Each (y, case) → x̂ clamped to [0, 1]."""
    from .kernels import gaussian
    from .nonblind import wiener

    def guess(dtype):
        return gaussian(11, GUESS_SIGMA, dtype=dtype)

    return {
        "blurred input": lambda y, case: y.clamp(0, 1),
        "Wiener, true k (oracle)": lambda y, case: wiener(
            y[None], case.k.to(y.dtype), wiener_nsr(case.meta["noise_sigma"]))[0].clamp(0, 1),
        "Wiener, Gaussian guess": lambda y, case: wiener(
            y[None], guess(y.dtype).to(y.device), wiener_nsr(case.meta["noise_sigma"]))[0].clamp(0, 1),
        "unsharp masking": lambda y, case: unsharp_mask(y),
    }


def _classical_keys() -> dict:
    key = f"nsr={WIENER_NSR}+{WIENER_NOISE_FACTOR}σ²,guess={GUESS_SIGMA:.4f},unsharp={UNSHARP_SIGMA},{UNSHARP_AMOUNT}"
    return {name: key for name in classical_methods()}


def drk_method(drk: torch.Tensor):
    """The method (y, case) → deblur_drk(y, drk) for :func:`repro.evaluation.evaluate`."""
    return lambda y, case: deblur_drk(y, drk)


def variant_configs(profile: str) -> dict[str, DILConfig]:
    """The training configs of the chapter: the weightings of :data:`VARIANTS` on the
    profile's gallery, and ``full`` on each other size of ``profile.gallery_sizes`` (named
    ``rkg<n>``)."""
    settings = get_profile(profile)
    configs = {name: settings.config(weights) for name, weights in VARIANTS.items()}
    configs |= {f"rkg{n}": settings.config(gallery_size=n) for n in settings.gallery_sizes if n != settings.gallery_size}
    return configs


def train_variant(profile: str, name: str, device: str | None = None, progress: bool = True) -> DILRun:
    """Train the variant ``name`` of :func:`variant_configs`, or load it from
    ``results/<profile>/d3/dil_<name>.pt`` (resuming an interrupted run; a checkpoint trained with
    other settings of the profile is moved aside as ``.stale`` and retrained)."""
    configs = variant_configs(profile)
    check_choice(name, "name", configs)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    path = results_dir(profile, "d3") / f"dil_{name}.pt"
    state = load_cached(path, load_checkpoint, is_valid=lambda s: isinstance(s, dict))
    run = state.get("run") if state is not None else None
    if state is not None and not (isinstance(run, dict) and run.get("config") == configs[name].to_dict()
                                  and run.get("seed") == SEED):
        move_aside(path, "stale", "was trained with other settings of this profile")
    return train_dil(configs[name], SEED, path, device=device, progress=progress)


def train_command(profile: str) -> str:
    """The shell command that trains (or finishes training) the ``full`` DRK of ``profile``:
    the ``d3_collapse`` chapter, which trains only that variant (``d3_evaluation`` trains all)."""
    return f"python -m repro.chapters execute --profile {check_profile(profile)} d3_collapse"


def load_trained_drk(profile: str, name: str = "full") -> torch.Tensor:
    """The DRK of the variant ``name`` trained by the D3 chapters for ``profile``, read from
    ``results/<profile>/d3/dil_<name>.pt`` without training anything.

    Raises ``FileNotFoundError`` naming the file and :func:`train_command` when the checkpoint is
    missing or unfinished, and ``ValueError`` when it is corrupt or was written for another
    configuration (e.g. by an older version of the chapter).
    """
    configs = variant_configs(profile)
    check_choice(name, "name", configs)
    config = configs[name]
    path = results_dir(profile, "d3") / f"dil_{name}.pt"
    retrain = f"train it with: {train_command(profile)}" if name == "full" else (
        f"train it with: python -m repro.chapters execute --profile {profile} d3_evaluation")
    if not path.exists():
        raise FileNotFoundError(f"no trained DRK for profile {profile!r} ({path} is missing); {retrain}")
    state = load_checkpoint(path)
    run = state.get("run") if isinstance(state, dict) else None
    if not (isinstance(run, dict) and "model" in state and run.get("config") == config.to_dict()
            and run.get("seed") == SEED):
        raise ValueError(f"{path} is not a DRK checkpoint of the current {profile!r} configuration; "
                         f"delete it and {retrain}")
    if state.get("step") != config.steps:
        raise FileNotFoundError(f"the DRK of profile {profile!r} is only partly trained ({path}: step "
                                f"{state.get('step')} of {config.steps}); {retrain}")
    model = LinearCNN(seed=SEED)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{path} holds weights of another shape ({err}); delete it and {retrain}") from None
    with torch.no_grad():
        return collapse(model.float()).detach()


def train_variants(profile: str, device: str | None = None, progress: bool = True,
                   workers: int | None = None) -> dict[str, DILRun]:
    """Every variant of :func:`variant_configs`, trained or loaded (:func:`train_variant`). On the
    CPU the variants train side by side in ``workers`` processes (default one per core), each
    on one thread as always, so the weights do not depend on ``workers``."""
    names = list(variant_configs(profile))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    workers = check_workers(workers, device)
    jobs = [(profile, name, device) for name in names]
    for _ in tqdm(parallel_map(_train_variant_job, jobs, workers), total=len(jobs), desc="DIL variants",
                  disable=not progress, leave=False):
        pass
    return {name: train_variant(profile, name, device, progress=False) for name in names}  # read back


def _train_variant_job(job: tuple) -> None:
    """Train (or finish) one variant into its checkpoint: a job of :func:`train_variants`."""
    profile, name, device = job
    train_variant(profile, name, device, progress=False)


def _test_images(settings: DILProfile, which: str) -> dict[str, tuple[torch.Tensor, dict]]:
    from . import data

    images = {}
    if which in ("main", "bsd100"):
        for relpath in data.bsds500("val")[: settings.n_bsd100]:
            images[Path(relpath).stem] = (data.load_image(relpath), {"dataset": "BSD100"})
    if which == "main":
        for i in range(1, settings.n_kodak + 1):
            images[f"kodim{i:02d}"] = (data.kodak(i), {"dataset": "Kodak24"})
    return images


def mild_blur_cases(settings: DILProfile, noise_sigma: float, n_images: int | None = None) -> list:
    """The mild-blur benchmark of the profile: BSD100 and Kodak24 images (or the first
    ``n_images`` BSD100 ones), each blurred ('valid', true convolution) by
    ``kernels_per_image`` held-out RKG-family kernels (``kernels.mild_blur_kernel``), sizes
    cycling through 11–21 and variance bins through [0.175, 3), [3, 6), [6, 9)."""
    from .evaluation import build_cases
    from .kernels import MILD_BLUR_VARIANCE_BINS, mild_blur_kernel

    images = _test_images(settings, "main" if n_images is None else "bsd100")
    if n_images is not None:
        images = dict(list(images.items())[:n_images])
    cases, index = [], 0
    for i, (image_name, (image, meta)) in enumerate(images.items()):
        for j in range(settings.kernels_per_image):
            b = j if settings.kernels_per_image == 3 else i % 3
            size = TEST_KERNEL_SIZES[index % len(TEST_KERNEL_SIZES)]
            k = mild_blur_kernel(size, TEST_KERNEL_SEED + index, MILD_BLUR_VARIANCE_BINS[b])
            lo, hi = MILD_BLUR_VARIANCE_BINS[b]
            cases += build_cases(
                {image_name: image}, {f"mild{index}": k}, crop=settings.crop, noise_sigma=noise_sigma, seed=SEED,
                meta=meta | {"variance_bin": f"[{lo:g}, {hi:g})", "kernel_size": size},
            )
            index += 1
    return cases


def outside_cases(settings: DILProfile) -> list:
    """Kernels outside the RKG family: Borodenko motion kernels (sizes 11–17, intensity 0.3)
    and the 8 Levin et al. camera-shake kernels, on the first ``n_outside`` BSD100 images."""
    from . import data
    from .evaluation import build_cases
    from .kernels import motion_kernel_borodenko

    n_motion = 2 if settings.name == "smoke" else 4
    kernels = {f"motion{s}": motion_kernel_borodenko(11 + 2 * s, 0.3, seed=s + 1) for s in range(n_motion)}
    levin = {f"levin{j}": k.float() for j, k in enumerate(data.levin_kernels(), start=1)}
    if settings.name == "smoke":
        levin = dict(list(levin.items())[:2])
    images = {name: image for name, (image, _) in _test_images(settings, "bsd100").items()}
    images = dict(list(images.items())[: settings.n_outside])
    cases = build_cases(images, kernels, crop=settings.crop, seed=SEED, meta={"family": "motion (Borodenko)"})
    return cases + build_cases(images, levin, crop=settings.crop, seed=SEED, meta={"family": "Levin et al."})


def _drk_key(drk: torch.Tensor) -> str:
    return hashlib.sha256(drk.detach().cpu().to(torch.float64).numpy().tobytes()).hexdigest()[:16]


def fft_multiply_adds(grid_pixels: int, output_pixels: int) -> float:
    """Estimated real multiply-adds per output pixel of one FFT convolution on a grid.

    A real FFT of N points takes about 2·log₂N real multiply-adds per point (N/2·log₂N complex
    butterflies of 4), the convolution a forward and an inverse one plus the product (2 per
    point; the kernel's transform is precomputed): ≈ 4·log₂N + 2 per grid point, scaled by
    grid / output pixels. An estimate for comparison, not a count.
    """
    return (4 * math.log2(grid_pixels) + 2) * grid_pixels / output_pixels


def fft_convolution_reference(image: torch.Tensor):
    """The floor any FFT filter pays, as a function to time: ``rfft2`` of the whole (B, C, H, W)
    image (all channels in one call, no padding, no validation), the product with a spectrum
    computed beforehand (one (H, W//2 + 1) spectrum shared by the channels), ``irfft2`` back
    to (H, W). The D3 speed target compares :func:`deblur_drk` with this (issue "Performance":
    within 1.5× of "a single float32 FFT convolution of the same size")."""
    H, W = image.shape[-2:]
    generator = torch.Generator().manual_seed(1)
    spectrum = torch.fft.rfft2(torch.rand(H, W, generator=generator, dtype=image.dtype).to(image.device))
    return lambda: torch.fft.irfft2(torch.fft.rfft2(image) * spectrum, s=(H, W))


SPEED_TARGET_SIZE, SPEEDUP_TARGET, FFT_RATIO_TARGET = 1024, 100.0, 1.5
"""The D3 issue's speed targets, for a 1024×1024 RGB float32 image: the DRK at least 100× faster
than L-CNN inference (the paper's "at least 100 times lesser computational resources"; we
compare with the faster of the L-CNN's two layouts), and by FFT within 1.5× the time of one FFT
convolution (:func:`fft_convolution_reference`)."""


def speed_verdict(size: int, speedup: float, fft_ratio: float) -> str:
    """One sentence on the two speed targets for a :func:`compute_table` measured on a
    ``size``² image: the faster DRK's ``speedup`` over the faster L-CNN, and ``fft_ratio`` =
    DRK by FFT / one FFT convolution. Only a 1024² image tests them."""
    if size != SPEED_TARGET_SIZE:
        return f"the targets are set for {SPEED_TARGET_SIZE}² images, so this {size}² timing does not test them"
    met = {True: "met", False: "not met"}
    return (f"in this run the speed-up target (≥ {SPEEDUP_TARGET:g}×) is {met[speedup >= SPEEDUP_TARGET]} and the "
            f"FFT target (≤ {FFT_RATIO_TARGET:g}×) is {met[fft_ratio <= FFT_RATIO_TARGET]}")


def compute_table(model: LinearCNN, size: int, device: str = "cpu", repeats: int = 3,
                  threads: int | None = 1) -> list[dict]:
    """Parameters, multiply-adds per pixel and time of L-CNN, DRK (direct, FFT), Wiener and a bare
    FFT convolution.

    On one random (1, 3, size, size) float32 image on ``device``, all with symmetric borders:
    the L-CNN (:func:`lcnn_apply`) in planar and channels-last layout (``speedup_vs_lcnn`` is
    relative to the faster of the two), its DRK applied directly and by FFT (:func:`deblur_drk`,
    the DRK's spectrum prepared once beforehand, as the reference's), Wiener deconvolution with
    a known 11×11 kernel (``nonblind.wiener``, symmetric: an FFT of 4× the image), and the
    reference :func:`fft_convolution_reference`. Time: best of ``repeats`` runs (one warm-up),
    in ms per RGB megapixel, with the number of CPU threads. Multiply-adds per pixel and
    channel: exact for the L-CNN and the direct DRK, an estimate (:func:`fft_multiply_adds`)
    for the FFT methods. Wiener and the reference learn no parameters (``None``). On the CPU the
    timing runs with ``threads`` intra-op threads (restored afterwards; None: as set): one by
    default, because on the shared 2-core reference machine two threads spend most of their
    time waiting for each other as soon as another job runs (``benchmarks/bench_dil.py``
    measures 1 and 2).
    """
    from .kernels import gaussian
    from .nonblind import wiener

    if not (isinstance(size, int) and size >= 16):
        raise ValueError(f"size must be an int >= 16, got {size!r}")
    device = torch.device(device)
    model = copy.deepcopy(model).to(device=device, dtype=torch.float32)
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        drk = collapse(model)
    k = gaussian(11, GUESS_SIGMA).to(device)
    model_nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    rows = [
        ("L-CNN", count_parameters(model), multiply_adds_per_pixel(model), lambda: lcnn_apply(model, image)),
        ("L-CNN, channels-last", count_parameters(model), multiply_adds_per_pixel(model),
         lambda: lcnn_apply(model_nhwc, image, channels_last=True)),
        ("DRK, direct", drk.numel(), drk.numel(), lambda: deblur_drk(image, drk, method="direct")),
        ("DRK, FFT", drk.numel(), fft_multiply_adds(math.prod(ops._fft_grid(size, size)), size**2),
         lambda: deblur_drk(image, drk, method="fft")),
        ("Wiener, known k", None, fft_multiply_adds(4 * size**2, size**2), lambda: wiener(image, k, WIENER_NSR)),
        ("FFT convolution (reference)", None, fft_multiply_adds(size**2, size**2), fft_convolution_reference(image)),
    ]
    table = []
    previous_threads = torch.get_num_threads()
    if threads is not None and device.type == "cpu":
        torch.set_num_threads(int(check_positive(threads, "threads")))
    with torch.no_grad(), contextlib.ExitStack() as restore:
        restore.callback(torch.set_num_threads, previous_threads)
        for name, parameters, mult_adds, fn in rows:
            seconds = time_call(fn, device, 1 if name.startswith("L-CNN") else repeats, reduce=min)
            table.append({"method": name, "parameters": parameters, "mult_adds_per_pixel": round(mult_adds, 1),
                          "ms_per_megapixel": 1e3 * seconds / (size**2 / 1e6), "device": str(device),
                          "threads": torch.get_num_threads() if device.type == "cpu" else None,
                          "image": f"1x3x{size}x{size} float32"})
    reference = table[-1]["ms_per_megapixel"]
    lcnn = min(row["ms_per_megapixel"] for row in table[:2])  # the faster layout: the honest reference
    for row in table:
        row["speedup_vs_lcnn"] = lcnn / row["ms_per_megapixel"]
        row["time_vs_fft_reference"] = row["ms_per_megapixel"] / reference
    return table


def format_compute_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`compute_table` rows."""
    lines = ["| method | device | parameters | multiply-adds / pixel | ms / RGB megapixel | × faster than L-CNN "
             "| time / FFT convolution |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        estimate = "≈ " if "FFT" in row["method"] or "Wiener" in row["method"] else ""
        if row["parameters"] is not None:
            parameters = f"{row['parameters']:,}"
        else:
            parameters = "— (k given)" if row["method"].startswith("Wiener") else "—"
        device = row["device"] + (f", {row['threads']} thr." if row.get("threads") else "")
        ratio = row.get("time_vs_fft_reference")
        lines.append(f"| {row['method']} | {device} | {parameters} | {estimate}{row['mult_adds_per_pixel']:,.0f} "
                     f"| {row['ms_per_megapixel']:,.1f} | {row['speedup_vs_lcnn']:,.1f} "
                     f"| {'' if ratio is None else f'{ratio:,.2f}'} |")
    return "\n".join(lines)


def run_chapter(profile: str, device: str | None = None, progress: bool = True) -> dict:
    """Everything ``d3_evaluation`` shows, computed or read back from ``results/<profile>/d3/``.

    Trains the variants (:func:`train_variants`), evaluates the mild-blur benchmark without
    noise and with σ = 0.01 (all baselines and all DRKs), the out-of-gallery kernels and the
    noise sweep (:mod:`repro.evaluation`, resumable), reruns the selection of the Wiener NSR
    on BSDS500 train crops (:func:`select_wiener_nsr`, cached), and times the methods (:func:`compute_table`
    on the CPU, and on CUDA when there is one; cached). Returns a dict of summary tables (lists of rows) plus ``runs`` (the trained DRKs).
    """
    from .evaluation import evaluate, summarize

    settings = get_profile(profile)
    folder = results_dir(profile, "d3")
    runs = train_variants(profile, device, progress)
    drks = {name: run.drk.cpu() for name, run in runs.items()}
    drk_methods = {f"DRK {name}": drk_method(d) for name, d in drks.items()}
    drk_keys = {f"DRK {name}": _drk_key(d) for name, d in drks.items()}
    baselines, baseline_keys = classical_methods(), _classical_keys()

    main = {}
    for sigma in (0.0, 0.01):
        cases = mild_blur_cases(settings, sigma)
        main[sigma] = evaluate(baselines | drk_methods, cases, folder / f"eval_mild_sigma{sigma:g}.json",
                               keys=baseline_keys | drk_keys, progress=progress)
    by_bin = summarize(folder / "eval_mild_sigma0.json", group_by="variance_bin",
                       methods=list(baselines) + ["DRK identity", "DRK full"])
    by_dataset = summarize(folder / "eval_mild_sigma0.json", group_by="dataset",
                           methods=list(baselines) + ["DRK identity", "DRK full"])

    few = {name: baselines[name] for name in ("blurred input", "Wiener, true k (oracle)")}
    few_drks = {name: drk_methods[name] for name in ("DRK identity", "DRK id+area", "DRK full")}
    evaluate(few | few_drks, outside_cases(settings), folder / "eval_outside.json",
             keys=baseline_keys | drk_keys, progress=progress)
    outside_by_family = summarize(folder / "eval_outside.json", group_by="family", methods=list(few | few_drks))

    noise_methods = few | {name: drk_methods[name] for name in ("DRK full", "DRK magnitude0.3", "DRK magnitude3")}
    noise_cases = [c for sigma in settings.noise_levels
                   for c in mild_blur_cases(settings, sigma, n_images=settings.n_outside)]
    evaluate(noise_methods, noise_cases, folder / "eval_noise.json", keys=baseline_keys | drk_keys, progress=progress)
    noise = summarize(folder / "eval_noise.json", group_by="noise_sigma", methods=list(noise_methods))

    nsr_path = folder / "wiener_nsr.json"
    nsr_settings = {"n_images": settings.nsr_images, "crop": settings.nsr_crop}
    nsr = load_json(nsr_path) if nsr_path.exists() else None
    if not (nsr and nsr.get("settings") == nsr_settings and nsr.get("candidates") == list(NSR_CANDIDATES)):
        nsr = select_wiener_nsr(settings.nsr_images, settings.nsr_crop, progress=progress) | {"settings": nsr_settings}
        save_json(nsr, nsr_path)

    timing_path = folder / "compute.json"
    compute = load_json(timing_path) if timing_path.exists() else None
    image = f"1x3x{settings.timing_size}x{settings.timing_size} float32"
    if not (compute and compute[0].get("image") == image and compute[1].get("method") == "L-CNN, channels-last"
            and compute[0].get("threads") == 1):
        # missing, or written for another image size or by an older compute_table: measure again
        model = runs["full"].model
        compute = compute_table(model, settings.timing_size, "cpu")
        if torch.cuda.is_available():
            compute += compute_table(model, settings.timing_size, "cuda")
        save_json(compute, timing_path)
    return {
        "profile": profile,
        "settings": dataclasses.asdict(settings),
        "runs": runs,
        "mild": main[0.0],
        "mild_noisy": main[0.01],
        "mild_by_bin": by_bin,
        "mild_by_dataset": by_dataset,
        "outside": outside_by_family,
        "noise": noise,
        "compute": compute,
        "wiener_nsr": nsr,
        "paper": PAPER_RESULT,
    }
