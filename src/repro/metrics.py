"""Image and kernel quality metrics (torch, CPU/CUDA, float32/float64).

Conventions
-----------
Images are ``(B, C, H, W)`` (batched), ``(C, H, W)`` or ``(H, W)`` (one image). A metric
returns one value per batch item, shape ``(B,)``, for batched input and a 0-dim tensor for
one image. Colour images are compared over all channels at once (PSNR: one mean squared
error over C, H, W; SSIM: mean over channels of the per-channel mean SSIM, which equals the
mean over all cropped pixels). Two images must have the same shape and device; mixed
float32/float64 are compared in float64. :func:`psnr`, :func:`ssim`, :func:`isnr`,
:func:`error_ratio` and :func:`mnc` are differentiable with autograd (``1 - ssim`` is the
SelfDeblur loss, FACTS.md "SelfDeblur").

Kernels are ``(kh, kw)`` or ``(B, kh, kw)``.

Evaluation protocol (FACTS.md "Common forward model", Levin et al. 2009): blind estimates
are compared *up to shift* -- :func:`align` searches the displacement of the estimate on a
``step`` = 0.25 px grid, comparing on the interior left after cropping ``border`` = 15 px,
and :func:`compare_up_to_shift` reports PSNR, SSIM (and the error ratio) there.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import scipy.stats
import torch
import torch.nn.functional as F

from ._checks import check_positive, check_tensor

__all__ = [
    "psnr",
    "ssim",
    "isnr",
    "error_ratio",
    "mnc",
    "shift_image",
    "align",
    "compare_up_to_shift",
]

# SSIM constants of Wang et al. 2004 as in skimage (gaussian_weights=True, sigma=1.5,
# truncate=3.5): a separable Gaussian of radius int(3.5 * 1.5 + 0.5) = 5, i.e. 11 taps.
SSIM_SIGMA = 1.5
SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)
SSIM_K1 = 0.01
SSIM_K2 = 0.03


# ----------------------------------------------------------------------------- helpers
def _as_batch(t: torch.Tensor) -> torch.Tensor:
    """View an image of rank 2, 3 or 4 as ``(B, C, H, W)``."""
    return t.reshape((1,) * (4 - t.ndim) + tuple(t.shape))


def _unbatch(v: torch.Tensor, batched: bool) -> torch.Tensor:
    """Drop the batch axis of a per-item result when the input was one image."""
    return v if batched else v[0]


def _image_pair(a, b, name_a: str, name_b: str):
    """Validate two images of equal shape; return them as ``(B, C, H, W)`` of one dtype."""
    check_tensor(a, name_a, (2, 3, 4))
    check_tensor(b, name_b, (2, 3, 4))
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.device != b.device:
        raise ValueError(
            f"{name_a} and {name_b} must be on the same device, got {a.device} and {b.device}"
        )
    dtype = torch.promote_types(a.dtype, b.dtype)
    return _as_batch(a).to(dtype), _as_batch(b).to(dtype), a.ndim == 4


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the last three axes (C, H, W): ``(B, C, H, W)`` -> ``(B,)``."""
    return (a - b).square().mean(dim=(-3, -2, -1))


def _crop(t: torch.Tensor, border: int) -> torch.Tensor:
    """Remove ``border`` pixels on each side of the last two axes."""
    h, w = t.shape[-2:]
    return t[..., border : h - border, border : w - border]


def _symmetric_pad(t: torch.Tensor, r: int) -> torch.Tensor:
    """Half-sample symmetric padding by ``r <= H, W`` pixels (scipy.ndimage ``mode='reflect'``:
    ``d c b a | a b c d | d c b a``; torch's ``'reflect'`` would skip the edge sample)."""
    t = torch.cat([t[..., :r, :].flip(-2), t, t[..., t.shape[-2] - r :, :].flip(-2)], dim=-2)
    return torch.cat([t[..., :r].flip(-1), t, t[..., t.shape[-1] - r :].flip(-1)], dim=-1)


