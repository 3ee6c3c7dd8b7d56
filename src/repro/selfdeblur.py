"""SelfDeblur (Ren et al., CVPR 2020) and the three modifications of Kotera et al. (ICIP 2021).

Blind deconvolution as in eq. (6) of Kotera et al.: both unknowns are outputs of untrained
generators, x = Gx(θx), k = Gk(θk), and the parameters are fitted to the single blurred
observation y,

    min_{θx, θk}  L(Gk(θk) ⊛ Gx(θx); y)  [+ αx ‖∇Gx(θx)‖₁ + αk ‖Gk(θk)‖₂²]     (6), (9)

under the constraints (7) 0 ≤ x ≤ 1 (a sigmoid ends Gx) and k ≥ 0, Σk = 1 (a softmax ends Gk).
Implementation facts (architectures, optimiser, schedule) follow FACTS.md, "SelfDeblur"; the
layer order of Gx was read from the public DIP ``skip`` model and SelfDeblur's copy of it.

Conventions of this module
--------------------------
* **Forward model.** The data term compares y with ``ops.blur(x, k, mode="valid", op="conv")``:
  x is larger than y by (kh − 1, kw − 1) and only the outputs whose whole kernel support lies
  inside x are kept, as in SelfDeblur. SelfDeblur calls ``conv2d`` (a correlation); we use a
  true convolution so that k̂ is directly comparable with a ground-truth kernel. The two differ
  only by a relabelling of Gk's outputs (a flip), which leaves the distribution of the method
  unchanged: the reference's correlation kernel is ``kernels.flip(k_hat)``.
* **Crop.** ``x_hat[..., kh−1−kh//2 :, kw−1−kw//2 :]`` cropped to y's size is the part of x̂ that
  lines up with y (:func:`crop_to_observation`); :func:`pad_observation` is its inverse, so
  ``(pad_observation(y), δ)`` is the "no-blur" pair with a zero data term.
* **Colour.** SelfDeblur deblurs grey images, or the Y channel of YCbCr for colour images, and
  puts the blurred chroma back. ``color="luma"`` (the default) does the same (ITU-R BT.601, as
  OpenCV); the chroma of y is reflection-padded to x̂'s size. ``color="rgb"`` lets Gx output
  three channels blurred by one shared kernel instead.
* **Generators.** Gx and Gk live in :mod:`repro.selfdeblur_nets`: BatchNorm always in training
  mode, as in SelfDeblur, and R independent restarts run as one grouped computation. Restart r
  of a batched run draws every random number from its own generators seeded with ``seed + r``,
  so it computes the same thing as a single run with that seed (up to floating-point rounding
  of the grouped kernels).
* **Rounding.** The optimisation amplifies rounding differences: Adam divides every gradient
  entry by its own running size, and several of them are zero in exact arithmetic (a conv bias
  followed by BatchNorm) and pure rounding noise in practice. Two formulations of the same
  mathematics (fast/plain, batched/sequential, CPU/GPU) agree to ~1e-14 after one step in
  float64 but drift apart over hundreds of iterations; a fixed seed, path and device is
  bit-identical from run to run on the CPU.

Fast CPU path (``SelfDeblurConfig.fast``, on by default)
--------------------------------------------------------
Changes that leave the mathematics alone (the tests compare outputs and gradients with the
plain formulation in float64):

1. :func:`tune_cpu_allocator`: glibc keeps freed memory for reuse instead of returning it to the
   kernel and page-faulting it back in every iteration -- by far the largest gain;
2. the upsampling computed directly at the size Concat crops it to (no crop copy);
3. the non-local product re-associated as θᵀ(φgᵀ) (legal because the block divides by the
   constant N, no softmax).

``benchmarks/bench_selfdeblur.py`` measures one iteration of each formulation, their peak memory
and the floor that the machine's float32 GEMM rate sets for Gx's FLOPs; the book's Performance
page shows its latest record. The convolutions run close to that rate, so what the fast path can
still remove is memory-bound element-wise work (BatchNorm, activations, padding, upsampling).
Channels-last activations and ``torch.compile`` (``--compile``) are not used: neither was faster
than this path in that benchmark. On a busy machine, spinning OpenMP threads can make any
formulation many times slower; ``torch.set_num_threads(1)`` is then faster.
"""

from __future__ import annotations

import bisect
import ctypes
import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import kernels, metrics, ops
from ._checks import check_choice, check_int, check_positive, check_tensor
# the generators, and the image sizes they accept, are part of this module's interface
from .selfdeblur_nets import MIN_IMAGE_SIZE, ImageGenerator, KernelGenerator, kernel_pair, level_sizes

# --------------------------------------------------------------------------------------------
# 1. Configuration
# --------------------------------------------------------------------------------------------

#: Kernel sizes SelfDeblur's Levin script uses for Levin kernels 1..8 (FACTS.md "SelfDeblur").
SELFDEBLUR_LEVIN_KERNEL_SIZES = (17, 15, 13, 27, 11, 19, 21, 21)
COLORS = ("luma", "rgb")
INITIAL_IMAGES = ("random", "observation")
DATA_TERMS = ("mse", "ssim")


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


