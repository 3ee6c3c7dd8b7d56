"""Non-blind deconvolution: differentiable closed forms (Wiener, Tikhonov), a sparse prior, a learned solver.

Kernel-Diff needs a non-blind solver x̂ = F(y, k) (eq. 14) that is differentiable in k, to guide
the kernel diffusion by the reblurring loss ‖y − k ⊛ F(y, k)‖² (Algorithm 1). The paper uses the
pretrained DWDN network (a learned Wiener deconvolution in feature space, FACTS.md); its weights
are not available offline, so the book uses the classical solvers below as F. They also serve as
non-blind oracles (true kernel) in the evaluations; the reference x_k of the error ratio is
:func:`sparse_deconv` (below).

Both solve, per image and channel, a least-squares problem whose normal equations are diagonal
in Fourier when the blur is circular:

- :func:`wiener`:   min_x ‖k ⊛ x − y‖² + nsr ‖x‖²                 X = K̄ Y / (|K|² + nsr)
- :func:`tikhonov`: min_x ‖k ⊛ x − y‖² + lam (‖∂ₕx‖² + ‖∂ᵥx‖²)   X = K̄ Y / (|K|² + lam (|Dₕ|² + |Dᵥ|²))

with K = :func:`repro.ops.psf2otf` of the kernel (conjugated for ``op="corr"``) and Dₕ, Dᵥ the
transfer functions of the finite differences [1, −1] along rows and columns. The blur model is
the one of :func:`repro.ops.blur` (same kernel shapes, origin and ``op``).

Boundary (``mode``):

- ``"circular"``: treat y as periodic. Exact for a circularly blurred image, but a real photograph
  is not periodic: the jump between opposite borders rings across the whole result.
- ``"symmetric"`` (default): mirror y into a (2H, 2W) image ``[[y, y⇆], [y⇅, y⇅⇆]]`` that is
  periodic *and* continuous, solve on it circularly, keep the top-left (H, W). This removes the
  border jump; for an odd-sized kernel symmetric about both axes (equal to its up-down and to
  its left-right flip, e.g. an axis-aligned Gaussian) it inverts exactly a blur with the
  ``"symmetric"`` boundary (the one Kernel-Diff assumes, §4); for other kernels (motion blur)
  it is an approximation that is still free of the border jump. It is the default because the
  images these solvers meet (blurred photographs, y in Kernel-Diff's guidance) are not
  periodic; it costs four times the FFT size of ``"circular"``.

The sparse-prior solver (Levin et al.)
--------------------------------------

:func:`sparse_deconv` is the non-blind deconvolution of Levin, Fergus, Durand & Freeman ("Image and
depth from a conventional camera with a coded aperture", SIGGRAPH 2007), the x_k of the error ratio
‖x̂ − x‖² / ‖x_k − x‖² of Levin, Weiss, Durand & Freeman ("Understanding and evaluating blind
deconvolution algorithms", CVPR 2009). It minimises a hyper-Laplacian prior on derivatives,

    E(x) = ‖k ⊛ x − y‖² + λ Σ_f c_f Σ_i ρ_ε((f ⊛ x)_i),                                   (S)

    ρ_ε(d) = |d|^α for |d| ≥ ε,  α/2 · ε^(α−2) d² + (1 − α/2) ε^α below,

over the filters f = ∂ₕ, ∂ᵥ (c_f = 1) and ∂ₕₕ, ∂ᵥᵥ, ∂ₕᵥ (c_f = 1/4), α = 0.8, by iteratively
reweighted least squares. ρ_ε is |d|^α continued quadratically below ε: the penalty that the
reweighting of Levin's reference code ``deconvSps.m`` minimises, whose weights are floored at ε.
The filters, weights, α, ε, λ and iteration counts are facts read from that code and from the
call that computes x_k (the ``SPARSE_*`` constants); IRLS, boundary and conjugate gradients:
:func:`sparse_deconv`.

The learned solver (DWDN design)
--------------------------------

:class:`LearnedWiener` is a smaller model of the design of DWDN (Dong, Roth & Schiele, "Deep
Wiener Deconvolution: Wiener Meets Deep Learning for Image Deblurring", NeurIPS 2020; FACTS.md,
"Kernel-Diff"), trained by this project (:mod:`repro.experiments.solver`) because DWDN's weights cannot be
downloaded: feature extraction (a 5×5 convolution 3 → ``features`` and residual blocks), a Wiener
deconvolution of every feature channel in Fourier with a per-channel noise-to-signal ratio
estimated from the features and from the blurred image, and an encoder–decoder that refines the
deconvolved features, trained with a multi-scale L1 loss. It is the F of Kernel-Diff's eq. 14 and
the "oracle" row (F with the true kernel) of the evaluation tables. Its training schedule and
cache per profile are :mod:`repro.experiments.solver`; train it with
``repro train solver --profile quick``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice, check_int, check_positive, check_positive_int, check_tensor, is_int
from .ops import OPS, check_image_kernel, pad, psf2otf

MODES = ("circular", "symmetric")

FIRST_ORDER = (((1.0, -1.0),), ((1.0,), (-1.0,)))
"""The finite differences [1, −1] along rows (∂ₕ) and along columns (∂ᵥ), as nested tuples of
taps with the origin of :func:`repro.ops.psf2otf` (fh//2, fw//2)."""

SECOND_ORDER = (((-1.0, 2.0, -1.0),), ((-1.0,), (2.0,), (-1.0,)), ((-1.0, 1.0), (1.0, -1.0)))
"""The second differences ∂ₕₕ, ∂ᵥᵥ and the mixed ∂ₕᵥ, taps as :data:`FIRST_ORDER`."""


def _squared_magnitude(z: torch.Tensor) -> torch.Tensor:
    # |z|² without abs(), whose gradient is undefined at 0
    return z.real.square() + z.imag.square()


def gradient_energy(shape, dtype=torch.float64, device=None) -> torch.Tensor:
    """|Dₕ|² + |Dᵥ|² on the ``rfft2`` grid of ``shape`` (H, W), Dₕ, Dᵥ the [1, −1] differences.

    Equals 4 sin²(πu/H) + 4 sin²(πv/W); shape (H, W//2 + 1).
    """
    return _filter_energies(FIRST_ORDER, shape, dtype, device).sum(dim=0)


def _filter_energies(filters, shape, dtype=torch.float64, device=None) -> torch.Tensor:
    """|F|² of each filter (a nested tuple of taps, origin (fh//2, fw//2)) on the ``rfft2`` grid
    of ``shape``; shape (len(filters), H, W//2 + 1)."""
    return torch.stack([_squared_magnitude(psf2otf(torch.tensor(f, dtype=dtype, device=device), shape, onesided=True))
                        for f in filters])


def _extend(y: torch.Tensor, k4: torch.Tensor, mode: str, op: str) -> tuple[torch.Tensor, torch.Tensor]:
    """y extended as ``mode`` says (module docstring) and the transfer function K of the blur on
    that grid (``rfft2`` half-spectrum, conjugated for ``op="corr"``)."""
    H, W = y.shape[-2:]
    extended = y if mode == "circular" else pad(y, (0, H, 0, W), "symmetric")
    grid = tuple(extended.shape[-2:])
    kh, kw = k4.shape[-2:]
    if kh > grid[0] or kw > grid[1]:
        raise ValueError(f"k of size {kh}x{kw} is larger than the {grid[0]}x{grid[1]} grid of mode {mode!r}")
    otf = psf2otf(k4, grid, onesided=True)
    return extended, otf.conj() if op == "corr" else otf


def _fourier_solve(spectrum: torch.Tensor, otf: torch.Tensor, prior, grid) -> torch.Tensor:
    """irfft2(spectrum / (|K|² + prior)): the solution z of (KᵀK + P) z = b on the circular
    ``grid``, for b of ``rfft2`` ``spectrum`` and a prior P diagonal in Fourier."""
    return torch.fft.irfft2(spectrum / (_squared_magnitude(otf) + prior), s=grid)


def _deconvolve(y: torch.Tensor, k4: torch.Tensor, mode: str, op: str, prior) -> torch.Tensor:
    """X = K̄ Y / (|K|² + prior(grid)) on the grid that ``mode`` extends y to; cropped to y."""
    H, W = y.shape[-2:]
    extended, otf = _extend(y, k4, mode, op)
    grid = tuple(extended.shape[-2:])
    return _fourier_solve(otf.conj() * torch.fft.rfft2(extended), otf, prior(grid), grid)[..., :H, :W]


def _check_options(mode: str, op: str) -> None:
    check_choice(mode, "mode", MODES)
    check_choice(op, "op", OPS)


def wiener(
    y: torch.Tensor, k: torch.Tensor, nsr: float = 1e-2, mode: str = "symmetric", op: str = "conv"
) -> torch.Tensor:
    """Wiener deconvolution X = K̄ Y / (|K|² + nsr), per image and channel.

    ``y`` (B, C, H, W) blurred by ``k`` ((kh, kw), (B, kh, kw) or (B, C, kh, kw), as in
    :func:`repro.ops.blur` with the same ``op``); ``nsr`` ≥ 0 the noise-to-signal power ratio
    (with 0, K must have no zeros); ``mode`` "symmetric" (default) or "circular" (module
    docstring). Returns x̂ with the shape of y; differentiable in y and k.
    """
    y, k4 = check_image_kernel(y, k, x_name="y")
    nsr = check_positive(nsr, "nsr", allow_zero=True)
    _check_options(mode, op)
    return _deconvolve(y, k4, mode, op, lambda grid: nsr)


def tikhonov(
    y: torch.Tensor, k: torch.Tensor, lam: float = 1e-3, mode: str = "symmetric", op: str = "conv"
) -> torch.Tensor:
    """Least squares with a gradient prior, X = K̄ Y / (|K|² + lam (|Dₕ|² + |Dᵥ|²)).

    Arguments as :func:`wiener`, with ``lam`` ≥ 0 the weight of the squared finite differences
    (with 0 it is the plain inverse filter, K must have no zeros). Differentiable in y and k.
    """
    y, k4 = check_image_kernel(y, k, x_name="y")
    lam = check_positive(lam, "lam", allow_zero=True)
    _check_options(mode, op)
    return _deconvolve(y, k4, mode, op, lambda grid: lam * gradient_energy(grid, y.dtype, y.device))


# --------------------------------------------------------------------------------------------
# The sparse-prior solver of Levin et al. 2007 (module docstring, eq. (S))
# --------------------------------------------------------------------------------------------

SPARSE_FILTERS = FIRST_ORDER + SECOND_ORDER
"""The filters f of eq. (S): ∂ₕ, ∂ᵥ, ∂ₕₕ, ∂ᵥᵥ, ∂ₕᵥ, those of ``deconvSps.m`` (the reference code
of Levin et al. 2007)."""

SPARSE_FILTER_WEIGHTS = (1.0, 1.0, 0.25, 0.25, 0.25)
"""c_f of eq. (S): ``deconvSps.m`` weights the second-order filters by a quarter of the first-order ones."""

SPARSE_ALPHA = 0.8
"""The exponent α of eq. (S), that of ``deconvSps.m``."""

SPARSE_FLOOR = 0.01
"""ε of eq. (S): ``deconvSps.m`` floors |f ⊛ x| at 0.01 in its weights (intensities in [0, 1])."""

SPARSE_LAMBDA = 0.0017
"""λ of eq. (S). The error-ratio scripts for Levin's data call ``deconvSps(y, k, 0.0068, 70)``:
0.0068 is the default weight ``edges_w`` of the final non-blind deconvolution in Levin et al.'s
2011 code (70 CG iterations, scored against the sharp image by ``comp_upto_shift``), and the
Levin-benchmark script of Krishnan, Tay & Fergus (2011) computes x_k of the error ratio by that
call. deconvSps weights first-order derivatives by we · w₀ · max(|d|, ε)^(α − 2) with
we = 0.0068, w₀ = 0.1: the IRLS weight λ · α/2 · max(|d|, ε)^(α − 2) of eq. (S) for
λ = 2 · 0.0068 · 0.1 / 0.8 = 0.0017."""

SPARSE_INITIAL_WEIGHT = 4.0
"""μ/λ of the Gaussian solve that starts IRLS: deconvSps starts from the minimiser of
‖k ⊛ x − y‖² + we Σ_f ‖f ⊛ x‖² (all five filters, unit weights), and we = 0.0068 = 4 λ."""

SPARSE_ITERATIONS = 2
"""Reweighted least-squares solves after the initial Gaussian one (``deconvSps.m``: two)."""

SPARSE_CG_ITERATIONS = 20
"""Conjugate-gradient steps per solve (``deconvSps.m``: 70 in the x_k call, unpreconditioned and
restarted from y). Ours are preconditioned and warm-started (:func:`sparse_deconv`): on Levin's
im1 with kernel 3 (255×255), 20 steps came within 2·10⁻⁵ of the result of 300, at every pixel."""


def _taps(f) -> list[tuple[tuple[int, int], float]]:
    """The non-zero taps of filter ``f`` as ((row, column) offset from its origin, value)."""
    ch, cw = len(f) // 2, len(f[0]) // 2
    return [((m - ch, n - cw), v) for m, row in enumerate(f) for n, v in enumerate(row) if v]


def _filter(x: torch.Tensor, taps, adjoint: bool = False) -> torch.Tensor:
    """Circular correlation of x with a filter given by its :func:`_taps`, or its adjoint (the
    circular convolution): a few rolls, cheaper than an FFT for 2–4 taps."""
    sign = 1 if adjoint else -1
    out = torch.zeros_like(x)
    for (dm, dn), v in taps:
        out.add_(torch.roll(x, (sign * dm, sign * dn), dims=(-2, -1)) if dm or dn else x, alpha=v)
    return out


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(dim=(-2, -1), keepdim=True)


def _conjugate_gradients(x, b, apply, precondition, iterations: int) -> torch.Tensor:
    """``iterations`` steps of preconditioned conjugate gradients on A x = b from ``x``, each
    image and channel its own system (A symmetric positive definite, applied by ``apply``)."""
    r = b - apply(x)
    z = precondition(r)
    p, rz = z, _dot(r, z)
    for _ in range(iterations):
        q = apply(p)
        pq = _dot(p, q)
        step = torch.where(pq > 0, rz / pq, 0.0)  # pq = 0 only once a system is solved exactly
        x = x + step * p
        r = r - step * q
        z = precondition(r)
        rz_next = _dot(r, z)
        p = z + torch.where(rz > 0, rz_next / rz, 0.0) * p
        rz = rz_next
    return x


@torch.no_grad()
def sparse_deconv(
    y: torch.Tensor, k: torch.Tensor, lam: float = SPARSE_LAMBDA, alpha: float = SPARSE_ALPHA,
    iterations: int = SPARSE_ITERATIONS, cg_iterations: int = SPARSE_CG_ITERATIONS, mode: str = "symmetric",
    op: str = "conv",
) -> torch.Tensor:
    """Non-blind deconvolution with Levin et al.'s sparse derivative prior, eq. (S), by IRLS.

    ``y`` (B, C, H, W) blurred by ``k`` (shapes, ``op`` and ``mode`` as :func:`wiener`); ``lam``
    ≥ 0 the weight λ of the prior, ``alpha`` in (0, 2] its exponent α (2: a Gaussian prior, a
    linear problem), ``iterations`` ≥ 0 reweighted solves, ``cg_iterations`` ≥ 1 conjugate-gradient
    steps per solve. Returns x̂ with the shape and dtype of y, computed in float64, without
    gradients. The defaults (the ``SPARSE_*`` constants) are the settings of the reference x_k
    of Levin et al. 2009's error ratio.

    Iteratively reweighted least squares (IRLS), as ``deconvSps.m``: x⁰ minimises
    ‖k ⊛ x − y‖² + μ Σ_f ‖f ⊛ x‖² with μ = :data:`SPARSE_INITIAL_WEIGHT` · λ (closed form in
    Fourier); solve t + 1 minimises the quadratic ‖k ⊛ x − y‖² + λ Σ_f c_f Σ_i w_fi (f ⊛ x)_i²
    with w_fi = α/2 · max(|(f ⊛ xᵗ)_i|, ε)^(α − 2). Up to a constant this quadratic majorises
    eq. (S) and touches it at xᵗ (ρ_ε is concave in d²), so E(x⁰) ≥ E(x¹) ≥ …; for α = 2 it is
    eq. (S) itself. Each solve runs preconditioned conjugate gradients on its normal equations,
    started from xᵗ (deconvSps restarts from y; a warm start keeps the decrease of E whatever
    the number of steps). The preconditioner is the same solve with each w_f replaced by its
    mean, diagonal in Fourier (T. Chan's optimal circulant approximation). With ``lam`` = 0 it
    is the inverse filter, K must have no zeros.
    Boundary: the whole problem lives on the grid of ``mode`` (circular, or y mirrored to
    (2H, 2W), module docstring); deconvSps instead estimates x beyond the borders of y and fits
    only the valid part of the blur.
    """
    y, k4 = check_image_kernel(y, k, x_name="y")
    lam = check_positive(lam, "lam", allow_zero=True)
    alpha = check_positive(alpha, "alpha")
    if alpha > 2:
        raise ValueError(f"alpha must be in (0, 2], got {alpha!r}")
    check_int(iterations, "iterations", 0)
    check_positive_int(cg_iterations, "cg_iterations")
    _check_options(mode, op)
    H, W = y.shape[-2:]
    extended, otf = _extend(y.double(), k4.double(), mode, op)
    grid = tuple(extended.shape[-2:])
    energies = _filter_energies(SPARSE_FILTERS, grid, device=y.device)  # |F_f|² on the grid
    taps = [_taps(f) for f in SPARSE_FILTERS]
    spectrum = otf.conj() * torch.fft.rfft2(extended)  # of Kᵀy
    x = _fourier_solve(spectrum, otf, SPARSE_INITIAL_WEIGHT * lam * energies.sum(dim=0), grid)
    b = torch.fft.irfft2(spectrum, s=grid)
    blur_energy = _squared_magnitude(otf)
    for _ in range(iterations):
        weights = [lam * c * alpha / 2 * _filter(x, t).abs().clamp_min(SPARSE_FLOOR).pow(alpha - 2)
                   for c, t in zip(SPARSE_FILTER_WEIGHTS, taps)]
        mean_prior = sum(w.mean(dim=(-2, -1), keepdim=True) * e for w, e in zip(weights, energies))

        def normal(v):  # (KᵀK + Σ_f Fᵀ W_f F) v, the matrix of this solve
            data = torch.fft.irfft2(blur_energy * torch.fft.rfft2(v), s=grid)
            return data + sum(_filter(w * _filter(v, t), t, adjoint=True) for w, t in zip(weights, taps))

        def precondition(r):
            return _fourier_solve(torch.fft.rfft2(r), otf, mean_prior, grid)

        x = _conjugate_gradients(x, b, normal, precondition, cg_iterations)
    return x[..., :H, :W].to(y.dtype)


# --------------------------------------------------------------------------------------------
# The learned solver: a small DWDN (module docstring)
# --------------------------------------------------------------------------------------------


class _ResBlock(nn.Module):
    """x + conv3×3(ReLU(conv3×3(x))), the residual block of DWDN's feature extractor and decoder."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _level(c_in: int, c_out: int, blocks: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU(inplace=True),
                         *[_ResBlock(c_out) for _ in range(blocks)])


def noise_std(y: torch.Tensor) -> torch.Tensor:
    """Noise level σ̂ of each image of ``y`` (B, C, H, W), shape (B, 1, 1, 1).

    Donoho's robust estimator: the median absolute value of the finest diagonal Haar
    coefficients (a − b − c + d)/2 over 2×2 blocks, divided by 0.6745; for white Gaussian noise
    of standard deviation σ on a smooth image it returns ≈ σ. Not differentiable in a useful way
    (a median): the learned solver uses it as an input only.
    """
    H, W = y.shape[-2:]
    z = y[..., : H // 2 * 2, : W // 2 * 2]
    hh = (z[..., 0::2, 0::2] - z[..., 0::2, 1::2] - z[..., 1::2, 0::2] + z[..., 1::2, 1::2]) / 2
    return (hh.abs().flatten(1).median(dim=1).values / 0.6745).reshape(-1, 1, 1, 1)


class LearnedWiener(nn.Module):
    """F(y, k): a small DWDN (Dong et al. 2020), the learned non-blind solver of Kernel-Diff.

    1. **Features**: a 5×5 convolution 3 → ``features`` and ``blocks`` residual blocks, applied to
       y. The 3 channels of y itself are kept beside them (our addition: the decoder then only
       predicts a residual on the Wiener estimate of the image, which a small model learns faster).
    2. **Wiener deconvolution in feature space**: every channel c of the stack z = [y, features]
       is deconvolved with the same kernel k, ``Z_c K̄ / (|K|² + nsr_c)`` (DWDN's feature-space
       Wiener deconvolution), on the
       mirrored (2H, 2W) grid of :func:`wiener`'s ``"symmetric"`` mode; the channel's mean is
       taken out before and added back after (a kernel that sums to 1 keeps it, and the Wiener
       filter would otherwise shrink it by 1/(1 + nsr_c)). The noise-to-signal ratio
       of each image and channel is estimated as in DWDN from the noise level of y and the power
       of the feature: ``nsr_c = exp(a_c) (σ̂² + exp(b_c)) / (var(z_c) + 1e-4)`` with σ̂ =
       :func:`noise_std` (y) and learnable per-channel a_c, b_c (b_c keeps the ratio positive on
       noise-free data).
    3. **Refinement**: an encoder–decoder with ``len(widths)`` levels (stride-2 convolutions down,
       transposed convolutions up, additive skips, ``level_blocks`` residual blocks per level)
       maps the deconvolved stack to residuals added to the Wiener estimate of y at every scale
       (full, 1/2, 1/4, …): :meth:`forward_multiscale` gives all of them for DWDN's multi-scale
       L1 loss, :meth:`forward` the full-resolution image.

    **Boundary**: the inputs of Kernel-Diff are blurred with reflection padding
    (:func:`repro.synth.blur_reflect`). The deconvolution mirrors the stack into a periodic,
    continuous image of twice the size (as :func:`wiener` ``mode="symmetric"``), which removes
    the wrap-around jump of a plain FFT. It is still an approximation (the mirror repeats the
    edge pixel, the data's reflection does not, and motion kernels are not symmetric), so on
    small crops the border pixels carry most of classical Wiener's error; the refinement learns
    to correct part of this border residue. Images whose side
    is not a multiple of 2^(levels − 1) are padded by replication before the encoder and cropped
    back.

    ``forward(y, k)``: y (B, 3, H, W) in [0, 1], k (B, 1, kh, kw), (B, kh, kw) or (kh, kw), a
    convolution kernel (origin (kh//2, kw//2)) that should sum to 1 (it is not renormalised);
    returns x̂ (B, 3, H, W), differentiable in y and in k (Kernel-Diff's guidance needs ∂/∂k).
    ``seed`` fixes the initial weights.
    """

    def __init__(self, features: int = 16, blocks: int = 3, widths=(16, 32, 64), level_blocks: int = 1,
                 seed: int = 0):
        super().__init__()
        for name, value, low in (("features", features, 1), ("blocks", blocks, 0),
                                 ("level_blocks", level_blocks, 0), ("seed", seed, 0)):
            check_int(value, name, low)
        widths = tuple(widths)
        if not widths or not all(is_int(w, 1) for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}")
        self.config = {"features": features, "blocks": blocks, "widths": list(widths),
                       "level_blocks": level_blocks, "seed": seed}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.extract = nn.Sequential(nn.Conv2d(3, features, 5, padding=2), nn.ReLU(inplace=True),
                                         *[_ResBlock(features) for _ in range(blocks)])
            channels = 3 + features
            self.log_scale = nn.Parameter(torch.zeros(channels))
            self.log_floor = nn.Parameter(torch.full((channels,), math.log(1e-4)))
            self.encoder = nn.ModuleList(
                [_level(channels, widths[0], level_blocks)]
                + [_level(widths[i - 1], widths[i], level_blocks, stride=2) for i in range(1, len(widths))])
            self.up = nn.ModuleList(
                [nn.ConvTranspose2d(widths[i], widths[i - 1], 4, stride=2, padding=1)
                 for i in range(len(widths) - 1, 0, -1)])
            self.decoder = nn.ModuleList(
                [nn.Sequential(*[_ResBlock(widths[i - 1]) for _ in range(level_blocks)])
                 for i in range(len(widths) - 1, 0, -1)])
            self.heads = nn.ModuleList([nn.Conv2d(w, 3, 3, padding=1) for w in reversed(widths)])
        for head in self.heads:  # start from the Wiener estimate of y
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    @property
    def levels(self) -> int:
        return len(self.encoder)

    def nsr(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The per-image, per-channel noise-to-signal ratio (B, C, 1, 1) of the stack ``z``."""
        power = z.var(dim=(-2, -1), keepdim=True, unbiased=False)
        noise = noise_std(y).square()
        return self.log_scale.exp()[:, None, None] * (noise + self.log_floor.exp()[:, None, None]) / (power + 1e-4)

    def deconvolve(self, y: torch.Tensor, k4: torch.Tensor) -> torch.Tensor:
        """The Wiener-deconvolved stack [y, features] (B, 3 + features, H, W) (steps 1 and 2)."""
        z = torch.cat([y, self.extract(y)], dim=1)
        nsr = self.nsr(y, z)
        mean = z.mean(dim=(-2, -1), keepdim=True)  # kept: a kernel summing to 1 does not change it
        return mean + _deconvolve(z - mean, k4, "symmetric", "conv", lambda grid: nsr)

    def forward_multiscale(self, y: torch.Tensor, k: torch.Tensor) -> list[torch.Tensor]:
        """Estimates at full, 1/2, 1/4 … resolution (finest first): (B, 3, H, W), then the coarser
        scales of y padded (replicate) to a multiple of 2^(levels − 1)."""
        y, k4 = _check_learned_inputs(y, k)
        H, W = y.shape[-2:]
        z = self.deconvolve(y, k4)
        m = 2 ** (self.levels - 1)
        ph, pw = -H % m, -W % m
        if ph or pw:
            z = pad(z, (0, ph, 0, pw), "replicate")
        skips = []
        h = z
        for level in self.encoder:
            h = level(h)
            skips.append(h)
        outputs = []
        base = z[:, :3]
        for s, head in enumerate(self.heads):  # coarsest first
            scale = self.levels - 1 - s
            if s > 0:
                h = self.decoder[s - 1](self.up[s - 1](h) + skips[scale])
            coarse = F.avg_pool2d(base, 2**scale) if scale else base
            outputs.append(coarse + head(h))
        outputs = outputs[::-1]
        outputs[0] = outputs[0][..., :H, :W]
        return outputs

    def forward(self, y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return self.forward_multiscale(y, k)[0]


def _check_learned_inputs(y, k) -> tuple[torch.Tensor, torch.Tensor]:
    check_tensor(y, "y", (4,))
    if y.shape[1] != 3:
        raise ValueError(f"y must be RGB (B, 3, H, W), got shape {tuple(y.shape)}")
    check_tensor(k, "k", (2, 3, 4))
    if k.ndim == 4:
        if k.shape[1] != 1:
            raise ValueError(f"k must be (B, 1, kh, kw), (B, kh, kw) or (kh, kw), got shape {tuple(k.shape)}")
        k = k[:, 0]
    return check_image_kernel(y, k, x_name="y")


def multiscale_l1(outputs: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """DWDN's loss: Σ_s mean |x̂_s − avgpool_{2^s}(x)| over the scales of
    :meth:`LearnedWiener.forward_multiscale` (x of a side divisible by 2^(scales − 1))."""
    loss = 0.0
    for s, out in enumerate(outputs):
        target = F.avg_pool2d(x, 2**s) if s else x
        loss = loss + (out - target).abs().mean()
    return loss
