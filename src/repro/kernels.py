"""Blur kernel generators and kernel utilities.

Conventions (shared with the whole package):

- A kernel is a tensor ``(kh, kw)`` or a batch ``(..., kh, kw)``; its **origin** (the pixel that
  stays in place under convolution) is the array index ``(kh // 2, kw // 2)``, also for even
  sizes.
- Coordinates: ``x`` is the column offset from the origin (rightwards), ``y`` the row offset
  (downwards, as rows are stored). Angles are measured from the +x axis towards +y, so on a
  displayed image (row 0 at the top) a positive angle turns *clockwise*.
- Generators return CPU tensors (``float32`` by default, ``dtype`` selects ``float64``) that are
  non-negative and sum to 1. Random generators take ``seed`` (an ``int`` >= 0 or a
  ``numpy.random.Generator``, which is advanced) and draw every random number with numpy, so a
  given seed gives bit-identical kernels whatever torch's RNG state or device.
- Utilities (``normalize``, ``center_of_mass``, ``recenter``, ``pad_to``, ``crop_to``, ``flip``)
  accept kernels on any device, in float32/float64, and are differentiable where that makes sense.

Generators:

- :func:`gaussian`, :func:`anisotropic_gaussian`: point-sampled Gaussians.
- :func:`random_kernel_gallery`: the Random Kernel Gallery (RKG) of NSD-DIL / D3, as in
  FACTS.md ("NSD-DIL / D3"); :func:`mild_blur_kernel` draws held-out test kernels from the same
  family with the variance bins of the "mild blur" benchmark.
- :func:`motion_kernel_borodenko`: Borodenko's ``motionblur`` generator used to train Kernel-Diff
  (FACTS.md, "Kernel-Diff"); re-implemented from its description.
- :func:`motion_kernel_boracchi_foi`: random camera-shake trajectories of Boracchi & Foi, "Modeling
  the performance of image restoration from motion blur", IEEE TIP 21(8), 2012.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.draw import line as draw_line
from skimage.transform import downscale_local_mean

from ._checks import FLOAT_DTYPES, check_int, check_positive, check_tensor, is_int

#: Variance bins of the D3 "mild blur" test set (FACTS.md, NSD-DIL / D3, *unverified* protocol):
#: each bin bounds the covariance eigenvalues (px^2) of the test kernels.
MILD_BLUR_VARIANCE_BINS = ((0.175, 3.0), (3.0, 6.0), (6.0, 9.0))

# Borodenko's numerical-stability constant ("eps = 0.1" in ``motionblur``): it keeps steps and
# angle ranges non-degenerate at intensity 1.
_BORODENKO_EPS = 0.1


# ---------------------------------------------------------------------------------------------
# argument checks shared by the generators
# ---------------------------------------------------------------------------------------------


def _shape(size, name: str = "size") -> tuple[int, int]:
    """``size`` as ``(h, w)``: an int (square) or a pair of ints, each >= 1."""
    if is_int(size):
        dims = (int(size), int(size))
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(is_int(s) for s in size):
        dims = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"{name} must be an int or a pair of ints (h, w), got {size!r}")
    if min(dims) < 1:
        raise ValueError(f"{name} must be >= 1 in each dimension, got {size!r}")
    return dims


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if is_int(seed) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise ValueError(f"seed must be an int >= 0 or a numpy.random.Generator, got {seed!r}")


def _check_dtype(dtype) -> torch.dtype:
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def _check_fraction(value, name: str, allow_zero: bool = True) -> float:
    """A number in [0, 1] (or (0, 1] when ``allow_zero`` is False)."""
    v = check_positive(value, name, allow_zero=allow_zero)
    if v > 1:
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return v


def _check_range(value, name: str) -> tuple[float, float]:
    """A pair ``(lo, hi)`` with 0 < lo <= hi, both finite."""
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}")
    lo = check_positive(value[0], f"{name}[0]")
    hi = check_positive(value[1], f"{name}[1]")
    if hi < lo:
        raise ValueError(f"{name} must satisfy low <= high, got {value!r}")
    return lo, hi


def _check_finite(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def _to_kernel(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """float64 numpy kernel(s) -> CPU tensor of ``dtype``, normalised in float64 before the cast."""
    return normalize(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))).to(dtype)


# ---------------------------------------------------------------------------------------------
# utilities
# ---------------------------------------------------------------------------------------------


def _check_kernel(k, name: str = "k") -> torch.Tensor:
    check_tensor(k, name)
    if k.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (..., kh, kw), got shape {tuple(k.shape)}")
    return k


def _kernel_sums(k: torch.Tensor, name: str) -> torch.Tensor:
    """Per-kernel sums ``(..., 1, 1)``; raises if any is <= 0 or not finite."""
    sums = k.sum(dim=(-2, -1), keepdim=True)
    if not bool((torch.isfinite(sums) & (sums > 0)).all()):
        raise ValueError(
            f"{name}: kernel not normalisable, its sum must be finite and > 0 "
            f"(got sums in [{sums.min().item()}, {sums.max().item()}])"
        )
    return sums


def normalize(k: torch.Tensor) -> torch.Tensor:
    """Divide each kernel of ``k`` ``(..., kh, kw)`` by its sum, so that it sums to 1.

    Raises ``ValueError`` ("kernel not normalisable") if a sum is <= 0 or not finite.
    Differentiable.
    """
    _check_kernel(k)
    return k / _kernel_sums(k, "k")


def center_of_mass(k: torch.Tensor) -> torch.Tensor:
    """Centre of mass of each kernel as array indices ``(..., 2)`` = ``(row, col)``.

    The origin of a ``(kh, kw)`` kernel is at ``(kh // 2, kw // 2)``; a centred kernel has its
    centre of mass there. Same definition as ``scipy.ndimage.center_of_mass``. The kernel sum
    must be > 0 (signed entries are allowed). Differentiable.
    """
    _check_kernel(k)
    sums = _kernel_sums(k, "k")[..., 0, 0]
    kh, kw = k.shape[-2:]
    rows = torch.arange(kh, dtype=k.dtype, device=k.device)
    cols = torch.arange(kw, dtype=k.dtype, device=k.device)
    com_row = (k.sum(dim=-1) * rows).sum(dim=-1) / sums
    com_col = (k.sum(dim=-2) * cols).sum(dim=-1) / sums
    return torch.stack((com_row, com_col), dim=-1)


def _roll_axis(k: torch.Tensor, shift: torch.Tensor, axis: int) -> torch.Tensor:
    """Circularly move the content of each kernel by ``shift`` (integer tensor ``k.shape[:-2]``)
    along ``axis`` (-2 rows, -1 columns): ``out[i] = k[(i - shift) mod n]``."""
    n = k.shape[axis]
    index = torch.remainder(torch.arange(n, device=k.device) - shift[..., None], n)
    index = index[..., :, None] if axis == -2 else index[..., None, :]
    return torch.gather(k, axis, index.expand(k.shape))


def recenter(k: torch.Tensor, subpixel: bool = False) -> torch.Tensor:
    """Shift each kernel so that its centre of mass lands on the origin ``(kh // 2, kw // 2)``.

    The shift is **circular**: mass pushed past one border re-enters at the opposite one, which
    keeps the sum (and non-negativity) exactly; it is exact, i.e. nothing wraps, whenever the
    kernel's support stays clear of the border by the shift distance (the case for the kernels
    generated here).

    - ``subpixel=False`` (default): integer shift by the rounded offset; the centre of mass ends
      within 0.5 px of the origin in each axis and the values are only permuted.
    - ``subpixel=True``: the fractional remainder is applied by linear interpolation between the
      two neighbouring integer shifts (a non-negative 2-tap filter whose mean is the remainder),
      so the centre of mass lands exactly on the origin, at the price of a slight blur.

    The shift itself is computed without gradient; the output is differentiable in ``k``.
    """
    _check_kernel(k)
    if not isinstance(subpixel, bool):
        raise ValueError(f"subpixel must be a bool, got {subpixel!r}")
    kh, kw = k.shape[-2:]
    with torch.no_grad():
        origin = torch.tensor([kh // 2, kw // 2], dtype=k.dtype, device=k.device)
        shift = origin - center_of_mass(k)
    if not subpixel:
        steps = torch.round(shift).long()
        return _roll_axis(_roll_axis(k, steps[..., 0], -2), steps[..., 1], -1)
    base = torch.floor(shift)
    frac = (shift - base)[..., None, None, :]  # broadcast over (kh, kw)
    base = base.long()
    out = k
    for axis, j in ((-2, 0), (-1, 1)):
        lower = _roll_axis(out, base[..., j], axis)
        upper = _roll_axis(out, base[..., j] + 1, axis)
        out = (1 - frac[..., j]) * lower + frac[..., j] * upper
    return out


def pad_to(k: torch.Tensor, size) -> torch.Tensor:
    """Zero-pad kernels ``(..., kh, kw)`` to ``size`` (int or ``(H, W)``, at least ``(kh, kw)``),
    keeping the origin: index ``(kh // 2, kw // 2)`` moves to ``(H // 2, W // 2)``."""
    _check_kernel(k)
    H, W = _shape(size)
    kh, kw = k.shape[-2:]
    if H < kh or W < kw:
        raise ValueError(f"size {(H, W)} must be at least the kernel size {(kh, kw)} to pad")
    top, left = H // 2 - kh // 2, W // 2 - kw // 2
    return F.pad(k, (left, W - kw - left, top, H - kh - top))


def crop_to(k: torch.Tensor, size) -> torch.Tensor:
    """Crop kernels ``(..., kh, kw)`` to ``size`` (int or ``(H, W)``, at most ``(kh, kw)``),
    keeping the origin; the inverse of :func:`pad_to`. Mass outside the window is dropped (no
    renormalisation: call :func:`normalize` if needed)."""
    _check_kernel(k)
    H, W = _shape(size)
    kh, kw = k.shape[-2:]
    if H > kh or W > kw:
        raise ValueError(f"size {(H, W)} must be at most the kernel size {(kh, kw)} to crop")
    top, left = kh // 2 - H // 2, kw // 2 - W // 2
    return k[..., top : top + H, left : left + W]


def flip(k: torch.Tensor) -> torch.Tensor:
    """Point reflection about the origin: ``out[o + d] = k[o - d]`` for every offset ``d``.

    Convolving with ``flip(k)`` is correlating with ``k`` (and vice versa): the adjoint of a
    convolution. For odd sizes this is ``torch.flip`` over the last two axes and keeps the shape.
    An even dimension has one more offset on the negative side than on the positive one, so its
    reflection needs one more entry: even dimensions are first zero-padded by one at the end
    (:func:`pad_to`), and the result has odd size ``kh + 1`` (resp. ``kw + 1``) with the same
    origin index ``kh // 2``.
    """
    _check_kernel(k)
    kh, kw = k.shape[-2:]
    if kh % 2 == 0 or kw % 2 == 0:
        k = pad_to(k, (kh + 1 - kh % 2, kw + 1 - kw % 2))
    return torch.flip(k, dims=(-2, -1))


# ---------------------------------------------------------------------------------------------
# Gaussian kernels
# ---------------------------------------------------------------------------------------------


def _gaussian_densities(shape, var1, var2, theta) -> np.ndarray:
    """Unnormalised anisotropic Gaussians ``(n, h, w)`` (float64) centred on the origin.

    ``var1``, ``var2``: covariance eigenvalues (px^2), ``theta``: angle of the eigenvector of
    ``var1`` from +x towards +y; each an array of length n.
    """
    h, w = shape
    y = (np.arange(h) - h // 2).astype(np.float64)[None, :, None]
    x = (np.arange(w) - w // 2).astype(np.float64)[None, None, :]
    var1, var2, theta = (np.asarray(a, dtype=np.float64)[:, None, None] for a in (var1, var2, theta))
    cos, sin = np.cos(theta), np.sin(theta)
    along = x * cos + y * sin  # coordinate along the principal axis
    across = -x * sin + y * cos  # coordinate along the second axis
    return np.exp(-0.5 * (along**2 / var1 + across**2 / var2))


def anisotropic_gaussian(size, sigma1, sigma2, theta, dtype=torch.float32) -> torch.Tensor:
    """Anisotropic Gaussian kernel, point-sampled on the pixel grid and normalised to sum 1.

    The covariance is ``R(theta) diag(sigma1^2, sigma2^2) R(theta)^T``: ``sigma1`` is the standard
    deviation (px) along the principal axis ``(cos theta, sin theta)`` in ``(x, y)`` = (column,
    row) coordinates, ``sigma2`` across it. ``theta`` is in radians from the +x axis (along a row,
    rightwards) towards +y (down the rows): ``theta = 0`` stretches the kernel along the rows
    (horizontally), ``theta = pi/2`` along the columns (for a square kernel, the transpose of
    ``theta = 0``); ``theta`` and ``theta + pi`` give the same kernel. In terms of covariance
    eigenvalues (as the RKG is parameterised, FACTS.md), ``sigma_i = sqrt(lambda_i)``.

    ``size``: int or ``(h, w)``; origin ``(h // 2, w // 2)``.
    """
    shape = _shape(size)
    s1 = check_positive(sigma1, "sigma1")
    s2 = check_positive(sigma2, "sigma2")
    angle = _check_finite(theta, "theta")
    _check_dtype(dtype)
    return _to_kernel(_gaussian_densities(shape, [s1**2], [s2**2], [angle])[0], dtype)


def gaussian(size, sigma, dtype=torch.float32) -> torch.Tensor:
    """Isotropic Gaussian kernel ``exp(-(x^2 + y^2) / (2 sigma^2))`` point-sampled on the grid
    with the origin at ``(h // 2, w // 2)``, normalised to sum 1. ``size``: int or ``(h, w)``."""
    check_positive(sigma, "sigma")
    return anisotropic_gaussian(size, sigma, sigma, 0.0, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Random Kernel Gallery (NSD-DIL / D3)
# ---------------------------------------------------------------------------------------------


def random_kernel_gallery(
    n: int = 2400,
    size=11,
    seed=0,
    eigenvalue_range=(0.35, 6.0),
    noise: float = 0.25,
    return_params: bool = False,
    dtype=torch.float32,
):
    """The Random Kernel Gallery (RKG) of NSD-DIL / D3: ``n`` noisy anisotropic Gaussians.

    As described in FACTS.md ("NSD-DIL / D3", read from the first author's unofficial code):
    for each kernel, covariance eigenvalues ``lambda1, lambda2 ~ U[eigenvalue_range]``
    independently (px^2; the default ``[0.35, 6]`` is ``sigma = sqrt(lambda)`` of about
    0.6-2.45 px), principal-axis angle ``theta ~ U[0, pi)`` (convention of
    :func:`anisotropic_gaussian`), per-pixel multiplicative noise ``x (1 + U[-noise, noise])``,
    then recentred by its centre of mass (:func:`recenter`, integer shift, so within 0.5 px of
    the origin) and normalised to sum 1.

    Draw order (fixed, for reproducibility): lambda1 (n), lambda2 (n), theta (n), noise
    (n, h, w), all from one ``numpy.random.Generator``.

    Returns the kernels ``(n, h, w)``; with ``return_params=True``, the pair ``(kernels,
    params)`` where ``params`` holds float64 numpy arrays ``"lambda1"``, ``"lambda2"``,
    ``"theta"`` of length n (e.g. to make a held-out split or variance bins).
    """
    n = check_int(n, "n")
    shape = _shape(size)
    lo, hi = _check_range(eigenvalue_range, "eigenvalue_range")
    noise = check_positive(noise, "noise", allow_zero=True)
    if noise >= 1:
        raise ValueError(f"noise must be in [0, 1) so that kernels stay positive, got {noise!r}")
    if not isinstance(return_params, bool):
        raise ValueError(f"return_params must be a bool, got {return_params!r}")
    _check_dtype(dtype)
    rng = _rng(seed)
    lambda1 = rng.uniform(lo, hi, n)
    lambda2 = rng.uniform(lo, hi, n)
    theta = rng.uniform(0.0, math.pi, n)
    factor = 1.0 + rng.uniform(-noise, noise, (n, *shape))
    kernels = normalize(torch.from_numpy(_gaussian_densities(shape, lambda1, lambda2, theta) * factor))
    kernels = recenter(kernels).to(dtype)  # recentring permutes values: the sums stay 1
    if return_params:
        return kernels, {"lambda1": lambda1, "lambda2": lambda2, "theta": theta}
    return kernels


def mild_blur_kernel(
    size, seed, variance_range=MILD_BLUR_VARIANCE_BINS[0], noise: float = 0.25, dtype=torch.float32
) -> torch.Tensor:
    """One test kernel ``(h, w)`` of the D3 "mild blur" benchmark, drawn from the RKG family.

    FACTS.md (*unverified* protocol): random kernels of sizes 11-21 in variance bins
    [0.175, 3), [3, 6), [6, 9) (:data:`MILD_BLUR_VARIANCE_BINS`). Here "variance" means a
    **covariance eigenvalue** (px^2): both eigenvalues are drawn ``~ U[variance_range]``
    independently, the angle ``~ U[0, pi)``, with the RKG's multiplicative noise, recentring and
    normalisation (:func:`random_kernel_gallery` with ``n = 1``). Use seeds distinct from the
    training gallery's: the parameters are continuous, so no test kernel repeats a gallery one.
    """
    variance_range = _check_range(variance_range, "variance_range")
    return random_kernel_gallery(1, size, seed, variance_range, noise, dtype=dtype)[0]


# ---------------------------------------------------------------------------------------------
# motion blur kernels
# ---------------------------------------------------------------------------------------------


def _borodenko_step_lengths(rng: np.random.Generator, path_length: float, scale: float) -> np.ndarray:
    """Step lengths ``scale * Beta(1, 30)`` restricted to ``< path_length``, drawn until their sum
    reaches ``path_length`` (the last step included).

    ``motionblur`` rejects steps not shorter than the path length; we sample the same truncated
    law directly by inverting the Beta(1, 30) CDF ``F(b) = 1 - (1 - b)^30``, which avoids an
    unbounded rejection loop when the path is very short.
    """
    cdf_max = 1.0 - (1.0 - min(path_length / scale, 1.0)) ** 30
    steps = np.empty(0)
    while steps.sum() < path_length or steps.size == 0:
        u = rng.uniform(size=64)
        steps = np.concatenate([steps, scale * (1.0 - (1.0 - u * cdf_max) ** (1.0 / 30.0))])
    return steps[: int(np.searchsorted(np.cumsum(steps), path_length)) + 1]


def _crop_around_center_of_mass(sheet: np.ndarray, shape, max_moves: int = 8) -> np.ndarray:
    """The ``shape`` window of ``sheet`` whose own centre of mass lies within 0.5 px of its
    origin ``(h // 2, w // 2)``: start around the sheet's centre of mass and move the window by
    the rounded offset until it stays put (content outside the window is clipped, so the
    window's centre of mass moves with it; ``max_moves`` bounds the rare oscillations)."""
    h, w = shape
    com = np.array(ndimage.center_of_mass(sheet))
    corner = np.rint(com - (h // 2, w // 2))
    for _ in range(max_moves):
        corner = np.clip(corner, 0, (sheet.shape[0] - h, sheet.shape[1] - w)).astype(np.int64)
        window = sheet[corner[0] : corner[0] + h, corner[1] : corner[1] + w]
        move = np.rint(np.array(ndimage.center_of_mass(window)) - (h // 2, w // 2))
        if not move.any():
            break
        corner = corner + move
    return window


def motion_kernel_borodenko(size, intensity: float, seed, dtype=torch.float32) -> torch.Tensor:
    """Random motion-blur kernel following Borodenko's ``motionblur`` (the generator behind the
    Kernel-Diff training set; FACTS.md, "Kernel-Diff").

    With ``I = intensity`` in [0, 1] and a canvas of twice ``size``, ``(2h, 2w)``, of diagonal D:

    1. path length ``L = 0.75 D (U[0, 1] + U[0, I^2])``;
    2. step lengths ``Beta(1, 30) (1 - I + 0.1) D`` (each shorter than L) until they add up to L;
    3. maximum angle ``A ~ U[0, I pi]``, jitter ``p ~ Beta(2, 20)``; first direction
       ``~ U[-A, A]``, each next one of magnitude ``~ Triangular(0, I A, A + 0.1)`` with the sign
       of the previous direction, flipped with probability p (directions are absolute angles of
       the steps, not turns);
    4. vertices = cumulative sum of the complex steps, minus their mean, rotated by
       ``U[0, pi)``, placed at the canvas centre;
    5. the polyline is drawn 1 px wide (``skimage.draw.line``; the original's width
       ``int(D / 150)`` is 1 px for kernels up to 105 px), blurred by a Gaussian of standard
       deviation ``int(0.01 D)`` px (none below 36 px, as in the original);
    6. downsampled by 2x2 block averaging (the original: Lanczos + 8-bit quantisation, which we
       skip to keep faint tails and non-negativity);
    7. recentred by its centre of mass (integer shift), as Kernel-Diff does before training, and
       normalised. So that nothing wraps around, the path is drawn on a sheet twice the canvas
       and the ``size`` window is cut out of it around the centre of mass, within 0.5 px of the
       origin (mass outside the window is clipped, as the original clips at its canvas).

    Random draws come from one ``numpy.random.Generator`` in the order above.
    """
    h, w = _shape(size)
    intensity = _check_fraction(intensity, "intensity")
    _check_dtype(dtype)
    rng = _rng(seed)
    canvas_h, canvas_w = 2 * h, 2 * w
    diagonal = math.hypot(canvas_h, canvas_w)

    path_length = 0.75 * diagonal * (rng.uniform() + rng.uniform(0.0, intensity**2))
    steps = _borodenko_step_lengths(rng, path_length, (1.0 - intensity + _BORODENKO_EPS) * diagonal)

    max_angle = rng.uniform(0.0, intensity * math.pi)
    jitter = rng.beta(2, 20)
    first = rng.uniform(-max_angle, max_angle)
    magnitudes = rng.triangular(0.0, intensity * max_angle, max_angle + _BORODENKO_EPS, steps.size - 1)
    flips = np.where(rng.uniform(size=steps.size - 1) < jitter, -1.0, 1.0)
    angles = np.concatenate([[first], np.sign(first) * np.cumprod(flips) * magnitudes])

    path = np.cumsum(steps * np.exp(1j * angles))
    path = (path - path.mean()) * np.exp(1j * rng.uniform(0.0, math.pi))
    # draw on a (4h, 4w) sheet: the (2h, 2w) canvas with a margin on every side
    sheet_h, sheet_w = canvas_h + 2 * h, canvas_w + 2 * w
    path += (sheet_w + 1j * sheet_h) / 2
    cols = np.rint(path.real).astype(np.int64)
    rows = np.rint(path.imag).astype(np.int64)
    if path.size == 1:  # a single vertex is drawn as a point
        rows, cols = np.repeat(rows, 2), np.repeat(cols, 2)

    sheet = np.zeros((sheet_h, sheet_w))
    for r0, c0, r1, c1 in zip(rows[:-1], cols[:-1], rows[1:], cols[1:]):
        rr, cc = draw_line(r0, c0, r1, c1)
        inside = (rr >= 0) & (rr < sheet_h) & (cc >= 0) & (cc < sheet_w)
        sheet[rr[inside], cc[inside]] = 1.0
    blur_sigma = int(0.01 * diagonal)
    if blur_sigma > 0:
        sheet = ndimage.gaussian_filter(sheet, blur_sigma, mode="constant")

    sheet = downscale_local_mean(sheet, (2, 2))  # (2h, 2w) at the output resolution
    return _to_kernel(_crop_around_center_of_mass(sheet, (h, w)), dtype)


def _boracchi_foi_trajectory(
    rng: np.random.Generator, num_samples: int, max_length: float, anxiety: float
) -> np.ndarray:
    """Complex positions ``(num_samples,)`` of the Boracchi & Foi (2012) random trajectory.

    A particle moves with constant speed ``max_length / (num_samples - 1)`` per sample; at each
    sample its velocity receives ``anxiety * (g * N(0, 1)_C - c * x_t) * speed`` (Gaussian shake of
    strength ``g ~ 10 U`` and an inertial pull of strength ``c ~ 0.7 U`` back towards the starting
    point), plus, with probability ``0.2 U * anxiety`` per sample, an impulsive jerk ``2 v
    exp(i (pi + U[-0.5, 0.5]))`` that roughly reverses the motion; then the speed is renormalised.
    The initial direction is uniform; the initial velocity is ``anxiety`` long when
    ``anxiety > 0``. Draw order: c, g, jerk frequency, initial angle, then per sample the jerk
    test, the jerk angle and the complex Gaussian.
    """
    centripetal = 0.7 * rng.uniform()
    shake = 10.0 * rng.uniform()
    jerk_frequency = 0.2 * rng.uniform()
    direction = np.exp(1j * 2.0 * math.pi * rng.uniform())
    speed = max_length / (num_samples - 1)
    jerks = rng.uniform(size=num_samples - 1) < jerk_frequency * anxiety
    jerk_angles = math.pi + rng.uniform(size=num_samples - 1) - 0.5
    noise = rng.standard_normal((num_samples - 1, 2)) @ np.array([1.0, 1j])

    velocity = direction * (anxiety if anxiety > 0 else speed)
    positions = np.zeros(num_samples, dtype=np.complex128)
    for t in range(num_samples - 1):
        jerk = 2.0 * velocity * np.exp(1j * jerk_angles[t]) if jerks[t] else 0.0
        velocity = velocity + jerk + anxiety * (shake * noise[t] - centripetal * positions[t]) * speed
        magnitude = abs(velocity)
        velocity = velocity / magnitude * speed if magnitude > 0 else direction * speed
        positions[t + 1] = positions[t] + velocity
    return positions


def motion_kernel_boracchi_foi(
    size,
    seed,
    exposure: float = 1.0,
    anxiety: float | None = None,
    max_length: float | None = None,
    num_samples: int = 2000,
    dtype=torch.float32,
) -> torch.Tensor:
    """Random camera-shake kernel of Boracchi & Foi (IEEE TIP 2012), FACTS.md "Kernel-Diff".

    A random trajectory of ``num_samples`` positions (random walk with inertia, Gaussian shake
    and occasional impulsive reversals, see :func:`_boracchi_foi_trajectory`) is observed during
    the first ``exposure`` fraction of its samples (sample t weighs
    ``clip(exposure * num_samples - t, 0, 1)``), translated so that its weighted mean sits on the
    origin ``(h // 2, w // 2)``, and splatted bilinearly onto the ``(h, w)`` grid (each sample's
    weight is shared by its four neighbouring pixels, which preserves mass and centre of mass).
    The kernel is normalised; its centre of mass is exactly the origin unless part of the
    trajectory leaves the grid: such samples are clamped onto the border (the reference clamps
    too), which moves the centre of mass slightly.

    Parameters:
        size: int or ``(h, w)``.
        exposure: fraction of the trajectory recorded, in (0, 1] (the paper's exposure time T).
        anxiety: shake amount >= 0; ``None`` draws ``0.1 U[0, 1]`` as the reference code does
            (drawn first, before the trajectory). ``0`` gives a straight line.
        max_length: trajectory length in px (sum of the sample-to-sample distances); ``None``
            uses the reference's 60/64 of the smaller kernel side.
        num_samples: number of trajectory samples (2,000 in the reference code), >= 2.
    """
    h, w = _shape(size)
    exposure = _check_fraction(exposure, "exposure", allow_zero=False)
    num_samples = check_int(num_samples, "num_samples")
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples!r}")
    if anxiety is not None:
        anxiety = check_positive(anxiety, "anxiety", allow_zero=True)
    max_length = 60.0 / 64.0 * min(h, w) if max_length is None else check_positive(max_length, "max_length")
    _check_dtype(dtype)
    rng = _rng(seed)
    if anxiety is None:
        anxiety = 0.1 * rng.uniform()
    positions = _boracchi_foi_trajectory(rng, num_samples, max_length, anxiety)

    weights = np.clip(exposure * num_samples - np.arange(num_samples), 0.0, 1.0)
    positions = positions[weights > 0]
    weights = weights[weights > 0]
    centre = (weights * positions).sum() / weights.sum()
    cols = np.clip(positions.real - centre.real + w // 2, 0.0, w - 1.0)
    rows = np.clip(positions.imag - centre.imag + h // 2, 0.0, h - 1.0)

    # bilinear splatting on a grid with one spare row and column (they only get zero weights)
    r0, c0 = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    fr, fc = rows - r0, cols - c0
    grid = np.zeros((h + 1) * (w + 1))
    for dr, row_share in ((0, 1 - fr), (1, fr)):
        for dc, col_share in ((0, 1 - fc), (1, fc)):
            flat = (r0 + dr) * (w + 1) + (c0 + dc)
            grid += np.bincount(flat, weights * row_share * col_share, minlength=grid.size)
    return _to_kernel(grid.reshape(h + 1, w + 1)[:h, :w], dtype)
