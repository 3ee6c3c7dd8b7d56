"""Tests of repro.nonblind: exact inversion, agreement with the normal equations, gradients; the
learned solver (shapes, its untrained identity, gradcheck in k, bit-identical resume, cache, errors)."""

import copy

import pytest
import torch

from repro import profiles
from repro import nonblind, synth
from repro.nonblind import LearnedWiener, gradient_energy, sparse_deconv, tikhonov, wiener
from repro._io import load_json
from repro.ops import blur
from repro.experiments import solver as learned_solver


def _rand(*shape, dtype=torch.float64, seed=0):
    return torch.rand(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _well_conditioned_kernel(lead=(), size=(3, 4), seed=1, dtype=torch.float64):
    """A kernel dominated by its centre tap: |K| >= 0.6 - 0.4 > 0 at every frequency."""
    k = 0.4 * _rand(*lead, *size, seed=seed, dtype=dtype)
    k = 0.4 * k / k.sum(dim=(-2, -1), keepdim=True)
    k[..., size[0] // 2, size[1] // 2] += 0.6
    return k


def _gaussian(size=7, sigma=1.2, dtype=torch.float64):
    t = torch.arange(size, dtype=dtype) - size // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    k = g[:, None] * g[None, :]
    return k / k.sum()


def _circulant(k, H, W, op):
    """The (HW, HW) matrix of blur(., k, "circular", op), built entry by entry from its formula."""
    kh, kw = k.shape
    sign = -1 if op == "conv" else 1
    A = torch.zeros(H * W, H * W, dtype=k.dtype)
    for i in range(H):
        for j in range(W):
            for m in range(kh):
                for n in range(kw):
                    src = ((i + sign * (m - kh // 2)) % H) * W + (j + sign * (n - kw // 2)) % W
                    A[i * W + j, src] += k[m, n]
    return A


@pytest.mark.parametrize("op", ("conv", "corr"))
@pytest.mark.parametrize("rank", (2, 3, 4))
def test_wiener_inverts_a_circular_blur(op, rank):
    x = _rand(2, 3, 12, 10)
    k = _well_conditioned_kernel({2: (), 3: (2,), 4: (2, 3)}[rank])
    y = blur(x, k, "circular", op)
    torch.testing.assert_close(wiener(y, k, nsr=1e-14, mode="circular", op=op), x, rtol=0, atol=1e-9)
    torch.testing.assert_close(tikhonov(y, k, lam=0.0, mode="circular", op=op), x, rtol=0, atol=1e-10)


def test_symmetric_mode_inverts_a_symmetric_blur_with_a_symmetric_kernel():
    x = _rand(1, 3, 14, 11)
    k = 0.5 * _gaussian(5)
    k[2, 2] += 0.5  # symmetric about both axes, and |K| >= 0.5
    y = blur(x, k, "symmetric")
    torch.testing.assert_close(wiener(y, k, nsr=1e-14, mode="symmetric"), x, rtol=0, atol=1e-9)


def test_symmetric_mode_reduces_border_ringing():
    # a smooth image that is not periodic (a ramp), blurred with a symmetric boundary:
    # the circular solver sees a jump between opposite borders, the symmetric one does not
    i = torch.arange(32, dtype=torch.float64)
    x = (i[:, None] / 31 * 0.6 + i[None, :] / 31 * 0.3 + 0.05).expand(1, 1, 32, 32)
    k = _gaussian(9, 2.0)
    y = blur(x, k, "symmetric")
    for solve, weight in ((wiener, 1e-3), (tikhonov, 1e-3)):
        err_circular = (solve(y, k, weight, mode="circular") - x).abs().max()
        err_symmetric = (solve(y, k, weight, mode="symmetric") - x).abs().max()
        assert err_symmetric < 0.2 * err_circular


def test_tikhonov_without_prior_equals_wiener_without_noise():
    y, k = _rand(2, 3, 9, 8), _well_conditioned_kernel((2,))
    for mode in ("circular", "symmetric"):
        torch.testing.assert_close(tikhonov(y, k, 0.0, mode), wiener(y, k, 0.0, mode), rtol=0, atol=1e-12)


@pytest.mark.parametrize("op", ("conv", "corr"))
def test_closed_forms_solve_the_normal_equations(op):
    H, W = 5, 6
    y = _rand(1, 1, H, W)
    k = _rand(3, 2, seed=3)
    k = k / k.sum()
    A = _circulant(k, H, W, op)
    # consistency of the matrix with the operator
    torch.testing.assert_close((A @ y.flatten()).reshape(H, W), blur(y, k, "circular", op)[0, 0])
    Dh = _circulant(torch.tensor([[1.0, -1.0]], dtype=torch.float64), H, W, "conv")
    Dv = _circulant(torch.tensor([[1.0], [-1.0]], dtype=torch.float64), H, W, "conv")
    eye = torch.eye(H * W, dtype=torch.float64)
    nsr, lam = 0.05, 0.02
    x_wiener = torch.linalg.solve(A.T @ A + nsr * eye, A.T @ y.flatten())
    x_tikhonov = torch.linalg.solve(A.T @ A + lam * (Dh.T @ Dh + Dv.T @ Dv), A.T @ y.flatten())
    torch.testing.assert_close(wiener(y, k, nsr, "circular", op).flatten(), x_wiener, rtol=0, atol=1e-12)
    torch.testing.assert_close(tikhonov(y, k, lam, "circular", op).flatten(), x_tikhonov, rtol=0, atol=1e-12)


def test_gradient_energy_formula():
    H, W = 6, 7
    u = torch.arange(H, dtype=torch.float64)[:, None]
    v = torch.arange(W // 2 + 1, dtype=torch.float64)[None, :]
    expected = 4 * torch.sin(torch.pi * u / H) ** 2 + 4 * torch.sin(torch.pi * v / W) ** 2
    torch.testing.assert_close(gradient_energy((H, W)), expected, rtol=0, atol=1e-12)


def test_float32_and_shapes():
    y, k = _rand(2, 3, 16, 13, dtype=torch.float32), _well_conditioned_kernel((2, 3), dtype=torch.float32)
    for solve in (wiener, tikhonov):
        for mode in ("circular", "symmetric"):
            x = solve(y, k, 1e-2, mode)
            assert x.shape == y.shape and x.dtype == torch.float32


@pytest.mark.parametrize("mode", ("circular", "symmetric"))
def test_gradcheck(mode):
    y = _rand(1, 2, 5, 4).requires_grad_()
    k = _rand(1, 2, 3, 2, seed=2).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: wiener(a, b, 0.1, mode), (y, k), fast_mode=True)
    assert torch.autograd.gradcheck(lambda a, b: tikhonov(a, b, 0.1, mode, "corr"), (y, k), fast_mode=True)


def test_reblurring_loss_gradient_reaches_the_kernel():
    # the use in Kernel-Diff's guidance (Algorithm 1): L = ||y - k * F(y, k)||^2
    x = _rand(1, 3, 16, 16)
    k_true = _gaussian(5, 1.0)
    y = blur(x, k_true, "symmetric")
    k = _gaussian(5, 1.6).requires_grad_()
    loss = (y - blur(wiener(y, k, 1e-2), k, "symmetric")).square().mean()
    loss.backward()
    assert torch.isfinite(k.grad).all() and k.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda y, k: wiener(y, k, nsr=-1.0), "nsr must be >= 0"),
        (lambda y, k: wiener(y, k, nsr=float("nan")), "nsr must be finite"),
        (lambda y, k: tikhonov(y, k, lam="big"), "lam must be a number"),
        (lambda y, k: wiener(y, k, mode="reflect"), "mode must be one of"),
        (lambda y, k: tikhonov(y, k, op="flip"), "op must be one of"),
        (lambda y, k: wiener(y[0], k), "y must have 4 dimensions"),
        (lambda y, k: wiener(y, k[None].expand(3, 3, 3)), "batch size 2"),
        (lambda y, k: wiener(y, k.float()), "k has dtype torch.float32"),
        (lambda y, k: tikhonov(y * float("inf"), k), "y contains NaN or Inf"),
        (lambda y, k: wiener(y, torch.ones(5, 3, dtype=y.dtype), mode="circular"), "larger than the 4x6 grid"),
        (lambda y, k: tikhonov(y, torch.ones(9, 3, dtype=y.dtype)), "larger than the 8x12 grid"),
    ],
)
def test_errors(call, match):
    y, k = _rand(2, 1, 4, 6), _well_conditioned_kernel(size=(3, 3))
    with pytest.raises(ValueError, match=match):
        call(y, k)


# --------------------------------------------------------------------------------------------
# the sparse-prior solver (Levin et al. 2007), eq. (S)
# --------------------------------------------------------------------------------------------


def _filters():
    return [(torch.tensor(f, dtype=torch.float64), c)
            for f, c in zip(nonblind.SPARSE_FILTERS, nonblind.SPARSE_FILTER_WEIGHTS)]


def _mirrored(y):
    """[[y, y⇆], [y⇅, y⇅⇆]]: the (2H, 2W) image of the "symmetric" mode, built by hand."""
    top = torch.cat([y, y.flip(-1)], dim=-1)
    return torch.cat([top, top.flip(-2)], dim=-2)


def _sparse_energy(x, y, k, lam, alpha, eps=nonblind.SPARSE_FLOOR):
    """E(x) of eq. (S) on the circular grid, from ops.blur and the filter taps (differentiable)."""
    data = (blur(x, k, "circular") - y).square().sum()
    prior = 0.0
    for f, c in _filters():
        d = blur(x, f, "circular", "corr").abs()
        power = d.clamp_min(eps) ** alpha  # clamped: no infinite gradient in the branch not taken
        rho = torch.where(d >= eps, power, alpha / 2 * eps ** (alpha - 2) * d**2 + (1 - alpha / 2) * eps**alpha)
        prior = prior + c * rho.sum()
    return data + lam * prior


def _piecewise_constant(side=40):
    i = torch.arange(side, dtype=torch.float64)
    block = ((i[:, None] > side // 4) & (i[None, :] < side // 2)).double()
    corner = (i[:, None] + i[None, :] > side).double()
    return (0.2 + 0.5 * block + 0.25 * corner).expand(1, 1, side, side).clone()


def _noisy_circular_blur(x, k, seed):
    """k ⊛ x (circular) plus white noise of σ = 0.01."""
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return blur(x, k, "circular") + 0.01 * noise


@pytest.mark.parametrize("mode", ("circular", "symmetric"))
@pytest.mark.parametrize("op", ("conv", "corr"))
def test_sparse_with_alpha_2_solves_the_quadratic_problem(mode, op):
    # α = 2: eq. (S) is ‖k ⊛ x − y‖² + λ Σ_f c_f ‖f ⊛ x‖², solved here by dense normal
    # equations on the grid of the mode (y mirrored by hand for "symmetric")
    H, W = 4, 5
    y, k = _rand(1, 1, H, W), _rand(3, 2, seed=3)
    k = k / k.sum()
    grid_y = y if mode == "circular" else _mirrored(y)
    gh, gw = grid_y.shape[-2:]
    A = _circulant(k, gh, gw, op)
    lam = 0.05
    prior = sum(c * _circulant(f, gh, gw, "corr").T @ _circulant(f, gh, gw, "corr") for f, c in _filters())
    expected = torch.linalg.solve(A.T @ A + lam * prior, A.T @ grid_y.flatten()).reshape(gh, gw)[:H, :W]
    x = sparse_deconv(y, k, lam=lam, alpha=2.0, iterations=1, cg_iterations=4, mode=mode, op=op)
    torch.testing.assert_close(x[0, 0], expected, rtol=0, atol=1e-10)
    # the Gaussian start (weight 4λ on every filter) is elsewhere: the conjugate gradients moved it
    start = sparse_deconv(y, k, lam=lam, alpha=2.0, iterations=0, mode=mode, op=op)
    assert (start[0, 0] - expected).abs().max() > 1e-3


def test_sparse_objective_decreases_over_the_iterations():
    x = _piecewise_constant(24)
    k = _gaussian(5, 1.0)
    y = _noisy_circular_blur(x, k, seed=0)
    lam, alpha = 0.002, 0.8
    # few conjugate-gradient steps: warm starts keep the decrease however inexact the solves
    energies = [float(_sparse_energy(sparse_deconv(y, k, lam, alpha, iterations=t, cg_iterations=3, mode="circular"),
                                     y, k, lam, alpha)) for t in range(7)]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(energies, energies[1:])), energies
    assert energies[-1] < 0.9 * energies[0]


def test_sparse_reaches_a_stationary_point_of_the_objective():
    # α = 1.5 makes eq. (S) convex: IRLS converges to its minimiser, where the gradient
    # 2Kᵀ(Kx − y) + λ Σ_f c_f Fᵀ ρ_ε'(F x) vanishes (computed here by autograd)
    x = _piecewise_constant(16)
    k = _gaussian(5, 1.0)
    y = _noisy_circular_blur(x, k, seed=1)
    lam, alpha = 0.01, 1.5

    def gradient_norm(iterations):
        v = sparse_deconv(y, k, lam, alpha, iterations=iterations, cg_iterations=10, mode="circular")
        (grad,) = torch.autograd.grad(_sparse_energy(v.requires_grad_(), y, k, lam, alpha), v)
        return float(grad.norm())

    assert gradient_norm(30) < 1e-8 * gradient_norm(0)


def test_sparse_prior_beats_tikhonov_on_a_piecewise_constant_image():
    x = _piecewise_constant(40)
    k = torch.zeros(7, 7, dtype=torch.float64)
    k[3, :] = 1 / 7  # horizontal motion
    y = blur(x, k, "circular") + 0.005 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2),
                                                       dtype=torch.float64)
    sparse_error = (sparse_deconv(y, k, mode="circular") - x).square().mean()
    tikhonov_error = min((tikhonov(y, k, lam, mode="circular") - x).square().mean() for lam in (1e-4, 1e-3, 1e-2, 1e-1))
    assert sparse_error < 0.8 * tikhonov_error


def test_sparse_is_deterministic_batched_and_keeps_the_dtype():
    y, k = _rand(2, 2, 12, 10), _well_conditioned_kernel((2,), size=(3, 3))
    first = sparse_deconv(y, k)
    assert torch.equal(first, sparse_deconv(y, k))
    for b in range(2):  # every image and channel is its own problem
        torch.testing.assert_close(first[b:b + 1], sparse_deconv(y[b:b + 1], k[b]), rtol=0, atol=1e-12)
    single = sparse_deconv(y.float(), k.float())
    assert single.dtype == torch.float32 and single.shape == y.shape
    torch.testing.assert_close(single, first.float(), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lam": -1e-3}, "lam must be >= 0"),
        ({"lam": float("nan")}, "lam must be finite"),
        ({"alpha": 0.0}, "alpha must be > 0"),
        ({"alpha": 2.5}, r"alpha must be in \(0, 2\]"),
        ({"alpha": float("nan")}, "alpha must be finite"),
        ({"iterations": -1}, "iterations must be an int >= 0"),
        ({"iterations": 1.5}, "iterations must be an int >= 0"),
        ({"cg_iterations": 0}, "cg_iterations must be a positive int"),
        ({"mode": "reflect"}, "mode must be one of"),
        ({"op": "flip"}, "op must be one of"),
    ],
)
def test_sparse_errors(kwargs, match):
    y, k = _rand(2, 1, 6, 6), _well_conditioned_kernel(size=(3, 3))
    with pytest.raises(ValueError, match=match):
        sparse_deconv(y, k, **kwargs)