@dataclass(frozen=True)
class SelfDeblurConfig:
    """Every hyper-parameter of SelfDeblur (FACTS.md "SelfDeblur") and of Kotera et al.'s three
    modifications (§3), each modification a switch. The defaults are the original SelfDeblur;
    :meth:`kotera` switches the three modifications on; :meth:`scaled` shrinks every iteration
    count (and the iterations at which something changes) for quick and smoke profiles, raising
    Gk's learning rate in proportion.

    Original SelfDeblur
        ``iterations`` 5000; Adam with ``lr_image`` 1e-2 (Gx) and ``lr_kernel`` 1e-4 (Gk); the
        learning rates multiplied by ``gamma`` 0.5 at each of ``milestones`` (2000, 3000, 4000),
        as ``MultiStepLR``; every iteration Gx's input is perturbed by ``input_noise_std`` ·
        N(0, 1) (0.001); inputs: ``input_channels`` 8 channels (Gx) and ``kernel_input_size``
        200 entries (Gk) of U(0, 1) · ``input_scale`` (0.1); Gk's hidden layer ``kernel_hidden``
        1000; data term MSE before iteration ``ssim_switch`` (1000), 1 − SSIM from it on.
    Multiscale (``multiscale``, §3 "Multiscale processing")
        ``scales`` 3 levels, each ``scale_factor`` √2 smaller than the next: y is resized
        (bilinear, antialiased) and the kernel size divided likewise (rounded to an odd size,
        at least 3); ``coarse_iterations`` 500 on every scale but the last, which runs
        ``iterations``. Each finer scale starts from the previous estimates, bilinearly resized:
        its fresh generators are first fitted to them (eq. (8)), as in "Initialization".
    Initialisation (``initialisation``, §3 "Initialization")
        On the first (coarsest) scale Gk is fitted to k₀, a Gaussian of σ equal to the kernel
        half-width ((size − 1)/2 per axis), until RMSE ≤ ``init_rmse`` · max(k₀) (our reading of
        "a correspondingly scaled value"); Gx is left random. ``initial_image="observation"``
        also fits Gx, on the first scale, to y reflection-padded to x's size (not in the paper:
        an option for the failure-mode study; with ``"random"`` Gx is not fitted). A fit stops at
        RMSE ≤ ``init_rmse`` (10/255) for Gx or after ``init_max_iterations``; it uses Adam with
        ``init_lr_image`` and ``init_lr_kernel`` (the paper does not give them: our choice).
        The deblurring loop then starts with a fresh Adam, "identical to that of SelfDeblur":
        its first step moves every weight by about the learning rate, which throws a fitted x
        off by an RMSE of ~0.2 for a few iterations before it settles back near x₀.
    Regularisation (``regularisation``, §3, eq. (9))
        data term MSE before iteration ``regularisation_switch`` (2000), SSIM after;
        + ``kernel_l2_weight`` (0.1) · ‖k‖₂² / (kh·kw) while iteration < 2000; + ``tv_weight``
        (0.01) · TV(x) while iteration > 2000, on the last scale only. Iterations count from 0
        on each scale. See :func:`loss_schedule`, :func:`total_variation`, :func:`kernel_l2`.
        Normalisation, which the paper leaves open: eq. (9) writes norms, but its data term is
        SelfDeblur's per-pixel *mean* (``nn.MSELoss``, and SSIM is a mean), and its TV weight
        0.01 only makes sense per pixel (summed over a 256² image, 0.01 · ‖∇x‖₁ is far larger
        than the [0, 1] SSIM loss it is added to). We normalise every term per element, so
        ``kernel_l2_per_entry`` (on) divides ‖k‖₂² by the kh·kw entries: the mean of k².
        Off, the kernel term is the printed sum, 0.1 for a δ and ≈ 0.1 / support for a spread
        kernel, larger than the per-pixel MSE once x fits y: in a traced quick run it held the
        kernel near-uniform (support 285 of 289 entries) until the switch. The failure-modes
        chapter runs both readings. This default was chosen after the sum had failed on the
        quick Kodak input, and is reported as such in the book.
    Over-regularisation (``tv_initial_weight``, a §4.1 *negative* result, in neither method)
        + ``tv_initial_weight`` · (1 − iteration / ``regularisation_switch``) · TV(x) while
        iteration < ``regularisation_switch``, on every scale: strong image regularisation at the
        start, decreasing linearly to 0 (0 by default: off).
    Other
        ``color``: "luma" (deblur Y of YCbCr, as SelfDeblur) or "rgb" (Gx outputs 3 channels);
        ``fast``: the fast CPU path of :class:`ImageGenerator` (same mathematics).
    """

    iterations: int = 5000
    lr_image: float = 1e-2
    lr_kernel: float = 1e-4
    milestones: tuple[int, ...] = (2000, 3000, 4000)
    gamma: float = 0.5
    input_channels: int = 8
    kernel_input_size: int = 200
    kernel_hidden: int = 1000
    input_scale: float = 0.1
    input_noise_std: float = 1e-3
    ssim_switch: int = 1000
    multiscale: bool = False
    scales: int = 3
    scale_factor: float = math.sqrt(2)
    coarse_iterations: int = 500
    initialisation: bool = False
    initial_image: str = "random"
    init_rmse: float = 10 / 255
    init_max_iterations: int = 2000
    init_lr_image: float = 1e-2
    init_lr_kernel: float = 1e-3
    regularisation: bool = False
    regularisation_switch: int = 2000
    kernel_l2_weight: float = 0.1
    kernel_l2_per_entry: bool = True
    tv_weight: float = 0.01
    tv_initial_weight: float = 0.0
    color: str = "luma"
    fast: bool = True

    def __post_init__(self):
        for name in ("iterations", "coarse_iterations", "scales", "input_channels", "kernel_input_size",
                     "kernel_hidden"):
            check_int(getattr(self, name), name, 1)
        for name in ("ssim_switch", "regularisation_switch", "init_max_iterations"):
            check_int(getattr(self, name), name, 0)
        for name in ("lr_image", "lr_kernel", "init_lr_image", "init_lr_kernel", "input_scale", "init_rmse"):
            check_positive(getattr(self, name), name)
        for name in ("input_noise_std", "kernel_l2_weight", "tv_weight", "tv_initial_weight"):
            check_positive(getattr(self, name), name, allow_zero=True)
        if not (isinstance(self.milestones, tuple) and all(
                isinstance(m, int) and not isinstance(m, bool) and m >= 0 for m in self.milestones)
                and list(self.milestones) == sorted(self.milestones)):
            raise ValueError(f"milestones must be a sorted tuple of ints >= 0, got {self.milestones!r}")
        if not 0 < check_positive(self.gamma, "gamma") <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")
        if check_positive(self.scale_factor, "scale_factor") <= 1:
            raise ValueError(f"scale_factor must be > 1, got {self.scale_factor!r}")
        for name in ("multiscale", "initialisation", "regularisation", "kernel_l2_per_entry", "fast"):
            _check_flag(getattr(self, name), name)
        check_choice(self.color, "color", COLORS)
        check_choice(self.initial_image, "initial_image", INITIAL_IMAGES)

    @classmethod
    def kotera(cls, **changes) -> SelfDeblurConfig:
        """Kotera et al.'s method: all three modifications on (``changes`` override fields)."""
        return cls(**{"multiscale": True, "initialisation": True, "regularisation": True, **changes})

    def scaled(self, factor: float) -> SelfDeblurConfig:
        """The same method with every iteration count and switch iteration multiplied by
        ``factor`` (rounded; counts stay >= 1), e.g. ``scaled(0.02)`` for a smoke run of 100
        iterations whose MSE→SSIM switch comes at 20.

        Gk's learning rate is divided by ``factor`` (at most up to ``lr_image``): Adam moves
        each weight by about the learning rate per step, so a run with a tenth of the steps
        needs ten times Gk's rate for its kernel to travel as far as in the full run. Without
        this, 500 iterations at Gk's 1e-4 leave the kernel nearly as broad as it started (the
        original method on kodim01 × Levin kernel 2, a 64-pixel crop, seed 0: about −12 dB ISNR
        with 1e-4, about 0 dB with 1e-3; ``scripts/selfdeblur_probe.py`` re-runs such cases).
        Gx's rate (1e-2) stays: it already fits y within a few hundred steps."""
        factor = check_positive(factor, "factor")

        def scale(n: int, minimum: int) -> int:
            return max(minimum, math.floor(n * factor + 0.5))

        return dataclasses.replace(
            self,
            iterations=scale(self.iterations, 1),
            coarse_iterations=scale(self.coarse_iterations, 1),
            init_max_iterations=scale(self.init_max_iterations, 0),
            ssim_switch=scale(self.ssim_switch, 0),
            regularisation_switch=scale(self.regularisation_switch, 0),
            milestones=tuple(scale(m, 0) for m in self.milestones),
            lr_kernel=min(self.lr_kernel / factor, max(self.lr_image, self.lr_kernel)),
        )

    def to_dict(self) -> dict:
        """Plain JSON-serialisable fields (for ``store.save_json``)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# --------------------------------------------------------------------------------------------
# 2. Loss terms and their schedule
# --------------------------------------------------------------------------------------------


def _observation_pads(kernel_size) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) by which x exceeds y in the valid convolution."""
    kh, kw = kernel_size
    return (kh - 1 - kh // 2, kh // 2, kw - 1 - kw // 2, kw // 2)


def pad_observation(y: torch.Tensor, kernel_size, mode: str = "reflect") -> torch.Tensor:
    """Extend y (B, C, H, W) to x's size (H + kh − 1, W + kw − 1) so that the valid convolution
    with a centred δ gives y back: ``(pad_observation(y, k.shape), δ)`` is the no-blur pair.
    ``mode`` is any padding of :func:`repro.ops.pad` (reflection by default)."""
    check_tensor(y, "y", (4,))
    return ops.pad(y, _observation_pads(kernel_pair(kernel_size)), mode)


def crop_to_observation(x: torch.Tensor, kernel_size) -> torch.Tensor:
    """The part of x (B, C, H + kh − 1, W + kw − 1) aligned with y: the inverse of
    :func:`pad_observation` (for comparisons with the sharp image)."""
    check_tensor(x, "x", (4,))
    top, bottom, left, right = _observation_pads(kernel_pair(kernel_size))
    H, W = x.shape[-2] - top - bottom, x.shape[-1] - left - right
    if H < 1 or W < 1:
        raise ValueError(f"x of shape {tuple(x.shape)} is not larger than kernel_size {kernel_size!r}")
    return x[..., top : top + H, left : left + W]


def _check_estimate_pair(y, x, k) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    check_tensor(y, "y", (4,))
    check_tensor(x, "x", (4,))
    check_tensor(k, "k", (2, 3))
    kh, kw = k.shape[-2:]
    want = (y.shape[-2] + kh - 1, y.shape[-1] + kw - 1)
    if tuple(x.shape[-2:]) != want:
        raise ValueError(f"x must be larger than y by the kernel size minus 1: expected spatial size {want} "
                         f"for y {tuple(y.shape)} and k {tuple(k.shape)}, got x {tuple(x.shape)}")
    if x.shape[1] != y.shape[1] or y.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"y {tuple(y.shape)} must have x's channels and batch size 1 or x's "
                         f"({tuple(x.shape)})")
    if k.ndim == 3 and k.shape[0] != x.shape[0]:
        raise ValueError(f"k of shape {tuple(k.shape)} must have one kernel per item of x ({x.shape[0]})")
    return y, x, k


