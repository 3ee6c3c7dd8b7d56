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
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import kernels as kernel_lib  # as kernel_lib: `kernels` names the tensors of a gallery here
from . import ops
from ._checks import check_choice, check_positive, check_positive_int, check_tensor, count_parameters, is_int
from ._schedule import half_cosine_lr
from ._io import TrainingCheckpoint, fingerprint
from ._threads import fixed_cpu_threads

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


def collapse_error(model: LinearCNN, image: torch.Tensor, mode: str = "symmetric") -> float:
    """max |L-CNN(x) − DRK ⊛ x| on ``image`` (B, C, H, W) with border ``mode``, in the model's
    dtype: the identity of :func:`collapse` measured, zero up to rounding."""
    with torch.no_grad():
        return (lcnn_apply(model, image, mode) - ops.blur(image, collapse(model), mode=mode)).abs().max().item()


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
    if not isinstance(config, DILConfig):
        raise ValueError(f"config must be a DILConfig, got {type(config).__name__}")
    if not is_int(seed, 0):
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if stop_at is not None and not is_int(stop_at, 0):
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
    identity = {"config": config.to_dict(), "seed": seed, "gallery": fingerprint(gallery)}
    step, history = 0, []
    checkpoint = TrainingCheckpoint(checkpoint_path, identity)
    state = checkpoint.load(device) if resume else None  # a corrupt checkpoint is moved aside: start over
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history = state["step"], state["history"]
    first = step

    def save():
        checkpoint.save(step, history, model=model.state_dict(), optimizer=optimizer.state_dict())

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


def least_squares_drk(pairs, size: int = 11, mode: str = "symmetric") -> torch.Tensor:
    """The single ``size`` × ``size`` convolution kernel f that minimises Σ_i ‖f ⊛ y_i − x_i‖²
    over ``pairs`` of (blurred y_i, sharp x_i), each (C, H, W) of one shape per pair, with the
    border ``mode`` of :func:`deblur_drk`: the best any one DRK can do on these images, an
    oracle when the pairs are the test images themselves.

    f ⊛ y is linear in f, so f solves the normal equations G f = h with G = Σ_i A_i A_iᵀ and
    h = Σ_i A_i x_i, where row j of A_i is y_i convolved with the j-th unit kernel (float64).
    """
    check_positive_int(size, "size")
    if size % 2 == 0:
        raise ValueError(f"size must be odd (the kernel has a centre), got {size}")
    pairs = list(pairs)
    if not pairs:
        raise ValueError("least_squares_drk needs at least one (y, x) pair")
    n = size * size
    units = torch.eye(n, dtype=torch.float64).reshape(n, size, size)
    gram, moment = torch.zeros(n, n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    for i, (y, x) in enumerate(pairs):
        check_tensor(y, f"pairs[{i}][0]", (3,))
        check_tensor(x, f"pairs[{i}][1]", (3,))
        if y.shape != x.shape:
            raise ValueError(f"pairs[{i}]: y {tuple(y.shape)} and x {tuple(x.shape)} must have one shape")
        y64 = y.detach().cpu().double()[None]
        rows = torch.stack([ops.blur(y64, unit, mode=mode, op="conv").flatten() for unit in units])
        gram += rows @ rows.T
        moment += rows @ x.detach().cpu().double().flatten()
    return torch.linalg.solve(gram, moment).reshape(size, size)


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