@pytest.mark.parametrize(
    "y, k, match",
    [
        (_rand(6, 6), _gaussian(3), "y must have 4 dimensions"),
        (_rand(1, 1, 6, 6) * float("nan"), _gaussian(3), "y contains NaN or Inf"),
        (_rand(1, 1, 6, 6), _gaussian(3).float(), "k has dtype torch.float32"),
        (_rand(2, 1, 6, 6), _gaussian(3)[None].expand(3, 3, 3), "batch size 2"),
        (_rand(1, 1, 3, 3), _gaussian(7), "larger than the 6x6 grid"),
    ],
)
def test_sparse_input_errors(y, k, match):
    with pytest.raises(ValueError, match=match):
        sparse_deconv(y, k)


# --------------------------------------------------------------------------------------------
# the learned solver (DWDN design)
# --------------------------------------------------------------------------------------------


TINY = {"features": 2, "blocks": 1, "widths": (3, 4), "level_blocks": 1}


def _tiny_config(steps=6, **kw):
    return learned_solver.SolverProfile("smoke", model=TINY, steps=steps, batch_size=2, n_val=2, log_every=2,
                                  checkpoint_every=2, **kw)


def _synthetic_images():
    g = torch.Generator().manual_seed(5)
    return [torch.rand(3, 36, 40, generator=g) for _ in range(3)]


