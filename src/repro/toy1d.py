"""The 1D toy problem of Kernel-Diff §3.1 and supplement A: why alternating minimisation gets trapped.

A pulse ``x_{a,w}`` (start ``a``, width ``w``) on ``N = 128`` samples is blurred by a sampled Gaussian
``k_σ`` and corrupted by white noise of variance ``β`` (eq. 10)::

    y = k_σ ⊛ x_{a,w} + n,    n ~ N(0, β I).

The unknowns are three scalars ``θ = (a, w, σ)`` with ``0 ≤ a ≤ 96``, ``0 ≤ w ≤ 32``, ``0 < σ ≤ 3``;
the truth is ``(64, 10, 1.5)`` (supplement A). Parameters are passed as tensors whose last
dimension holds ``(a, w, σ)``, so that thousands of candidates are evaluated in one batched call.

Conventions (choices the paper leaves open, stated here once):

- the pulse is anti-aliased: sample ``t`` holds the length of ``[t, t+1) ∩ [a, a+w]``, so ``x`` is
  continuous and piecewise linear in ``a`` and ``w`` and gradient descent is meaningful;
- the kernel is the Gaussian sampled at integer offsets ``-9..9`` and normalised to sum 1; the blur
  is a true convolution with zero boundary ('same' size);
- ``β`` is the noise *variance* throughout. Eq. (10) writes ``N(0, βI)`` and eq. (11) ``1/(2β)``;
  eq. (16) writes ``1/(2β²)``, which we read as a typo and also use ``1/(2β)``;
- every estimate is projected onto the box above after each step, with ``σ ≥ SIGMA_MIN``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import check_positive

N = 128
KERNEL_RADIUS = 9
SIGMA_MIN = 0.05
TRUTH = (64.0, 10.0, 1.5)
LOWER = (0.0, 0.0, SIGMA_MIN)
UPPER = (96.0, 32.0, 3.0)
SCALES = (64.0, 32.0, 1.0)
"""Per-parameter scales of the random plane directions, eq. (21)."""

_DTYPE = torch.float64


def _as_float64(value, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor) and (value.is_complex() or value.dtype == torch.bool):
        raise ValueError(f"{name} must be real numbers, got a {value.dtype} tensor")
    try:
        return torch.as_tensor(value, dtype=_DTYPE)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be numbers (a tensor, array or nested list), got {type(value).__name__}") from None


def _params(theta, name: str = "theta") -> torch.Tensor:
    theta = _as_float64(theta, name)
    if theta.ndim == 0 or theta.shape[-1] != 3:
        raise ValueError(f"{name} must have a last dimension of size 3 holding (a, w, sigma), got shape {tuple(theta.shape)}")
    if not torch.isfinite(theta).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return theta


def _signal(y) -> torch.Tensor:
    y = _as_float64(y, "y")
    if y.ndim != 1 or y.shape[0] != N:
        raise ValueError(f"y must be a 1D signal of length {N}, got shape {tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise ValueError("y contains NaN or Inf")
    return y


def project(theta: torch.Tensor) -> torch.Tensor:
    """Clamp ``(a, w, σ)`` onto the feasible box of supplement A."""
    lo = torch.tensor(LOWER, dtype=theta.dtype, device=theta.device)
    hi = torch.tensor(UPPER, dtype=theta.dtype, device=theta.device)
    return torch.maximum(torch.minimum(theta, hi), lo)


def pulse(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Anti-aliased pulse ``x_{a,w}``: shape ``a.shape + (N,)``, differentiable in ``a`` and ``w``."""
    t = torch.arange(N, dtype=a.dtype, device=a.device)
    a, w = a[..., None], w[..., None]
    return (torch.minimum(t + 1, a + w) - torch.maximum(t, a)).clamp(0, 1)


def gaussian_kernel(sigma: torch.Tensor) -> torch.Tensor:
    """Sampled, normalised Gaussian ``k_σ`` on offsets ``-9..9``: shape ``sigma.shape + (19,)``."""
    offsets = torch.arange(-KERNEL_RADIUS, KERNEL_RADIUS + 1, dtype=sigma.dtype, device=sigma.device)
    g = torch.exp(-0.5 * (offsets / sigma[..., None]) ** 2)
    return g / g.sum(-1, keepdim=True)