def _gaussian_filter(t: torch.Tensor) -> torch.Tensor:
    """The SSIM window: separable 11-tap Gaussian (sigma 1.5) with symmetric borders, applied
    to every ``(H, W)`` plane of ``t`` -- scipy.ndimage.gaussian_filter(mode='reflect')."""
    offsets = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=t.dtype, device=t.device)
    taps = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    taps = taps / taps.sum()
    h, w = t.shape[-2:]
    planes = _symmetric_pad(t, SSIM_RADIUS).reshape(-1, 1, h + 2 * SSIM_RADIUS, w + 2 * SSIM_RADIUS)
    planes = F.conv2d(planes, taps.view(1, 1, -1, 1))
    planes = F.conv2d(planes, taps.view(1, 1, 1, -1))
    return planes.reshape(t.shape)


# ----------------------------------------------------------------------- image metrics
def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE(x, ref))`` in dB.

    Equals ``skimage.metrics.peak_signal_noise_ratio(ref, x, data_range=data_range)``; for a
    batch, one value per item (the MSE is taken over C, H, W). Identical images give ``+inf``
    (and a NaN gradient there).
    """
    xb, rb, batched = _image_pair(x, ref, "x", "ref")
    data_range = check_positive(data_range, "data_range")
    return _unbatch(10 * torch.log10(data_range**2 / _mse(xb, rb)), batched)


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean structural similarity (Wang et al. 2004), differentiable.

    Reproduces ``skimage.metrics.structural_similarity(ref, x, data_range=data_range,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=...)``:
    local means/variances/covariance with an 11x11 Gaussian window (sigma 1.5) and
    half-sample symmetric borders, population covariance, ``C1 = (0.01 R)^2``,
    ``C2 = (0.03 R)^2``; the SSIM map is averaged after cropping the 5 px window radius on
    each side, then over channels. Images need H, W >= 11. ``ssim(x, x) == 1``.
    """
    xb, rb, batched = _image_pair(x, ref, "x", "ref")
    data_range = check_positive(data_range, "data_range")
    h, w = xb.shape[-2:]
    if min(h, w) < 2 * SSIM_RADIUS + 1:
        side = 2 * SSIM_RADIUS + 1
        raise ValueError(f"x must be at least {side}x{side} pixels for SSIM, got {h}x{w}")
    moments = _gaussian_filter(torch.stack([xb, rb, xb * xb, rb * rb, xb * rb], dim=1))
    mu_x, mu_r, mom_xx, mom_rr, mom_xr = moments.unbind(dim=1)
    var_x = mom_xx - mu_x**2
    var_r = mom_rr - mu_r**2
    cov = mom_xr - mu_x * mu_r
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_r + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_r**2 + c1) * (var_x + var_r + c2)
    )
    return _unbatch(_crop(ssim_map, SSIM_RADIUS).mean(dim=(1, 2, 3)), batched)


