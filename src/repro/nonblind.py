"""Differentiable non-blind deconvolution in closed form (Wiener, Tikhonov).

Kernel-Diff needs a non-blind solver x̂ = F(y, k) (eq. 14) that is differentiable in k, to guide
the kernel diffusion by the reblurring loss ‖y − k ⊛ F(y, k)‖² (Algorithm 1). The paper uses the
pretrained DWDN network (a learned Wiener deconvolution in feature space, FACTS.md); its weights
are not available offline, so the book uses the classical solvers below as F. They also serve as
the non-blind baselines x_k of the error ratio (FACTS.md, "Common forward model").

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
"""

from __future__ import annotations

import torch

from ._checks import check_choice, check_positive
from .ops import OPS, check_image_kernel, pad, psf2otf

MODES = ("circular", "symmetric")


def _squared_magnitude(z: torch.Tensor) -> torch.Tensor:
    # |z|² without abs(), whose gradient is undefined at 0
    return z.real.square() + z.imag.square()


def gradient_energy(shape, dtype=torch.float64, device=None) -> torch.Tensor:
    """|Dₕ|² + |Dᵥ|² on the ``rfft2`` grid of ``shape`` (H, W), Dₕ, Dᵥ the [1, −1] differences.

    Equals 4 sin²(πu/H) + 4 sin²(πv/W); shape (H, W//2 + 1).
    """
    diff = torch.tensor([[1.0, -1.0]], dtype=dtype, device=device)
    return _squared_magnitude(psf2otf(diff, shape, onesided=True)) + _squared_magnitude(
        psf2otf(diff.T, shape, onesided=True)
    )


def _deconvolve(y: torch.Tensor, k4: torch.Tensor, mode: str, op: str, prior) -> torch.Tensor:
    """X = K̄ Y / (|K|² + prior(grid)) on the grid that ``mode`` extends y to; cropped to y."""
    H, W = y.shape[-2:]
    extended = y if mode == "circular" else pad(y, (0, H, 0, W), "symmetric")
    grid = tuple(extended.shape[-2:])
    kh, kw = k4.shape[-2:]
    if kh > grid[0] or kw > grid[1]:
        raise ValueError(f"k of size {kh}x{kw} is larger than the {grid[0]}x{grid[1]} grid of mode {mode!r}")
    otf = psf2otf(k4, grid, onesided=True)
    if op == "corr":
        otf = otf.conj()
    spectrum = otf.conj() * torch.fft.rfft2(extended) / (_squared_magnitude(otf) + prior(grid))
    return torch.fft.irfft2(spectrum, s=grid)[..., :H, :W]


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