def blur(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``k ⊛ x`` with zero boundary, 'same' size; ``x (..., N)`` and ``k (..., 19)`` broadcast."""
    windows = torch.nn.functional.pad(x, (KERNEL_RADIUS, KERNEL_RADIUS)).unfold(-1, 2 * KERNEL_RADIUS + 1, 1)
    return torch.einsum("...nl,...l->...n", windows, k.flip(-1))


def forward(theta) -> torch.Tensor:
    """The noiseless model ``k_σ ⊛ x_{a,w}`` for parameters ``theta (..., 3)``."""
    theta = _params(theta)
    return blur(pulse(theta[..., 0], theta[..., 1]), gaussian_kernel(theta[..., 2]))


def observe(theta=TRUTH, noise_std: float = 0.01, seed: int = 0) -> torch.Tensor:
    """A blurred, noisy observation ``y`` (eq. 10) with a seeded noise draw."""
    check_positive(noise_std, "noise_std", allow_zero=True)
    g = torch.Generator().manual_seed(int(seed))
    return forward(theta) + noise_std * torch.randn(N, generator=g, dtype=_DTYPE)


def data_term(y, theta) -> torch.Tensor:
    """``‖y − k_σ ⊛ x_{a,w}‖²`` for every candidate in ``theta (..., 3)``: the MAP loss of eq. (11) times 2β."""
    y = _signal(y)
    return ((y - forward(theta)) ** 2).sum(-1)


# --- the loss landscape on a random plane (supplement A, eqs. 21-22) -----------------------------


@dataclass
class Plane:
    """Loss on the plane ``θ* + α t₁ + β t₂`` through the truth."""

    alpha: torch.Tensor
    beta: torch.Tensor
    loss: torch.Tensor
    """``data_term`` on the grid, NaN where the plane leaves the feasible box."""
    t1: torch.Tensor
    t2: torch.Tensor


def random_plane(y, seed: int = 0, extent: float = 1.0, resolution: int = 101, center=TRUTH) -> Plane:
    """Evaluate the data term on a random 2D plane through ``center``.

    ``z₁, z₂ ~ N(0, I₃)`` are scaled to ``tᵢ = [64 zᵢ⁽¹⁾, 32 zᵢ⁽²⁾, zᵢ⁽³⁾]`` (eq. 21) and ``t₂`` is
    orthogonalised against ``t₁`` (eq. 22). Points outside the box are NaN (not clamped), so the plot
    shows exactly the feasible part of the plane.
    """
    check_positive(extent, "extent")
    if int(resolution) < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution!r}")
    g = torch.Generator().manual_seed(int(seed))
    scales = torch.tensor(SCALES, dtype=_DTYPE)
    t1 = scales * torch.randn(3, generator=g, dtype=_DTYPE)
    t2 = scales * torch.randn(3, generator=g, dtype=_DTYPE)
    t2 = t2 - (t2 @ t1) / (t1 @ t1) * t1
    alpha = torch.linspace(-extent, extent, int(resolution), dtype=_DTYPE)
    beta = alpha.clone()
    grid = _params(center) + alpha[:, None, None] * t1 + beta[None, :, None] * t2
    loss = data_term(y, grid)
    feasible = (grid == project(grid)).all(-1)
    return Plane(alpha, beta, torch.where(feasible, loss, torch.nan), t1, t2)


# --- the kernel posterior p(σ|y): brute force (eq. 12) vs non-blind solver (eq. 16) ------------


@dataclass
class GridSearch:
    """The data term of every grid pulse ``x_{a,w}`` under every grid kernel ``k_σ``.

    This table is the toy's exact non-blind solver (eq. 14: ``(a(σ), w(σ))`` is the best pulse in
    a row) and everything the kernel posterior needs; it is computed once per observation.
    """

    a: torch.Tensor
    w: torch.Tensor
    sigma: torch.Tensor
    terms: torch.Tensor
    """``terms[i, j] = ‖y − k_{σ_i} ⊛ x_{a_j, w_j}‖²``, shape ``(len(sigma), len(a))``."""

    @classmethod
    def build(cls, y, step: float = 0.5, sigmas=None) -> "GridSearch":
        """Tabulate ``a ∈ [0, 96]`` and ``w ∈ (0, 32]`` in steps of ``step`` and ``sigmas``
        (default 60 values in ``[SIGMA_MIN, 3]``)."""
        y = _signal(y)
        check_positive(step, "step")
        sigma = _sigma_grid(sigmas)
        a_values = torch.arange(LOWER[0], UPPER[0] + 1e-9, step, dtype=_DTYPE)
        w_values = torch.arange(step, UPPER[1] + 1e-9, step, dtype=_DTYPE)
        a, w = (v.reshape(-1) for v in torch.meshgrid(a_values, w_values, indexing="ij"))
        pulses = pulse(a, w)[:, None]
        kernels = gaussian_kernel(sigma).flip(-1)[:, None]
        rows = []
        for chunk in kernels.split(8):  # (8 kernels x all pulses x N) at a time bounds the memory
            blurred = torch.nn.functional.conv1d(pulses, chunk, padding=KERNEL_RADIUS)
            rows.append(((y[None, None] - blurred) ** 2).sum(-1).T)
        return cls(a, w, sigma, torch.cat(rows))

    def solve(self, sigma_index: int) -> int:
        """Index of the non-blind solution ``(a(σ), w(σ))`` for the grid kernel ``sigma_index``."""
        return int(self.terms[sigma_index].argmin())

    def params(self, sigma_index: int, pulse_index: int) -> tuple[float, float, float]:
        return float(self.a[pulse_index]), float(self.w[pulse_index]), float(self.sigma[sigma_index])

    def log_posterior_sigma(self, noise_std: float) -> dict[str, torch.Tensor]:
        """``log p(σ|y)`` (flat priors, up to a constant) on the grid kernels, two ways.

        - ``"marginal"``: eq. (12), ``log Σ_{a,w} exp(−‖y − x_{a,w} ⊛ k_σ‖² / 2β)`` over the grid;
        - ``"nonblind"``: eq. (16), ``−‖y − x_{a(σ),w(σ)} ⊛ k_σ‖² / 2β`` with ``(a(σ), w(σ))`` the
          non-blind solution (the Laplace approximation of eq. 15 with a constant Hessian term).

        Each curve is shifted so that its maximum is 0.
        """
        beta = check_positive(noise_std, "noise_std") ** 2
        log_lik = -self.terms / (2 * beta)
        marginal = torch.logsumexp(log_lik, 1)
        nonblind = log_lik.max(1).values
        return {"sigma": self.sigma, "marginal": marginal - marginal.max(), "nonblind": nonblind - nonblind.max()}

    def nearest_sigma(self, sigma: float) -> int:
        return int((self.sigma - float(sigma)).abs().argmin())


def _sigma_grid(sigmas) -> torch.Tensor:
    if sigmas is None:
        return torch.linspace(SIGMA_MIN, UPPER[2], 60, dtype=_DTYPE)
    sigmas = torch.as_tensor(sigmas, dtype=_DTYPE).reshape(-1)
    if sigmas.numel() == 0 or (sigmas <= 0).any() or not torch.isfinite(sigmas).all():
        raise ValueError("sigmas must be a non-empty list of finite positive values")
    return sigmas


# --- solvers from random starts ------------------------------------------------------------------


def random_starts(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` starting points drawn uniformly in the box: shape ``(n, 3)``."""
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    g = torch.Generator().manual_seed(int(seed))
    lo, hi = torch.tensor(LOWER, dtype=_DTYPE), torch.tensor(UPPER, dtype=_DTYPE)
    return lo + (hi - lo) * torch.rand(int(n), 3, generator=g, dtype=_DTYPE)


