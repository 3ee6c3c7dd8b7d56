"""The alternating MAP_{x,k} baseline of Kernel-Diff (Tables 1–2 and Fig. 5).

Kernel-Diff §3 argues that the classical scheme for blind deconvolution, alternating between

    x^{i+1} = argmin_x ‖y − x ⊛ k^i‖² + φ(x)          (eq. 3, the image step)
    k^{i+1} = argmin_k ‖y − x^{i+1} ⊛ k‖² + ψ(k)      (eq. 4, the kernel step)

tends to get trapped in false minima, and replaces it by a kernel-first strategy (MAP_k, eqs.
12–13): estimate k from y alone (the guided kernel diffusion of ``repro.kerneldiff``), then
x = F(y, k). The 1D toy of §3.1 (:mod:`repro.toy1d`) shows the two on three scalars
(``toy1d.alternating_descent`` / ``toy1d.alternating_exact`` against ``toy1d.kernel_first``);
:func:`alternating_map` is the two-dimensional counterpart with the *same* non-blind solver F as
Kernel-Diff, so that the comparison isolates the strategy:

- **image step** (eq. 3): ``x = F(y, k)`` with the learned solver (:class:`repro.nonblind.LearnedWiener`)
  or a classical one — F plays the role of argmin_x with its implicit prior φ;
- **kernel step** (eq. 4): ``kernel_steps`` projected-gradient steps on
  ``mean (y − k ⊛ x)² + l2 ‖k‖²`` with x fixed, step ``1/L`` (L the Lipschitz constant of the
  gradient, from a power iteration, so each step cannot increase this objective), each followed by
  the Euclidean projection onto the simplex {k ≥ 0, Σ k = 1} (:func:`project_simplex`). On the
  simplex ‖k‖₁ = 1 is constant, so an ℓ¹ prior would have no effect and ψ is the ℓ² term only.

It starts from a delta or a small Gaussian (optionally perturbed with ``seed``, for the spread of
Fig. 5 over trials), runs ``iterations`` rounds and records the reblurring residual
:func:`reblur_residual` ‖y − k ⊛ F(y, k)‖ after every round: Fig. 5's curve for the
alternating scheme (the kernel-first curve is the same quantity along the reverse diffusion).
The blur is Kernel-Diff's data model, :func:`repro.synth.blur_reflect`.
"""

from __future__ import annotations

from typing import Callable

import torch

from ._checks import check_positive, check_tensor
from .kernels import gaussian
from .synth import blur_reflect

INITS = ("delta", "gaussian")