def data_loss(y: torch.Tensor, x: torch.Tensor, k: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """SelfDeblur's data term between y (B or 1, C, H, W) and k ⊛ x, valid convolution:
    ``"mse"`` = mean squared error (eq. (6) up to the constant 1/(C·H·W)), ``"ssim"`` =
    1 − SSIM (:func:`repro.metrics.ssim`; SelfDeblur's own SSIM pads with zeros where ours
    mirrors, so the two differ near the borders). x is (B, C, H + kh − 1, W + kw − 1), k is
    (kh, kw) or (B, kh, kw). Returns (B,), differentiable."""
    y, x, k = _check_estimate_pair(y, x, k)
    check_choice(kind, "kind", DATA_TERMS)
    return _data_loss(y, x, k, kind)


def _data_loss(y, x, k, kind):
    blurred = ops.blur(x, k, mode="valid", op="conv")
    target = y.expand_as(blurred)
    if kind == "mse":
        return (blurred - target).square().mean(dim=(1, 2, 3))
    return 1 - metrics.ssim(blurred, target)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV ‖∇x‖₁ of eq. (9), per pixel: mean |x[i+1, j] − x[i, j]| + mean
    |x[i, j+1] − x[i, j]| over C, H, W, one value per item (B,). (SelfDeblur's unused TVLoss
    squares the differences; Kotera et al. write the ℓ¹ norm. The normalisation is ours.)"""
    check_tensor(x, "x", (4,))
    return _total_variation(x)


def _total_variation(x):
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3)) + \
        (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(1, 2, 3))


def kernel_l2(k: torch.Tensor) -> torch.Tensor:
    """‖k‖₂² of eq. (9): the sum of the squared entries, (kh, kw) → scalar, (B, kh, kw) → (B,).
    For a kernel summing to 1 it is smallest (1/(kh·kw)) for the flat kernel and largest (1)
    for a δ, which is why it pushes away from the no-blur solution."""
    check_tensor(k, "k", (2, 3))
    return k.square().sum(dim=(-2, -1))


@dataclass(frozen=True)
class LossWeights:
    """What the objective contains at one iteration: the data term (``"mse"`` or ``"ssim"``) and
    the weights αk of the kernel term and αx of TV(x) (eq. (9)); αk weighs ‖k‖₂² / (kh·kw)
    with ``kernel_l2_per_entry`` (the default, see :class:`SelfDeblurConfig`), ‖k‖₂² without."""

    data: str
    kernel_l2: float
    image_tv: float
    kernel_l2_per_entry: bool = True


def loss_schedule(iteration: int, config: SelfDeblurConfig, last_scale: bool = True) -> LossWeights:
    """The objective at ``iteration`` (0-based, counted from the start of the scale).

    Original SelfDeblur: MSE while ``iteration < ssim_switch``, then 1 − SSIM; no regulariser.
    With ``regularisation`` (Kotera et al. eq. (9)): MSE while ``iteration <
    regularisation_switch``, SSIM after; αk = ``kernel_l2_weight`` while ``iteration <
    regularisation_switch``, else 0; αx = ``tv_weight`` while ``iteration >
    regularisation_switch`` on the last scale, else 0 (at the switch itself neither term: the
    paper's strict inequalities). ``tv_initial_weight`` (§4.1 over-regularisation) adds
    ``tv_initial_weight`` · (1 − iteration / ``regularisation_switch``) to αx before the switch.
    """
    check_int(iteration, "iteration", 0)
    if not isinstance(config, SelfDeblurConfig):
        raise ValueError(f"config must be a SelfDeblurConfig, got {type(config).__name__}")
    switch = config.regularisation_switch
    early_tv = config.tv_initial_weight * (1 - iteration / switch) if iteration < switch else 0.0
    if not config.regularisation:
        return LossWeights("mse" if iteration < config.ssim_switch else "ssim", 0.0, early_tv)
    return LossWeights(
        "mse" if iteration < switch else "ssim",
        config.kernel_l2_weight if iteration < switch else 0.0,
        (config.tv_weight if (last_scale and iteration > switch) else 0.0) + early_tv,
        config.kernel_l2_per_entry,
    )


def objective(y: torch.Tensor, x: torch.Tensor, k: torch.Tensor, weights: LossWeights) -> torch.Tensor:
    """Eq. (9) per item: data term + αx TV(x) + αk ‖k‖₂² (÷ kh·kw with
    ``weights.kernel_l2_per_entry``, the default), shape (B,), differentiable. (With αx = αk = 0 it is eq. (6),
    the original SelfDeblur.)"""
    y, x, k = _check_estimate_pair(y, x, k)
    if not isinstance(weights, LossWeights):
        raise ValueError(f"weights must be LossWeights (see loss_schedule), got {type(weights).__name__}")
    check_choice(weights.data, "weights.data", DATA_TERMS)
    _check_flag(weights.kernel_l2_per_entry, "weights.kernel_l2_per_entry")
    return _objective(y, x, k, weights)


def _objective(y, x, k, weights):
    total = _data_loss(y, x, k, weights.data)
    if weights.kernel_l2:
        entries = k.shape[-2] * k.shape[-1] if weights.kernel_l2_per_entry else 1
        total = total + weights.kernel_l2 / entries * k.square().sum(dim=(-2, -1))
    if weights.image_tv:
        total = total + weights.image_tv * _total_variation(x)
    return total


# --------------------------------------------------------------------------------------------
# 3. Scales, colour, random streams
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One scale of a run: y shrunk by ``factor`` to ``image_size``, kernels of ``kernel_size``,
    ``iterations`` deblurring iterations; ``last`` for the original resolution."""

    factor: float
    image_size: tuple[int, int]
    kernel_size: tuple[int, int]
    iterations: int
    last: bool


def _round_half_up(v: float) -> int:
    """Nearest int, halves up; the 1e-9 absorbs rounding of powers such as √2·√2 = 2.0000000000000004."""
    return math.floor(v + 0.5 + 1e-9)


def scale_plan(image_size, kernel_size, config: SelfDeblurConfig) -> list[Stage]:
    """The scales a run goes through, coarsest first (one stage without ``multiscale``).

    Stage s (s = scales − 1 … 0) shrinks y by ``scale_factor``**s to round(H / f) × round(W / f)
    and the kernel to the nearest odd size >= 3 of kh / f × kw / f (17 → 9, 13, 17 with the
    defaults). Raises ValueError if an image is too small: Gx's output (y's size + kernel − 1)
    must be at least :data:`repro.selfdeblur_nets.MIN_IMAGE_SIZE` and y at least 11×11 (the SSIM window).
    """
    if not isinstance(config, SelfDeblurConfig):
        raise ValueError(f"config must be a SelfDeblurConfig, got {type(config).__name__}")
    kh, kw = kernel_pair(kernel_size)
    if not (isinstance(image_size, (tuple, list, torch.Size)) and len(image_size) == 2
            and all(isinstance(n, int) and n >= 1 for n in image_size)):
        raise ValueError(f"image_size must be a pair of positive ints, got {image_size!r}")
    H, W = image_size
    if kh > H or kw > W:
        raise ValueError(f"kernel_size {(kh, kw)} is larger than the {H}x{W} image y")
    n = config.scales if config.multiscale else 1
    stages = []
    for s in range(n - 1, -1, -1):
        f = config.scale_factor**s
        size = (max(1, _round_half_up(H / f)), max(1, _round_half_up(W / f)))
        ks = tuple(max(3, 2 * _round_half_up((k / f - 1) / 2) + 1) if s else k for k in (kh, kw))
        x_size = (size[0] + ks[0] - 1, size[1] + ks[1] - 1)
        if min(x_size) < MIN_IMAGE_SIZE or min(size) < 2 * metrics.SSIM_RADIUS + 1:
            raise ValueError(
                f"y of size {H}x{W} is too small for kernel_size {(kh, kw)}: at scale 1/{f:.3g} y is "
                f"{size[0]}x{size[1]} and x {x_size[0]}x{x_size[1]}, but x must be at least "
                f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} (five stride-2 levels) and y at least 11x11 (SSIM)"
            )
        last = s == 0
        stages.append(Stage(f, size, ks, config.iterations if last else config.coarse_iterations, last))
    return stages


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 full-range YCbCr of (B, 3, H, W) RGB in [0, 1] (channels Y, Cb, Cr; chroma
    centred on 0.5), the conversion SelfDeblur does with OpenCV; :func:`ycbcr_to_rgb` inverts it."""
    check_tensor(rgb, "rgb", (4,))
    if rgb.shape[1] != 3:
        raise ValueError(f"rgb must have 3 channels, got shape {tuple(rgb.shape)}")
    r, g, b = rgb.unbind(1)
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    return torch.stack([luma, 0.5 + (b - luma) / 1.772, 0.5 + (r - luma) / 1.402], dim=1)


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (exact, no clamping)."""
    check_tensor(ycbcr, "ycbcr", (4,))
    if ycbcr.shape[1] != 3:
        raise ValueError(f"ycbcr must have 3 channels, got shape {tuple(ycbcr.shape)}")
    luma, cb, cr = ycbcr.unbind(1)
    r = luma + 1.402 * (cr - 0.5)
    b = luma + 1.772 * (cb - 0.5)
    return torch.stack([r, (luma - 0.299 * r - 0.114 * b) / 0.587, b], dim=1)


class _RestartStreams:
    """The random numbers of one restart: a CPU generator seeded with the restart's seed for the
    initial state (parameters and inputs, identical on every device) and a generator on the
    run's device, seeded from the first, for the per-iteration input perturbation."""

    def __init__(self, seed: int, device: torch.device):
        self.init = torch.Generator().manual_seed(seed)
        derived = int(torch.randint(0, 2**62, (1,), generator=self.init))
        self.perturbation = torch.Generator(device=device).manual_seed(derived)


def _perturbation(streams, shape, std, like):
    """std · N(0, 1) of ``shape`` per restart, stacked along the channels (1, R·C, H, W)."""
    return torch.cat([torch.randn(shape, generator=s.perturbation, device=like.device, dtype=like.dtype)
                      for s in streams], dim=1) * std


# --------------------------------------------------------------------------------------------
# 4. Process memory: the third part of the fast CPU path
# --------------------------------------------------------------------------------------------

_M_TOP_PAD = -2  # glibc <malloc.h>: mallopt parameter number of M_TOP_PAD


def tune_cpu_allocator(top_pad_bytes: int = 2**30) -> bool:
    """Ask glibc's ``malloc`` to grow its heap ``top_pad_bytes`` at a time and keep that much free.

    One SelfDeblur iteration on a 255×255 image allocates and frees about 2 GB of activations in
    tensors of 1–40 MB. By default glibc returns most of that memory to the kernel when it is
    freed and gets it back, page by page and zero-filled, at the next allocation: hundreds of
    thousands of page faults per iteration, a large part of its wall time.
    With the pad the memory is reused instead. Process-wide and permanent (the process keeps up
    to ``top_pad_bytes`` of freed memory resident); it changes no result. Returns True if glibc
    accepted the setting, False where there is no glibc (macOS, Windows, musl): nothing is done.
    """
    if isinstance(top_pad_bytes, bool) or not isinstance(top_pad_bytes, int) or not 0 <= top_pad_bytes < 2**31:
        raise ValueError(f"top_pad_bytes must be an int in [0, 2**31), got {top_pad_bytes!r}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(_M_TOP_PAD, top_pad_bytes) == 1


# --------------------------------------------------------------------------------------------
# 5. The optimisation
# --------------------------------------------------------------------------------------------


@dataclass
class SelfDeblurResult:
    """Output of :func:`run_selfdeblur`.

    ``x_hat`` (R, C, H + kh − 1, W + kw − 1) and ``k_hat`` (R, kh, kw) (a convolution kernel,
    non-negative, summing to 1), on y's device and dtype, one per restart; restart r used seed
    ``seed + r``. ``loss_curve`` (R, N) float64 on the CPU: the objective of every deblurring
    iteration, all scales one after the other. ``stages``: per scale, its :class:`Stage` fields
    and the initialisation fit (iterations and final RMSE per restart, None without a fit).
    ``seconds``: wall time of the whole run.
    """

    x_hat: torch.Tensor
    k_hat: torch.Tensor
    loss_curve: torch.Tensor
    seed: int
    config: SelfDeblurConfig
    seconds: float
    stages: list = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.x_hat.shape[0]))