def test_learned_wiener_shapes_and_scales():
    model = LearnedWiener(**TINY)
    y = _rand(2, 3, 13, 18, dtype=torch.float32)
    k = synth.motion_kernels(2, 5, 0)
    for kernel in (k[:, None], k, k[0]):
        assert model(y, kernel).shape == (2, 3, 13, 18)
    scales = LearnedWiener(features=3, blocks=0, widths=(2, 3, 4), level_blocks=0).forward_multiscale(y, k)
    assert [tuple(s.shape[-2:]) for s in scales] == [(13, 18), (8, 10), (4, 5)]


def test_untrained_learned_wiener_is_a_mean_preserving_wiener_filter():
    # the output heads start at zero: the output is the Wiener estimate of y with the model's nsr
    model = LearnedWiener(**TINY).double()
    y, k = _rand(1, 3, 12, 10), _gaussian(5, 1.0)[None, None]
    z = torch.cat([y, model.extract(y)], dim=1)
    nsr = model.nsr(y, z).detach()[0, :3, 0, 0]
    mean = y.mean(dim=(-2, -1), keepdim=True)
    expected = torch.cat([mean[:, c : c + 1] + wiener(y[:, c : c + 1] - mean[:, c : c + 1], k[0, 0], nsr[c].item())
                          for c in range(3)], dim=1)
    torch.testing.assert_close(model(y, k), expected, rtol=0, atol=1e-12)