@dataclass
class Descent:
    """What :func:`joint_descent` and :func:`alternating_descent` return."""

    theta: torch.Tensor
    """The final estimates ``(n, 3)``."""
    loss: torch.Tensor
    """The data term before every step, ``(n_steps, n)``."""
    path: torch.Tensor
    """The parameters at the start and after every step, ``(n_steps + 1, n, 3)``."""


def _descend(y, starts, steps: int, lr: float, blocks) -> Descent:
    """Projected Adam on the data term from every start at once, updating one block of parameters
    at a time in the cyclic order ``blocks`` (each block for ``steps`` iterations per cycle).

    Each block has its own Adam optimiser, whose state persists from one cycle to the next: with
    one optimiser for all parameters, the momentum of a block would keep moving it while it is
    meant to be frozen. Parameters are optimised in units of the box widths, so one learning rate
    fits ``a``, ``w``, ``σ``.
    """
    y = _signal(y)
    lo, hi = torch.tensor(LOWER, dtype=_DTYPE), torch.tensor(UPPER, dtype=_DTYPE)
    u = (project(_params(starts, "starts")) - lo) / (hi - lo)
    columns = [u[:, i].clone().requires_grad_() for i in range(3)]
    optimisers = {block: torch.optim.Adam([columns[i] for i in block], lr=lr)
                  for block in dict.fromkeys(tuple(b) for b in blocks)}
    losses, path = [], [lo + (hi - lo) * u]
    for block in blocks:
        opt = optimisers[tuple(block)]
        for _ in range(steps):
            opt.zero_grad()
            loss = data_term(y, lo + (hi - lo) * torch.stack(columns, -1))
            loss.sum().backward()
            opt.step()
            with torch.no_grad():
                for i in block:
                    columns[i].clamp_(0, 1)
                path.append(lo + (hi - lo) * torch.stack(columns, -1))
            losses.append(loss.detach())
    return Descent(project(path[-1]), torch.stack(losses), torch.stack(path))


def joint_descent(y, starts, steps: int = 600, lr: float = 0.01) -> Descent:
    """Gradient descent on ``(a, w, σ)`` jointly: the MAP_{x,k} scheme of eq. (11)."""
    return _descend(y, starts, steps, lr, blocks=[(0, 1, 2)])