def _resize(t: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) to ``size``, antialiased when shrinking."""
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    shrink = size[0] < t.shape[-2] or size[1] < t.shape[-1]
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink)


def _restart_slices(modules):
    return [p for m in modules for p in m.parameters()]


def _fit_generators(gx, gk, zx, zk, x0, k0, config, streams):
    """Eq. (8): fit Gx to x0 and/or Gk to k0 (either may be None) until the RMSE is below
    ``init_rmse`` (``init_rmse`` · max k0 for the kernel) or ``init_max_iterations``.

    Restarts are independent: restart r stops at the first iteration where both of its fits are
    within tolerance; its parameters and perturbation stream are restored to that iteration at
    the end, so a batched fit equals R single fits. Returns per-restart iterations and RMSEs.
    """
    R = len(streams)
    groups = []
    if x0 is not None:
        groups.append({"params": list(gx.parameters()), "lr": config.init_lr_image})
    if k0 is not None:
        groups.append({"params": list(gk.parameters()), "lr": config.init_lr_kernel})
    optimizer = torch.optim.Adam(groups)
    params = _restart_slices([gx, gk])
    zero = torch.zeros(R, dtype=zx.dtype, device=zx.device)
    tol_x = config.init_rmse
    tol_k = None if k0 is None else config.init_rmse * k0.flatten(1).amax(dim=1)
    snapshots: list = [None] * R
    iterations, rmse_x, rmse_k = [config.init_max_iterations] * R, zero, zero
    for t in range(config.init_max_iterations + 1):
        mse_x = mse_k = zero
        if x0 is not None:
            noise = _perturbation(streams, (1, config.input_channels, *zx.shape[-2:]), config.input_noise_std, zx)
            mse_x = (gx(zx + noise) - x0).square().mean(dim=(1, 2, 3))
        if k0 is not None:
            mse_k = (gk(zk) - k0).square().mean(dim=(1, 2))
        rmse_x, rmse_k = mse_x.detach().sqrt(), mse_k.detach().sqrt()
        within = (rmse_x <= tol_x) if x0 is not None else torch.ones(R, dtype=torch.bool, device=zx.device)
        if k0 is not None:
            within &= rmse_k <= tol_k
        for r in torch.nonzero(within).flatten().tolist():
            if snapshots[r] is None:
                snapshots[r] = ([p[r].detach().clone() for p in params], streams[r].perturbation.get_state(),
                                float(rmse_x[r]), float(rmse_k[r]))
                iterations[r] = t
        if all(s is not None for s in snapshots) or t == config.init_max_iterations:
            break
        optimizer.zero_grad(set_to_none=True)
        (mse_x.sum() + mse_k.sum()).backward()
        optimizer.step()
    final_x, final_k = rmse_x.tolist(), rmse_k.tolist()
    with torch.no_grad():
        for r, snap in enumerate(snapshots):
            if snap is None:
                continue
            values, state, final_x[r], final_k[r] = snap
            for p, v in zip(params, values):
                p[r].copy_(v)
            streams[r].perturbation.set_state(state)
    return {
        "fit_iterations": iterations,
        "fit_rmse_image": final_x if x0 is not None else None,
        "fit_rmse_kernel": final_k if k0 is not None else None,
    }


@dataclass(frozen=True)
class IterationInfo:
    """What :func:`run_selfdeblur` passes to its ``callback`` after every deblurring iteration:
    the scale index ``stage`` (0 = coarsest), the ``iteration`` within it (0-based), the x (R, C,
    H', W') and k (R, kh, kw) that this iteration evaluated (before its Adam step; x from the
    perturbed input), their objective ``loss`` (R,), all detached on the run's device, the
    ``seed`` of restart 0 and the wall-clock ``time`` (``time.perf_counter()``) after the step."""

    stage: int
    iteration: int
    x: torch.Tensor
    k: torch.Tensor
    loss: torch.Tensor
    seed: int
    time: float


def _deblur(gx, gk, zx, zk, y, stage_index: int, stage: Stage, config, streams, bar, callback, seed):
    """The SelfDeblur loop on one scale; returns the loss curve (R, iterations) and the final
    estimates (x from the unperturbed input, BatchNorm in training mode as during the loop)."""
    optimizer = torch.optim.Adam([{"params": list(gx.parameters()), "lr": config.lr_image},
                                  {"params": list(gk.parameters()), "lr": config.lr_kernel}])
    curve = torch.empty(len(streams), stage.iterations, dtype=torch.float64, device=y.device)
    noise_shape = (1, config.input_channels, *zx.shape[-2:])
    for t in range(stage.iterations):
        decay = config.gamma ** bisect.bisect_right(config.milestones, t)  # MultiStepLR
        optimizer.param_groups[0]["lr"] = config.lr_image * decay
        optimizer.param_groups[1]["lr"] = config.lr_kernel * decay
        x = gx(zx + _perturbation(streams, noise_shape, config.input_noise_std, zx))
        k = gk(zk)
        losses = _objective(y, x, k, loss_schedule(t, config, stage.last))
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        curve[:, t] = losses.detach()
        if callback is not None:
            callback(IterationInfo(stage_index, t, x.detach(), k.detach(), losses.detach(), seed,
                                   time.perf_counter()))
        bar.update(1)
        if t % 50 == 0 or t == stage.iterations - 1:
            bar.set_postfix(loss=f"{float(losses.detach().min()):.4g}")
    with torch.no_grad():
        return curve.cpu(), gx(zx), gk(zk)


def _initial_state(stage: Stage, out_channels: int, config, streams, device, dtype):
    """Fresh generators and inputs of one scale, drawn restart by restart from their streams."""
    R, gens = len(streams), [s.init for s in streams]
    gx = ImageGenerator(config.input_channels, out_channels, restarts=R, generators=gens)
    gk = KernelGenerator(stage.kernel_size, config.kernel_input_size, config.kernel_hidden, restarts=R,
                         generators=gens)
    x_size = (stage.image_size[0] + stage.kernel_size[0] - 1, stage.image_size[1] + stage.kernel_size[1] - 1)
    zx = torch.cat([torch.rand((1, config.input_channels, *x_size), generator=g, dtype=torch.float64)
                    for g in gens], dim=1) * config.input_scale
    zk = torch.stack([torch.rand(config.kernel_input_size, generator=g, dtype=torch.float64)
                      for g in gens]) * config.input_scale
    gx = gx.to(device=device, dtype=dtype)
    gx.fast = config.fast
    return gx, gk.to(device=device, dtype=dtype), zx.to(device=device, dtype=dtype), zk.to(device=device, dtype=dtype)


def _check_run_arguments(y, kernel_size, config, seed, restarts, batched, progress, callback):
    check_tensor(y, "y", (4,))
    if y.shape[0] != 1 or y.shape[1] not in (1, 3):
        raise ValueError(f"y must be one grey or RGB image (1, 1 or 3, H, W), got shape {tuple(y.shape)}")
    if config is None:
        config = SelfDeblurConfig()
    if not isinstance(config, SelfDeblurConfig):
        raise ValueError(f"config must be a SelfDeblurConfig, got {type(config).__name__}")
    check_int(seed, "seed", 0)
    check_int(restarts, "restarts", 1)
    _check_flag(batched, "batched")
    _check_flag(progress, "progress")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable, got {callback!r}")
    plan = scale_plan(tuple(y.shape[-2:]), kernel_size, config)
    return config, plan


def run_selfdeblur(y: torch.Tensor, kernel_size, config: SelfDeblurConfig | None = None, seed: int = 0,
                   device="cpu", progress: bool = True, restarts: int = 1,
                   batched: bool = True, callback=None) -> SelfDeblurResult:
    """Blind deconvolution of y (1, C, H, W), C = 1 (grey) or 3 (RGB), with SelfDeblur and the
    modifications switched on in ``config`` (default: the original method).

    ``kernel_size``: odd int or (kh, kw). Runs on ``device`` in y's dtype; the result is returned
    on y's device. ``restarts`` = R independent runs with seeds ``seed … seed + R − 1``:
    ``batched=True`` runs them as one grouped computation (see the module docstring),
    ``batched=False`` one after another; both compute the same thing. For a fixed seed, device
    and thread count the result is bit-identical from run to run on the CPU (CUDA kernels may not
    be deterministic). ``callback``, if given, is called with an :class:`IterationInfo` after
    every deblurring iteration (to record intermediate estimates or timings).
    """
    config, plan = _check_run_arguments(y, kernel_size, config, seed, restarts, batched, progress, callback)
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', got {device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device is 'cuda' but no CUDA device is available")
    if not batched and restarts > 1:
        runs = [run_selfdeblur(y, kernel_size, config, seed + r, device, progress, callback=callback)
                for r in range(restarts)]
        stages = [{key: (sum((run.stages[i][key] for run in runs), []) if key.startswith("fit_")
                         and runs[0].stages[i][key] is not None else runs[0].stages[i][key])
                   for key in runs[0].stages[i]} for i in range(len(plan))]
        return SelfDeblurResult(torch.cat([r.x_hat for r in runs]), torch.cat([r.k_hat for r in runs]),
                                torch.cat([r.loss_curve for r in runs]), seed, config,
                                sum(r.seconds for r in runs), stages)
    start = time.perf_counter()
    if config.fast and device.type == "cpu":
        tune_cpu_allocator()
    luma_only = y.shape[1] == 3 and config.color == "luma"
    work = (rgb_to_ycbcr(y)[:, :1] if luma_only else y).to(device)
    streams = [_RestartStreams(seed + r, device) for r in range(restarts)]
    x_prev = k_prev = None
    curves, stages = [], []
    with tqdm(total=sum(s.iterations for s in plan), disable=not progress, desc="SelfDeblur") as bar:
        for stage in plan:
            y_s = _resize(work, stage.image_size)
            gx, gk, zx, zk = _initial_state(stage, work.shape[1], config, streams, device, work.dtype)
            x0 = k0 = None
            if x_prev is not None:  # multiscale: start from the previous scale's estimates
                x_size = (stage.image_size[0] + stage.kernel_size[0] - 1,
                          stage.image_size[1] + stage.kernel_size[1] - 1)
                x0 = _resize(x_prev, x_size).clamp(0, 1)
                k0 = _resize(k_prev.unsqueeze(1), stage.kernel_size).squeeze(1).clamp_min(0)
                k0 = k0 / k0.sum(dim=(-2, -1), keepdim=True)
            else:
                if config.initialisation:
                    kh, kw = stage.kernel_size
                    gauss = kernels.anisotropic_gaussian(stage.kernel_size, max((kw - 1) / 2, 0.5),
                                                         max((kh - 1) / 2, 0.5), 0.0, dtype=work.dtype)
                    k0 = gauss.to(device).expand(restarts, kh, kw)
                if config.initial_image == "observation":
                    x0 = pad_observation(y_s, stage.kernel_size).expand(restarts, -1, -1, -1)
            info = {"factor": stage.factor, "image_size": list(stage.image_size),
                    "kernel_size": list(stage.kernel_size), "iterations": stage.iterations,
                    "fit_iterations": None, "fit_rmse_image": None, "fit_rmse_kernel": None}
            if x0 is not None or k0 is not None:
                info.update(_fit_generators(gx, gk, zx, zk, x0, k0, config, streams))
            curve, x_prev, k_prev = _deblur(gx, gk, zx, zk, y_s, len(stages), stage, config, streams, bar,
                                            callback, seed)
            curves.append(curve)
            stages.append(info)
    x_hat = x_prev
    if luma_only:
        chroma = pad_observation(rgb_to_ycbcr(y)[:, 1:], plan[-1].kernel_size).to(device)
        x_hat = ycbcr_to_rgb(torch.cat([x_hat, chroma.expand(restarts, -1, -1, -1)], dim=1)).clamp(0, 1)
    return SelfDeblurResult(x_hat.detach().to(y.device), k_prev.detach().to(y.device), torch.cat(curves, dim=1),
                            seed, config, time.perf_counter() - start, stages)