def test_noise_std_estimates_white_noise():
    g = torch.Generator().manual_seed(0)
    y = 0.5 + 0.05 * torch.randn(2, 3, 64, 64, generator=g, dtype=torch.float64)
    torch.testing.assert_close(nonblind.noise_std(y).flatten(), torch.full((2,), 0.05, dtype=torch.float64),
                               rtol=0.06, atol=0)


def test_learned_wiener_gradcheck_in_k():
    model = LearnedWiener(**TINY, seed=1).double()
    for head in model.heads:  # non-zero heads, so that the refinement path is checked too
        torch.nn.init.normal_(head.weight, std=0.3)
    y = _rand(1, 3, 6, 6)
    k = (_rand(1, 1, 3, 3, seed=2) + 0.2).requires_grad_()
    assert torch.autograd.gradcheck(lambda kk: model(y, kk), (k,), fast_mode=True)


def test_learned_wiener_errors():
    model = LearnedWiener(**TINY)
    y, k = _rand(2, 3, 8, 8, dtype=torch.float32), torch.ones(2, 1, 3, 3) / 9
    with pytest.raises(ValueError, match="y must be RGB"):
        model(y[:, :1], k)
    with pytest.raises(ValueError, match=r"k must be \(B, 1, kh, kw\)"):
        model(y, k.expand(2, 3, 3, 3))
    with pytest.raises(ValueError, match="batch size 2"):
        model(y, k[:1, 0].expand(3, 3, 3))
    with pytest.raises(ValueError, match="widths must be"):
        LearnedWiener(widths=())
    with pytest.raises(ValueError, match="features must be an int >= 1"):
        LearnedWiener(features=0)
    with pytest.raises(ValueError, match="SolverProfile.steps"):
        learned_solver.SolverProfile("x", steps=0)


