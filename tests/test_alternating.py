"""Tests of repro.alternating: the simplex projection, the kernel step, the alternating MAP_{x,k} loop."""

import pytest
import torch

from repro import alternating as alt
from repro import nonblind, synth


def _problem(batch=2, size=24, ks=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.avg_pool2d(torch.rand(batch, 3, 2 * size, 2 * size, generator=g, dtype=dtype), 2)
    k = synth.motion_kernels(batch, ks, seed).to(dtype)[:, None]
    return x, k, synth.blur_reflect(x, k)


def test_project_simplex_kkt_and_idempotence():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64)
    p = alt.project_simplex(v)
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(dim=(-2, -1)), torch.ones(4, 1, dtype=torch.float64), rtol=0, atol=1e-12)
    # KKT: v - p is one constant tau on the support, and v <= tau off it
    for vi, pi in zip(v.flatten(1), p.flatten(1)):
        support = pi > 0
        tau = (vi - pi)[support]
        torch.testing.assert_close(tau, tau[:1].expand_as(tau), rtol=0, atol=1e-12)
        assert (vi[~support] <= tau[0] + 1e-12).all()
    torch.testing.assert_close(alt.project_simplex(p), p, rtol=0, atol=1e-12)
    # invariant to adding a constant to every tap (why the step size ignores the DC direction)
    torch.testing.assert_close(alt.project_simplex(v + 3.0), p, rtol=0, atol=1e-12)


def test_reblur_residual_is_zero_for_the_truth():
    x, k, y = _problem()
    torch.testing.assert_close(alt.reblur_residual(y, k, x), torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)
    expected = (y - x).square().flatten(1).mean(dim=1).sqrt()
    delta = alt.initial_kernel(2, 5, "delta", dtype=torch.float64)
    torch.testing.assert_close(alt.reblur_residual(y, delta, x), expected, rtol=0, atol=1e-12)


def test_initial_kernels():
    delta = alt.initial_kernel(3, 7, "delta")
    assert delta.shape == (3, 1, 7, 7) and torch.equal(delta[:, 0, 3, 3], torch.ones(3))
    k = alt.initial_kernel(3, 7, "gaussian", sigma=1.0, noise=0.2, seed=4)
    assert (k >= 0).all() and torch.allclose(k.sum(dim=(-2, -1)), torch.ones(3, 1))
    assert torch.equal(k, alt.initial_kernel(3, 7, "gaussian", sigma=1.0, noise=0.2, seed=4))
    assert not torch.equal(k, alt.initial_kernel(3, 7, "gaussian", sigma=1.0, noise=0.2, seed=5))


def test_kernel_steps_descend_monotonically_with_the_true_image():
    # with F returning the true image the loop is projected gradient descent on ||y - k * x||^2
    # alone: with step 1/L the residual can never increase, and k moves towards the truth
    x, k_true, y = _problem()
    x_hat, k, trace = alt.alternating_map(y, 5, lambda y_, k_: x, iterations=15, l2=0.0, init="delta")
    assert torch.equal(x_hat, x)
    assert (trace[:, 1:] <= trace[:, :-1] + 1e-12).all()
    assert (trace[:, -1] < 0.5 * trace[:, 0]).all()
    start = alt.initial_kernel(2, 5, "delta", noise=0.1, dtype=torch.float64)
    assert ((k - k_true).abs().sum(dim=(-2, -1)) < (start - k_true).abs().sum(dim=(-2, -1))).all()


def test_alternating_map_shapes_determinism_and_residual_decrease():
    x, k_true, y = _problem(dtype=torch.float32)
    solver = lambda y_, k_: nonblind.wiener(y_, k_[:, 0], 1e-2)  # noqa: E731
    x_hat, k, trace = alt.alternating_map(y, 5, solver, iterations=6, seed=3)
    assert x_hat.shape == y.shape and k.shape == (2, 1, 5, 5) and trace.shape == (2, 7)
    assert (k >= 0).all() and torch.allclose(k.sum(dim=(-2, -1)), torch.ones(2, 1))
    assert (trace[:, -1] < trace[:, 0]).all()  # monotone-ish: it ends lower than it starts
    again = alt.alternating_map(y, 5, solver, iterations=6, seed=3)
    for a, b in zip((x_hat, k, trace), again):
        assert torch.equal(a, b)
    assert not torch.equal(alt.alternating_map(y, 5, solver, iterations=6, seed=4)[1], k)
    _, k0, trace0 = alt.alternating_map(y, 5, solver, iterations=0, seed=3)
    assert torch.equal(k0, alt.initial_kernel(2, 5, noise=0.1, seed=3)) and trace0.shape == (2, 1)


def test_alternating_map_errors():
    _, _, y = _problem(dtype=torch.float32)
    solver = lambda y_, k_: y_  # noqa: E731
    with pytest.raises(ValueError, match="too large for 24x24"):
        alt.alternating_map(y, 25, solver, 2)
    with pytest.raises(ValueError, match="solver must be a callable"):
        alt.alternating_map(y, 5, "wiener", 2)
    with pytest.raises(ValueError, match="iterations must be an int >= 0"):
        alt.alternating_map(y, 5, solver, -1)
    with pytest.raises(ValueError, match="init must be one of"):
        alt.alternating_map(y, 5, solver, 1, init="box")
    with pytest.raises(ValueError, match="solver must return a tensor of the shape of y"):
        alt.alternating_map(y, 5, lambda y_, k_: y_[:, :1], 1)
    with pytest.raises(ValueError, match="y must have 4 dimensions"):
        alt.alternating_map(y[0], 5, solver, 1)
    with pytest.raises(ValueError, match="l2 must be >= 0"):
        alt.alternating_map(y, 5, solver, 1, l2=-1)