def isnr(x_hat: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Improvement in SNR, ``PSNR(x_hat, x) - PSNR(y, x) = 10 log10(MSE(y, x) / MSE(x_hat, x))``
    in dB (FACTS.md "Common forward model"); ``data_range`` cancels. ``y`` must have the shape
    of ``x`` (crop a 'valid' observation first). ``x_hat == y`` gives 0; ``x_hat == x`` gives
    ``+inf``, ``y == x`` gives ``-inf`` (NaN if both).
    """
    hb, xb, batched = _image_pair(x_hat, x, "x_hat", "x")
    yb, xb2, _ = _image_pair(y, x, "y", "x")
    return _unbatch(10 * torch.log10(_mse(yb, xb2) / _mse(hb, xb)), batched)


def error_ratio(x_hat: torch.Tensor, x: torch.Tensor, x_k: torch.Tensor) -> torch.Tensor:
    """Levin et al. 2009 error ratio ``||x_hat - x||² / ||x_k - x||²``, where ``x_k`` is the
    non-blind deconvolution with the true kernel; 1 means "as good as knowing the kernel".

    Levin et al. compare sums of squared differences (SSD), so the norms are squared; FACTS.md
    writes the ratio of plain norms, which is the square root of this value (thresholds such as
    Levin's "error ratio < 3" refer to the SSD ratio). Sums over C, H, W, one value per batch item. For the up-to-shift protocol use
    :func:`compare_up_to_shift` with ``x_k``.
    """
    xb, rb, batched = _image_pair(x_hat, x, "x_hat", "x")
    kb, rb2, _ = _image_pair(x_k, x, "x_k", "x")
    reference_error = (kb - rb2).flatten(1).square().sum(dim=1)
    if (reference_error == 0).any():
        raise ValueError("x_k must differ from x (the error ratio divides by ||x_k - x||²)")
    return _unbatch((xb - rb).flatten(1).square().sum(dim=1) / reference_error, batched)


# ----------------------------------------------------------------------- kernel metric
def mnc(k_hat: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Maximum of normalized correlation (Hu & Yang 2012; FACTS.md "Common forward model").

    ``max_g sum_t k_hat(t) k(t + g) / (||k_hat||_2 ||k||_2)`` over ALL shifts ``g`` with any
    overlap (full cross-correlation, no flip), so kernels of different sizes compare and the
    value is symmetric in its arguments. In [0, 1] for non-negative kernels (1 iff one is a
    positive multiple of a shifted copy of the other).

    ``k_hat``, ``k``: ``(kh, kw)`` or ``(B, kh, kw)``; a 2D kernel is compared with every
    item of a batch. Returns ``(B,)`` if either is batched, else a 0-dim tensor.
    """
    check_tensor(k_hat, "k_hat", (2, 3))
    check_tensor(k, "k", (2, 3))
    if k_hat.device != k.device:
        raise ValueError(f"k_hat and k must be on the same device, got {k_hat.device} and {k.device}")
    batched = k_hat.ndim == 3 or k.ndim == 3
    dtype = torch.promote_types(k_hat.dtype, k.dtype)
    a = k_hat.to(dtype).reshape((-1,) + tuple(k_hat.shape[-2:]))
    b = k.to(dtype).reshape((-1,) + tuple(k.shape[-2:]))
    if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
        raise ValueError(f"k_hat and k must have the same batch size, got {a.shape[0]} and {b.shape[0]}")
    n = max(a.shape[0], b.shape[0])
    a, b = a.expand(n, -1, -1), b.expand(n, -1, -1)
    norm_a, norm_b = a.flatten(1).norm(dim=1), b.flatten(1).norm(dim=1)
    for norms, name in ((norm_a, "k_hat"), (norm_b, "k")):
        if (norms == 0).any():
            raise ValueError(f"{name} must not be identically zero (MNC divides by its norm)")
    ah, aw = a.shape[-2:]
    # conv2d is a cross-correlation: out[g] = sum_t a(t) b(t + g), g over the full range.
    corr = F.conv2d(b.unsqueeze(0), a.unsqueeze(1), padding=(ah - 1, aw - 1), groups=n)
    return _unbatch(corr[0].flatten(1).amax(dim=1) / (norm_a * norm_b), batched)


# ----------------------------------------------------------- comparison up to shift
def _axis_spectrum(t: torch.Tensor, dim: int) -> torch.Tensor:
    """rfft along ``dim`` of the half-sample symmetric extension of ``t`` (length doubled):
    its periodisation has no jump, so Fourier shifts ring much less than on ``t`` itself."""
    return torch.fft.rfft(torch.cat([t, t.flip(dim)], dim=dim), dim=dim)


def _shift_axis(spectrum: torch.Tensor, shift: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """Translate the length-``n`` signal behind ``spectrum`` (from :func:`_axis_spectrum`)
    along ``dim`` (-2 or -1) by ``shift`` (broadcastable to ``spectrum`` without its last two
    axes, e.g. ``(B, 1, 1, 1)``): ``out[i] = t(i - shift)``."""
    freqs = torch.fft.rfftfreq(2 * n, dtype=spectrum.real.dtype, device=spectrum.device)
    angle = -2 * math.pi * (freqs.view(-1, 1) if dim == -2 else freqs) * shift
    shifted = torch.fft.irfft(spectrum * torch.polar(torch.ones_like(angle), angle), n=2 * n, dim=dim)
    return shifted.narrow(dim, 0, n)


def _batch_shift(shift, n: int, like: torch.Tensor) -> torch.Tensor:
    """A shift ``(dy, dx)`` or ``(B, 2)`` as a ``(n, 2)`` tensor of ``like``'s dtype/device."""
    s = torch.as_tensor(shift, dtype=like.dtype, device=like.device)
    if s.shape not in ((2,), (n, 2)) or not torch.isfinite(s).all():
        raise ValueError(f"shift must be finite, of shape (2,) or ({n}, 2), got {tuple(s.shape)}")
    return s.expand(n, 2)


def shift_image(x: torch.Tensor, shift) -> torch.Tensor:
    """Translate ``x`` by ``shift = (dy, dx)`` pixels: ``out[i, j] = x(i - dy, j - dx)``.

    Sub-pixel shifts use the Fourier shift theorem, separably along H then W, each on the
    half-sample symmetric extension of ``x`` along that axis (periodic without jumps); an
    integer shift reproduces the moved pixels exactly (up to rounding) and fills the uncovered
    border by mirroring. ``shift`` is a pair or, for a batch ``(B, C, H, W)``, a ``(B, 2)``
    tensor (one shift per item). Differentiable in ``x`` (and in a tensor ``shift``).
    """
    check_tensor(x, "x", (2, 3, 4))
    xb = _as_batch(x)
    h, w = xb.shape[-2:]
    s = _batch_shift(shift, xb.shape[0], xb).reshape(-1, 2, 1, 1, 1)
    rows = _shift_axis(_axis_spectrum(xb, -2), s[:, 0], h, -2)
    return _shift_axis(_axis_spectrum(rows, -1), s[:, 1], w, -1).reshape(x.shape)


def _search_shift(
    xb: torch.Tensor, rb: torch.Tensor, max_shift: float, step: float, border: int
) -> torch.Tensor:
    """Displacement ``(B, 2)`` (within ``[-max_shift, max_shift]^2``) minimising the interior
    MSE between ``shift_image(xb, -d)`` and ``rb``.

    Coarse to fine: every integer displacement by exact slicing, then the best integer plus
    every multiple of ``step`` in ``(-1, 1)`` per axis by Fourier shifts (the MSE is smooth at
    the sub-pixel scale, so the optimum lies within half a pixel of the best integer); the
    candidates of one row shift share their H-axis transform. Float64, no grad.
    """
    with torch.no_grad():
        xd, rd = xb.double(), rb.double()
        h, w = xd.shape[-2:]
        interior = _crop(rd, border)
        m = int(math.floor(max_shift))
        errors = torch.stack(
            [
                _mse(xd[..., border + dy : h - border + dy, border + dx : w - border + dx], interior)
                for dy in range(-m, m + 1)
                for dx in range(-m, m + 1)
            ],
            dim=1,
        )
        best = errors.argmin(dim=1)
        best_y, best_x = best // (2 * m + 1) - m, best % (2 * m + 1) - m
        n_fine = math.ceil(1 / step - 1e-9) - 1
        offsets = step * torch.arange(-n_fine, n_fine + 1, dtype=torch.float64, device=xd.device)
        cand_y = (best_y + offsets[:, None]).clamp(-max_shift, max_shift)  # (n, B)
        cand_x = (best_x + offsets[:, None]).clamp(-max_shift, max_shift)
        rows = _shift_axis(_axis_spectrum(xd, -2), -cand_y[..., None, None, None], h, -2)
        row_spectrum = _axis_spectrum(rows[..., border : h - border, :], -1)  # (n, B, C, h', W+1)
        errors = []
        for sx in cand_x:
            shifted = _shift_axis(row_spectrum, -sx.view(-1, 1, 1, 1), w, -1)
            errors.append(_mse(shifted[..., border : w - border], interior))
        errors = torch.stack(errors, dim=1)  # (n_y, n_x, B)
        flat = errors.flatten(0, 1).argmin(dim=0)
        items = torch.arange(xd.shape[0], device=xd.device)
        n = len(offsets)
        return torch.stack([cand_y[flat // n, items], cand_x[flat % n, items]], dim=1)


def _check_protocol(x_hat, max_shift, step, border, min_interior: int):
    """Validate the up-to-shift parameters; return ``(max_shift, step, border)``."""
    if isinstance(border, bool) or not isinstance(border, int) or border < 0:
        raise ValueError(f"border must be a non-negative integer, got {border!r}")
    if max_shift is None:
        max_shift = float(border)
    max_shift = check_positive(max_shift, "max_shift", allow_zero=True)
    if max_shift > border:
        raise ValueError(
            f"max_shift must be <= border ({border}) so that only real pixels are compared, "
            f"got {max_shift}"
        )
    step = check_positive(step, "step")
    if step > 1:
        raise ValueError(f"step must be <= 1 pixel, got {step}")
    h, w = x_hat.shape[-2:]
    if min(h, w) - 2 * border < min_interior:
        raise ValueError(
            f"x_hat ({h}x{w}) must keep at least {min_interior} pixels per side "
            f"after cropping border={border}"
        )
    return max_shift, step, border


def align(
    x_hat: torch.Tensor,
    ref: torch.Tensor,
    max_shift: float | None = None,
    step: float = 0.25,
    border: int = 15,
):
    """Align ``x_hat`` to ``ref`` up to a translation (Levin et al. 2009 protocol, FACTS.md).

    Searches the displacement ``d`` (``x_hat(p) ~ ref(p - d)``, ``|d_i| <= max_shift``,
    default ``border``) that minimises the mean squared error on the interior left after
    cropping ``border`` pixels: all integer displacements, then the best one refined by
    multiples of ``step`` (the 0.25 px grid for the default; FACTS.md: SelfDeblur's scripts
    crop 15 px and step 0.25 px). Integer displacements are found exactly; sub-pixel ones
    use :func:`shift_image` (Fourier shift of the symmetric extension). One shift per batch
    item, all channels together.

    Returns ``(aligned, shift)``: ``aligned = shift_image(x_hat, -shift)`` with the shape of
    ``x_hat`` (differentiable in ``x_hat`` for the found shift; only its interior holds real
    pixels) and ``shift`` of shape ``(B, 2)`` or ``(2,)`` as ``(dy, dx)``.
    """
    xb, rb, batched = _image_pair(x_hat, ref, "x_hat", "ref")
    max_shift, step, border = _check_protocol(xb, max_shift, step, border, 1)
    shift = _search_shift(xb, rb, max_shift, step, border).to(xb.dtype)
    aligned = shift_image(xb, -shift)
    return aligned.reshape(x_hat.shape), _unbatch(shift, batched)


def compare_up_to_shift(
    x_hat: torch.Tensor,
    ref: torch.Tensor,
    x_k: torch.Tensor | None = None,
    data_range: float = 1.0,
    max_shift: float | None = None,
    step: float = 0.25,
    border: int = 15,
) -> dict:
    """PSNR and SSIM of ``x_hat`` against ``ref`` up to shift (Levin et al. 2009 protocol).

    ``x_hat`` is aligned with :func:`align`; both images are then cropped by ``border`` and
    compared with :func:`psnr` and :func:`ssim` (the interior must be at least 11x11). If
    ``x_k`` (the non-blind deconvolution with the true kernel) is given, it is aligned the same
    way and the :func:`error_ratio` of the aligned interiors is added.

    Returns ``dict(psnr=..., ssim=..., shift=...)`` (+ ``error_ratio``), each value of shape
    ``(B,)`` (``shift``: ``(B, 2)``) for a batch, 0-dim (``(2,)``) for one image.
    """
    xb, _, _ = _image_pair(x_hat, ref, "x_hat", "ref")
    _check_protocol(xb, max_shift, step, border, 2 * SSIM_RADIUS + 1)
    aligned, shift = align(x_hat, ref, max_shift, step, border)
    interior, ref_interior = _crop(aligned, border), _crop(ref, border)
    result = {
        "psnr": psnr(interior, ref_interior, data_range),
        "ssim": ssim(interior, ref_interior, data_range),
        "shift": shift,
    }
    if x_k is not None:
        aligned_k, _ = align(x_k, ref, max_shift, step, border)
        result["error_ratio"] = error_ratio(interior, ref_interior, _crop(aligned_k, border))
    return result


# --------------------------------------------------------------------------------------------
# Paired differences: two methods scored on the same inputs
# --------------------------------------------------------------------------------------------


def paired_gap(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean of the per-image differences a_i − b_i (same images, same order) and its standard
    error s_d / √n."""
    d = [a_i - b_i for a_i, b_i in zip(a, b, strict=True)]
    return statistics.fmean(d), statistics.stdev(d) / math.sqrt(len(d))


def gap_verdict(gap: float, se: float) -> str:
    """"ahead" when a paired difference exceeds two standard errors, "behind" when it is below
    minus two, otherwise "not resolved" (this many images cannot tell its sign)."""
    if not (math.isfinite(gap) and math.isfinite(se) and se >= 0):
        raise ValueError(f"gap must be finite and se finite and >= 0, got {gap!r}, {se!r}")
    return "ahead" if gap > 2 * se else "behind" if gap < -2 * se else "not resolved"


def describe_gap(gap: float, se: float, digits: int, unit: str = "") -> str:
    """A paired difference, its standard error and :func:`gap_verdict` as the chapters write it:
    "+3.09 ± 0.80 dB, ahead"."""
    verdict = gap_verdict(gap, se)
    return f"{gap:+.{digits}f} ± {se:.{digits}f}{' ' + unit if unit else ''}, {verdict}"


# --------------------------------------------------------------------------------------------
# Intervals and decisions: what the claims ledger (repro.claims) computes from the records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """An ``estimate`` with its two-sided ``level`` confidence interval [``low``, ``high``], from
    ``n`` values of standard deviation ``sd`` (for a rate: √(p(1 − p))). ``kind`` says how it was
    made, and so how more values would narrow it: "mean" (Student t), "rate" (Clopper–Pearson),
    "spread" (χ², ``n`` − 1 degrees of freedom) or "exact" (no spread at all)."""

    estimate: float
    low: float
    high: float
    n: int
    sd: float
    level: float
    kind: str = "mean"


def _check_level(level: float) -> float:
    if not (isinstance(level, float) and 0.5 <= level < 1):
        raise ValueError(f"level must be a float in [0.5, 1), got {level!r}")
    return level


def mean_interval(values, level: float = 0.95) -> Interval:
    """The mean of ``values`` with its Student-t interval, mean ± t_{n−1} s / √n; ValueError
    for fewer than two values or a non-finite one."""
    values = [float(v) for v in values]
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"an interval needs at least two finite values, got {values!r}")
    n, mean, sd = len(values), statistics.fmean(values), statistics.stdev(values)
    half = float(scipy.stats.t.ppf(0.5 + _check_level(level) / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, sd, level)


def paired_interval(a, b, level: float = 0.95) -> Interval:
    """The mean of the paired differences a_i − b_i (same inputs, same order) with its t interval."""
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"paired values must have the same length, got {len(a)} and {len(b)}")
    return mean_interval([x - y for x, y in zip(a, b)], level)


def rate_interval(successes: int, n: int, level: float = 0.95) -> Interval:
    """The rate successes / n with its exact (Clopper–Pearson) interval."""
    if not (isinstance(n, int) and isinstance(successes, int) and n >= 1 and 0 <= successes <= n):
        raise ValueError(f"need integers 0 <= successes <= n, n >= 1; got {successes!r} of {n!r}")
    tail = (1 - _check_level(level)) / 2
    low = float(scipy.stats.beta.ppf(tail, successes, n - successes + 1)) if successes else 0.0
    high = float(scipy.stats.beta.ppf(1 - tail, successes + 1, n - successes)) if successes < n else 1.0
    p = successes / n
    return Interval(p, low, high, n, math.sqrt(p * (1 - p)), level, "rate")


def side_of(interval: Interval, threshold: float) -> str:
    """"above" when the whole interval lies above ``threshold``, "below" when it lies below, and
    "straddles" otherwise."""
    return "above" if interval.low > threshold else "below" if interval.high < threshold else "straddles"


def inputs_to_decide(interval: Interval, threshold: float, cap: int = 100_000) -> int | None:
    """How many values would put the interval on one side of ``threshold`` if the estimate and
    the spread stayed as observed: for a mean the smallest n with t_{n−1} sd / √n below
    |estimate − threshold|; for a rate the smallest n whose exact interval at the same rate
    excludes the threshold; for a spread the smallest n whose χ² interval on n − 1 degrees of
    freedom does. None when it is already decided or cannot be (an exact value); ``cap`` when
    it needs more (an estimate on the threshold itself never decides)."""
    if side_of(interval, threshold) != "straddles" or interval.kind == "exact":
        return None
    if interval.estimate == threshold:
        return cap
    quantile, tail = 0.5 + interval.level / 2, (1 - interval.level) / 2

    def decided(n: int) -> bool:
        if interval.kind == "rate":
            bounds = rate_interval(round(interval.estimate * n), n, interval.level)
            return side_of(bounds, threshold) != "straddles"
        if interval.kind == "spread":
            low = interval.estimate * math.sqrt((n - 1) / float(scipy.stats.chi2.ppf(1 - tail, n - 1)))
            high = interval.estimate * math.sqrt((n - 1) / float(scipy.stats.chi2.ppf(tail, n - 1)))
            return low > threshold or high < threshold
        return float(scipy.stats.t.ppf(quantile, n - 1)) * interval.sd / math.sqrt(n) < abs(interval.estimate - threshold)

    # doubling to a bracket, then bisection: each test is monotone in n at a fixed estimate
    low, high = max(interval.n, 2), max(interval.n, 2)
    while not decided(high):
        if high >= cap:
            return cap
        low, high = high, min(2 * high, cap)
    while low < high:
        middle = (low + high) // 2
        if decided(middle):
            high = middle
        else:
            low = middle + 1
    return high


def welch_interval(a, b, level: float = 0.95) -> Interval:
    """mean(a) − mean(b) of two independent samples with Welch's t interval (the two
    strategies of Fig. 5 draw their trials independently, so nothing pairs them)."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    if min(len(a), len(b)) < 2 or not all(math.isfinite(v) for v in a + b):
        raise ValueError(f"Welch's interval needs at least two finite values per sample, got {a!r} and {b!r}")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else len(a) + len(b) - 2
    half = float(scipy.stats.t.ppf(0.5 + _check_level(level) / 2, df)) * se
    gap, n = statistics.fmean(a) - statistics.fmean(b), min(len(a), len(b))
    return Interval(gap, gap - half, gap + half, n, se * math.sqrt(n), level)


def spread_interval(groups, level: float = 0.95) -> Interval:
    """The pooled standard deviation within groups (each group: one input's values over seeds),
    with its χ² interval on Σ(n_i − 1) degrees of freedom: how far one input's runs spread."""
    groups = [[float(v) for v in g] for g in groups]
    groups = [g for g in groups if len(g) >= 2]
    df = sum(len(g) - 1 for g in groups)
    if df < 1 or not all(math.isfinite(v) for g in groups for v in g):
        raise ValueError("a spread needs at least one group of two or more finite values")
    sd = math.sqrt(sum((len(g) - 1) * statistics.variance(g) for g in groups) / df)
    tail = (1 - _check_level(level)) / 2
    low = sd * math.sqrt(df / float(scipy.stats.chi2.ppf(1 - tail, df)))
    high = sd * math.sqrt(df / float(scipy.stats.chi2.ppf(tail, df)))
    return Interval(sd, low, high, df + 1, sd, level, "spread")