def test_load_learned_wiener_names_the_training_command(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path))
    with pytest.raises(learned_solver.SolverNotTrainedError, match="repro train solver --profile smoke"):
        learned_solver.load_learned_wiener(profiles.get("smoke"))
    with pytest.raises(ValueError, match=r"expected a repro.profiles.Profile, got 'smoke'; use repro.profiles.get"):
        learned_solver.load_learned_wiener("smoke")  # a profile's name is not a profile


def test_training_resumes_bit_identically_and_caches(tmp_path, monkeypatch):
    torch.manual_seed(0)
    images = _synthetic_images()
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "a"))
    straight = learned_solver.train_learned_wiener(profiles.get("smoke"), "cpu", False, images=images, config=_tiny_config())
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "b"))
    partial = learned_solver.train_learned_wiener(profiles.get("smoke"), "cpu", False, images=images, config=_tiny_config(), stop_at=3)
    folder = learned_solver.solver_path(profiles.get("smoke")).parent
    assert (folder / learned_solver.SOLVER_CHECKPOINT).exists() and not (folder / learned_solver.SOLVER_FILE).exists()
    assert not all(torch.equal(a, b) for a, b in zip(partial.state_dict().values(), straight.state_dict().values()))
    resumed = learned_solver.train_learned_wiener(profiles.get("smoke"), "cpu", False, images=images, config=_tiny_config())
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert not (folder / learned_solver.SOLVER_CHECKPOINT).exists()
    history = load_json(folder / learned_solver.SOLVER_HISTORY)["history"]
    assert [h["step"] for h in history] == [2, 4, 6]
    # cached: loading gives the same weights, and training again does not touch the data
    loaded = learned_solver.load_learned_wiener(profiles.get("smoke"))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), straight.state_dict().values()))
    with monkeypatch.context() as patch:
        patch.setattr(synth.BlurPairs, "batch", lambda *a, **k: pytest.fail("retrained a cached solver"))
        learned_solver.train_learned_wiener(profiles.get("smoke"), "cpu", False, images=images, config=_tiny_config())
    # a checkpoint of other settings is moved aside and training starts over (not resumed from it)
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "c"))
    learned_solver.train_learned_wiener(profiles.get("smoke"), "cpu", False, images=images, config=_tiny_config(), stop_at=2)
    with pytest.warns(UserWarning, match="other settings"):
        partial8 = learned_solver.train_learned_wiener(profiles.get("smoke"), "cpu", False, images=images, config=_tiny_config(steps=8),
                                                 stop_at=6)
    assert (learned_solver.solver_path(profiles.get("smoke")).parent / (learned_solver.SOLVER_CHECKPOINT + ".stale")).exists()
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "d"))
    fresh8 = learned_solver.train_learned_wiener(profiles.get("smoke"), "cpu", False, images=images, config=_tiny_config(steps=8), stop_at=6)
    for a, b in zip(partial8.state_dict().values(), fresh8.state_dict().values()):
        assert torch.equal(a, b)  # started over: nothing of the stale checkpoint was used


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_learned_wiener_on_cuda_matches_cpu():
    """The Kernel-Diff chapters' solver on a GPU: the same weights give the CPU's output up to
    rounding (feature extraction, per-channel Wiener division in Fourier, encoder–decoder)."""
    torch.manual_seed(0)
    model = LearnedWiener(**TINY)
    for p in model.parameters():  # the output heads start at zero: give every layer a part
        p.data.add_(0.1 * torch.randn_like(p))
    y = _rand(2, 3, 13, 18, dtype=torch.float32)
    k = synth.motion_kernels(2, 5, 0)
    expected = model(y, k)
    got = copy.deepcopy(model).cuda()(y.cuda(), k.cuda())
    assert got.is_cuda
    torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=1e-4)