def project_simplex(k: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each kernel of ``k`` (…, kh, kw) onto {k ≥ 0, Σ k = 1}.

    The sort-based algorithm of Duchi et al. (ICML 2008): ``max(k − τ, 0)`` with the threshold τ
    that makes the sum 1. Exact up to rounding; a kernel already on the simplex is unchanged.
    """
    check_tensor(k, "k")
    if k.ndim < 2:
        raise ValueError(f"k must have at least 2 dimensions (..., kh, kw), got shape {tuple(k.shape)}")
    flat = k.reshape(-1, k.shape[-2] * k.shape[-1])
    u = flat.sort(dim=1, descending=True).values
    css = u.cumsum(dim=1) - 1
    j = torch.arange(1, flat.shape[1] + 1, dtype=k.dtype, device=k.device)
    rho = (u - css / j > 0).sum(dim=1, keepdim=True)  # ≥ 1 always
    tau = css.gather(1, rho - 1) / rho.to(k.dtype)
    return (flat - tau).clamp_min(0).reshape(k.shape)


def reblur_residual(y: torch.Tensor, k: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """‖y − k ⊛ x‖ per image as a root mean square over (C, H, W) (B,): Fig. 5's residual.

    The blur is :func:`repro.synth.blur_reflect`; the RMS (= √MSE, the square root of
    Kernel-Diff's guidance loss) makes images of different sizes comparable.
    """
    return (y - blur_reflect(x, k)).square().flatten(1).mean(dim=1).sqrt()


def initial_kernel(batch: int, kernel_size: int, init: str = "gaussian", sigma: float = 1.0,
                   noise: float = 0.0, seed: int = 0, dtype=torch.float32, device=None) -> torch.Tensor:
    """Starting kernels (batch, 1, ks, ks) on the simplex: a delta at the origin or a Gaussian of
    standard deviation ``sigma`` px, plus ``noise · max(k0) · U[0, 1)`` per tap (seeded), projected."""
    if init not in INITS:
        raise ValueError(f"init must be one of {list(INITS)}, got {init!r}")
    if init == "delta":
        k0 = torch.zeros(kernel_size, kernel_size, dtype=torch.float64)
        k0[kernel_size // 2, kernel_size // 2] = 1.0
    else:
        k0 = gaussian(kernel_size, check_positive(sigma, "sigma"), dtype=torch.float64)
    noise = check_positive(noise, "noise", allow_zero=True)
    generator = torch.Generator().manual_seed(seed)
    jitter = torch.rand(batch, 1, kernel_size, kernel_size, generator=generator, dtype=torch.float64)
    k = project_simplex(k0 + noise * k0.max() * jitter)
    return k.to(dtype=dtype, device=device)


def _zero_sum(v: torch.Tensor) -> torch.Tensor:
    return v - v.mean(dim=(-2, -1), keepdim=True)


def _lipschitz(x: torch.Tensor, kernel_shape, l2: float, seed: int, iterations: int = 20) -> torch.Tensor:
    """Per-image Lipschitz constant (B, 1, 1, 1) of ∇_k [mean (y − k ⊛ x)² + l2 ‖k‖²] on the
    simplex: 2 λ/N + 2 l2 with λ the largest eigenvalue of XᵀX (X: k ↦ k ⊛ x) restricted to
    zero-sum kernels, the directions along which the iterates move (the simplex projection is
    blind to a constant added to every tap, so the dominant "DC" direction, along which the sum
    would change, does not limit the step). Power iteration on v ↦ P XᵀX P v (XᵀX v is the
    gradient of ½‖X v‖², P removes the mean), with a 5 % margin."""
    generator = torch.Generator().manual_seed(seed + 1)
    v = _zero_sum(torch.rand(kernel_shape, generator=generator, dtype=x.dtype).to(x.device))
    lam = torch.zeros(kernel_shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)
    for _ in range(iterations):
        v = (v / v.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)).requires_grad_()
        (g,) = torch.autograd.grad(0.5 * blur_reflect(x, v).square().sum(), v)
        g = _zero_sum(g.detach())
        lam = (g * v.detach()).flatten(1).sum(dim=1).reshape(-1, 1, 1, 1)
        v = g
    n = x[0].numel()
    return 1.05 * 2 * lam / n + 2 * l2


def alternating_map(
    y: torch.Tensor,
    kernel_size: int,
    solver: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    iterations: int,
    seed: int = 0,
    kernel_steps: int = 5,
    l2: float = 1e-4,
    init: str = "gaussian",
    init_sigma: float = 1.0,
    init_noise: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Alternating MAP_{x,k} (eqs. 3–4, module docstring) on a batch of blurred images.

    ``y`` (B, 3, H, W) blurred with :func:`repro.synth.blur_reflect`; ``kernel_size`` the side of
    the estimated square kernel; ``solver``
    the non-blind F(y, k) with k (B, 1, ks, ks) (e.g. a :class:`repro.nonblind.LearnedWiener`, or
    ``lambda y, k: nonblind.wiener(y, k[:, 0], 1e-2)``), called without gradient; ``iterations``
    rounds of (image step, ``kernel_steps`` projected-gradient kernel steps) with the ℓ² weight
    ``l2``; start :func:`initial_kernel` (``init``, ``init_sigma``, ``init_noise``, ``seed``).

    Returns ``(x, k, trace)``: x = F(y, k) (B, 3, H, W) for the final k (B, 1, ks, ks) on the
    simplex, and trace (B, iterations + 1) the :func:`reblur_residual` of (k, F(y, k)) at the start
    and after every round. Deterministic for a given seed (on the CPU).
    """
    check_tensor(y, "y", (4,))
    if not (isinstance(kernel_size, int) and not isinstance(kernel_size, bool) and kernel_size >= 1):
        raise ValueError(f"kernel_size must be a positive int, got {kernel_size!r}")
    if 2 * (kernel_size // 2) >= min(y.shape[-2:]):
        raise ValueError(f"kernel_size {kernel_size} is too large for {y.shape[-2]}x{y.shape[-1]} images "
                         f"(reflection padding needs kernel_size // 2 < side / 2)")
    if not callable(solver):
        raise ValueError(f"solver must be a callable F(y, k), got {type(solver).__name__}")
    for name, value in (("iterations", iterations), ("kernel_steps", kernel_steps), ("seed", seed)):
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    l2 = check_positive(l2, "l2", allow_zero=True)

    k = initial_kernel(y.shape[0], kernel_size, init, init_sigma, init_noise, seed, y.dtype, y.device)

    def image_step(k):
        with torch.no_grad():
            x = solver(y, k)
        if not isinstance(x, torch.Tensor) or x.shape != y.shape:
            raise ValueError(f"solver must return a tensor of the shape of y {tuple(y.shape)}, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        return x

    x = image_step(k)
    trace = [reblur_residual(y, k, x)]
    for _ in range(iterations):
        step = 1.0 / _lipschitz(x, tuple(k.shape), l2, seed)
        for _ in range(kernel_steps):
            k = k.detach().requires_grad_()
            loss = (y - blur_reflect(x, k)).square().flatten(1).mean(dim=1) + l2 * k.square().flatten(1).sum(dim=1)
            (grad,) = torch.autograd.grad(loss.sum(), k)
            k = project_simplex((k - step * grad).detach())
        x = image_step(k)
        trace.append(reblur_residual(y, k, x))
    return x, k.detach(), torch.stack(trace, dim=1)
