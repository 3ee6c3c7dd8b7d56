"""The 1D toy of Kernel-Diff §3.1: model identities, the two posteriors, the solvers."""

import numpy as np
import pytest
import torch

from repro import toy1d as T

D = torch.float64


def test_pulse_integer_and_fractional_edges():
    x = T.pulse(torch.tensor(64.0, dtype=D), torch.tensor(10.0, dtype=D))
    expected = np.zeros(T.N)
    expected[64:74] = 1
    np.testing.assert_array_equal(x.numpy(), expected)
    x = T.pulse(torch.tensor(3.25, dtype=D), torch.tensor(2.5, dtype=D))
    np.testing.assert_allclose(x[2:7].numpy(), [0, 0.75, 1, 0.75, 0])
    assert float(x.sum()) == pytest.approx(2.5)


def test_kernel_and_blur_match_numpy_convolution():
    k = T.gaussian_kernel(torch.tensor(1.3, dtype=D))
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_allclose(k.numpy(), k.flip(0).numpy())
    x = torch.rand(T.N, dtype=D, generator=torch.Generator().manual_seed(0))
    skewed = torch.linspace(0.1, 1.0, 19, dtype=D)  # asymmetric: catches a conv/corr mix-up
    np.testing.assert_allclose(T.blur(x, skewed).numpy(), np.convolve(x.numpy(), skewed.numpy(), "same"), atol=1e-13)


def test_observation_is_seeded_and_noise_free_truth_has_zero_data_term():
    assert torch.equal(T.observe(seed=3), T.observe(seed=3))
    assert not torch.equal(T.observe(seed=3), T.observe(seed=4))
    y = T.observe(noise_std=0.0)
    assert float(T.data_term(y, torch.tensor(T.TRUTH, dtype=D))) == 0.0
    assert float(T.data_term(y, torch.tensor([60.0, 10.0, 1.5], dtype=D))) > 1.0


def test_random_plane_directions_and_mask():
    y = T.observe(noise_std=0.01)
    plane = T.random_plane(y, seed=2, resolution=21)
    assert float(plane.t1 @ plane.t2) == pytest.approx(0.0, abs=1e-10)  # eq. (22)
    centre = plane.loss[10, 10]
    assert float(centre) == pytest.approx(float(T.data_term(y, torch.tensor(T.TRUTH, dtype=D))))
    assert torch.isnan(plane.loss).any() and torch.isfinite(plane.loss).any()
    again = T.random_plane(y, seed=2, resolution=21)
    assert torch.equal(torch.nan_to_num(plane.loss), torch.nan_to_num(again.loss))


@pytest.fixture(scope="module")
def table():
    y = T.observe(noise_std=0.01, seed=0)
    return y, T.GridSearch.build(y, step=1.0, sigmas=torch.arange(0.25, 3.01, 0.25, dtype=D))


def test_nonblind_solve_finds_the_true_pulse(table):
    y, grid = table
    i = grid.nearest_sigma(1.5)
    a, w, s = grid.params(i, grid.solve(i))
    assert (a, w, s) == (64.0, 10.0, 1.5)


def test_posteriors_match_brute_force_and_peak_at_truth(table):
    y, grid = table
    post = grid.log_posterior_sigma(0.01)
    beta = 0.01 ** 2
    # brute force for two sigmas, explicitly looping over the grid pulses
    raw = []
    for s in (0.5, 2.0):
        terms = torch.stack([T.data_term(y, torch.tensor([a, w, s], dtype=D)) for a, w in zip(grid.a, grid.w)])
        raw.append(torch.logsumexp(-terms / (2 * beta), 0))
    marginal_unshifted = torch.logsumexp(-grid.terms / (2 * beta), 1)
    shift = marginal_unshifted.max()
    for s, value in zip((0.5, 2.0), raw):
        assert float(post["marginal"][grid.nearest_sigma(s)]) == pytest.approx(float(value - shift), rel=1e-9)
    for curve in ("marginal", "nonblind"):
        assert float(post["sigma"][post[curve].argmax()]) == 1.5
        assert float(post[curve].max()) == 0.0


def test_kernel_first_succeeds_from_every_start(table):
    y, grid = table
    starts = T.random_starts(12, seed=5)
    assert T.success_rate(T.kernel_first(grid, starts[:, 2], 0.01)) == 1.0


def test_descent_stays_at_truth_and_in_the_box():
    y = T.observe(noise_std=0.0)
    starts = torch.tensor([T.TRUTH, (90.0, 30.0, 2.9)], dtype=D)
    run = T.joint_descent(y, starts, steps=20, lr=0.01)
    assert bool(T.reached_truth(run.theta[0]))
    assert (run.theta >= torch.tensor(T.LOWER, dtype=D)).all() and (run.theta <= torch.tensor(T.UPPER, dtype=D)).all()
    assert run.loss.shape == (20, 2) and run.path.shape == (21, 2, 3)
    assert torch.equal(run.path[0], starts) and torch.equal(run.path[-1], run.theta)
    alt = T.alternating_descent(y, starts, rounds=2, inner_steps=5)
    assert alt.loss.shape == (20, 2)
    assert torch.equal(T.joint_descent(y, starts, steps=20, lr=0.01).theta, run.theta)


def test_alternating_descent_moves_only_the_active_block():
    """Each block is frozen exactly while the other one is optimised, in every round: the image
    block (a, w) during the σ steps and σ during the (a, w) steps (a shared Adam state would keep
    moving the frozen block on its momentum)."""
    y = T.observe(noise_std=0.01)
    starts = T.random_starts(16, seed=3)
    inner, rounds = 7, 4
    path = T.alternating_descent(y, starts, rounds=rounds, inner_steps=inner).path
    for r in range(2 * rounds):
        block = path[r * inner:(r + 1) * inner + 1]
        frozen = [2] if r % 2 == 0 else [0, 1]
        active = [0, 1] if r % 2 == 0 else [2]
        assert torch.equal(block[:, :, frozen], block[:1, :, frozen].expand_as(block[:, :, frozen]))
        assert (block[-1, :, active] != block[0, :, active]).any()


def test_descent_from_a_far_start_gets_trapped():
    """The chapter's point: far from the pulse the data term is flat in a, and descent fails."""
    y = T.observe(noise_std=0.01)
    run = T.joint_descent(y, torch.tensor([[5.0, 4.0, 1.0]], dtype=D), steps=200)
    assert not bool(T.reached_truth(run.theta[0]))


def test_failure_modes_partition_the_estimates():
    theta = torch.tensor([T.TRUTH, (20.0, 0.2, 1.0), (64.0, 14.0, 0.3), (64.5, 10.5, 1.6)], dtype=D)
    assert T.failure_modes(theta) == {"truth": 2, "collapsed": 1, "other": 1}


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: T.data_term(torch.zeros(100, dtype=D), torch.tensor(T.TRUTH)), "length 128"),
        (lambda: T.data_term(torch.full((128,), float("nan")), torch.tensor(T.TRUTH)), "NaN"),
        (lambda: T.forward(torch.tensor([1.0, 2.0])), "size 3"),
        (lambda: T.observe(noise_std=-1), "noise_std"),
        (lambda: T.random_plane(T.observe(), resolution=1), "resolution"),
        (lambda: T.random_starts(0), "n must be"),
        (lambda: T.GridSearch.build(T.observe(), sigmas=[0.0, 1.0]), "sigmas"),
        (lambda: T.GridSearch.build(T.observe(), step=1.0, sigmas=[1.0]).log_posterior_sigma(0.0), "noise_std"),
    ],
)
def test_bad_input_raises_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