def alternating_descent(y, starts, rounds: int = 30, inner_steps: int = 20, lr: float = 0.01) -> Descent:
    """Block-coordinate descent: ``inner_steps`` on the image ``(a, w)``, then on the kernel ``σ``, repeated."""
    return _descend(y, starts, inner_steps, lr, blocks=[(0, 1), (2,)] * int(rounds))


def alternating_exact(table: GridSearch, sigma_starts, rounds: int = 10) -> torch.Tensor:
    """Alternating minimisation with *global* block steps on the grid: the non-blind solve for
    ``(a, w)`` given ``σ``, then the best grid ``σ`` given ``(a, w)``, ``rounds`` times."""
    out = []
    for s in torch.as_tensor(sigma_starts, dtype=_DTYPE).reshape(-1).tolist():
        i = table.nearest_sigma(s)
        for _ in range(int(rounds)):
            j = table.solve(i)
            i = int(table.terms[:, j].argmin())
        out.append(table.params(i, j))
    return torch.tensor(out, dtype=_DTYPE)


def kernel_first(table: GridSearch, sigma_starts, noise_std: float) -> torch.Tensor:
    """The MAP_k strategy: climb ``log p(σ|y)`` of eq. (16) from each start, then solve eq. (13).

    From each start the estimate moves to the better neighbouring grid ``σ`` until none is better
    (a local search, as fair to the random starts as the descent methods); ``(a, w)`` is then the
    non-blind solution at ``σ̂``.
    """
    curve = table.log_posterior_sigma(noise_std)["nonblind"]
    out = []
    for s in torch.as_tensor(sigma_starts, dtype=_DTYPE).reshape(-1).tolist():
        i = table.nearest_sigma(s)
        while True:
            best = max((j for j in (i - 1, i + 1) if 0 <= j < len(curve)), key=lambda j: float(curve[j]))
            if curve[best] <= curve[i]:
                break
            i = best
        out.append(table.params(i, table.solve(i)))
    return torch.tensor(out, dtype=_DTYPE)


def compare_strategies(y, noise_std: float, starts: torch.Tensor, steps: int, rounds: int,
                       table: GridSearch | None = None) -> dict[str, torch.Tensor]:
    """Run every strategy of the chapter from the same random ``starts``; estimates ``(n, 3)`` each.

    - ``"joint descent"``: projected Adam on ``(a, w, σ)`` together (MAP_{x,k}, eq. 11);
    - ``"alternating descent"``: the same steps split between image and kernel blocks;
    - ``"alternating, exact blocks"``: alternating with a global non-blind solve as the image step;
    - ``"kernel first"``: local ascent on eq. (16), then the non-blind solve (eqs. 12-13).

    The two descent methods get the same number of gradient evaluations (``steps``).
    """
    table = table or GridSearch.build(y)
    inner = max(1, int(steps) // (2 * int(rounds)))
    return {
        "joint descent": joint_descent(y, starts, steps=steps).theta,
        "alternating descent": alternating_descent(y, starts, rounds=rounds, inner_steps=inner).theta,
        "alternating, exact blocks": alternating_exact(table, starts[:, 2]),
        "kernel first": kernel_first(table, starts[:, 2], noise_std),
    }


def reached_truth(theta, truth=TRUTH, tol=(1.0, 1.0, 0.25)) -> torch.Tensor:
    """Boolean per estimate: every parameter within ``tol`` of the truth."""
    theta = _params(theta)
    return ((theta - _params(truth, "truth")).abs() <= torch.tensor(tol, dtype=_DTYPE)).all(-1)


def success_rate(theta, truth=TRUTH, tol=(1.0, 1.0, 0.25)) -> float:
    """Fraction of estimates that :func:`reached_truth`."""
    return float(reached_truth(theta, truth, tol).double().mean())


def failure_modes(theta, truth=TRUTH, tol=(1.0, 1.0, 0.25)) -> dict[str, int]:
    """Count how estimates end: at the truth, a pulse collapsed to width < 1 sample, or a pulse of
    sensible width at the wrong place or with the wrong width/blur trade-off."""
    theta = _params(theta)
    ok = reached_truth(theta, truth, tol)
    collapsed = ~ok & (theta[..., 1] < 1.0)
    return {"truth": int(ok.sum()), "collapsed": int(collapsed.sum()), "other": int((~ok & ~collapsed).sum())}


__all__ = [
    "N", "TRUTH", "LOWER", "UPPER", "SCALES", "SIGMA_MIN", "project", "pulse", "gaussian_kernel",
    "blur", "forward", "observe", "data_term", "Plane", "random_plane",
    "GridSearch", "random_starts", "Descent", "joint_descent", "alternating_descent",
    "alternating_exact", "kernel_first", "compare_strategies", "failure_modes", "reached_truth",
    "success_rate",
]
