"""Tests of repro.kerneldiff: kernel representation, DDPM schedule, the U-Net, training, sampling."""

import copy
import dataclasses

import pytest
import torch

from conftest import needs_data

from repro import profiles
from repro import kerneldiff as kd
from repro import synth
from repro.experiments import d3
from repro.experiments import kerneldiff as kdx

TINY = kd.UNetConfig(image_size=16, kernel_size=5, channels=(4, 8), time_dim=8, attention_heads=1)


def tiny_data(seed=0):
    images = [torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    return synth.BlurPairs(synth.motion_kernels(6, 5, synth.TRAIN_KERNEL_SEED), images, crop=16, seed=seed)


def tiny_config(**changes):
    return kd.TrainConfig(**({"steps": 6, "batch_size": 2, "lr": 1e-3, "log_every": 2, "checkpoint_every": 3} | changes))


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    return kd.train(TINY, tiny_config(), tiny_data(), seed=0, progress=False)


def blurred_case(seed=0):
    """A smooth random image (1, 3, 16, 16) blurred by a 5×5 motion kernel, and the kernel."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=16, mode="bicubic").clamp(0, 1)
    k = synth.motion_kernels(1, 5, synth.TEST_KERNEL_SEED)[:, None]
    return synth.blur_reflect(x, k), k


# ------------------------------------------------------------------ kernel representation
def test_kernel_round_trip_and_degenerate_sample():
    k = synth.motion_kernels(3, 9, synth.TEST_KERNEL_SEED)[:, None].double()
    unit = kd.kernel_to_unit(k)
    assert unit.amin() >= -1 and torch.allclose(unit.amax(dim=(-2, -1)), torch.ones(3, 1, dtype=torch.float64))
    assert torch.allclose(kd.unit_to_kernel(unit), k, atol=1e-15)
    flat = kd.unit_to_kernel(-torch.ones(1, 1, 4, 4))
    assert torch.equal(flat, torch.full((1, 1, 4, 4), 1 / 16))


def test_kernel_to_unit_rejects_bad_kernels():
    with pytest.raises(ValueError, match="non-negative"):
        kd.kernel_to_unit(-torch.ones(1, 1, 3, 3))
    with pytest.raises(ValueError, match="zero"):
        kd.kernel_to_unit(torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match="NaN"):
        kd.kernel_to_unit(torch.full((1, 1, 3, 3), float("nan")))


# ------------------------------------------------------------------------------ schedule
def test_schedule_identities():
    s = kd.Schedule()
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(s.alpha_bar, torch.cumprod(1 - s.betas, 0), rtol=0, atol=0)
    expected = s.betas[1:] * (1 - s.alpha_bar[:-1]) / (1 - s.alpha_bar[1:])
    assert torch.allclose(s.posterior_variance[1:], expected, rtol=1e-14)
    assert s.posterior_variance[0] == 0  # the last reverse step adds no noise
    assert s.alpha_bar[-1].item() == pytest.approx(4.04e-5, rel=0.01)  # k_T is almost pure noise
    assert s.timesteps(s.T) == list(range(s.T - 1, -1, -1))
    strided = s.timesteps(50)
    assert len(strided) == 50 and strided[0] == s.T - 1 and strided[-1] == 0


def test_q_sample_predict_k0_round_trip_is_exact():
    s = kd.Schedule()
    g = torch.Generator().manual_seed(0)
    k0, eps = torch.rand(4, 1, 5, 5, generator=g, dtype=torch.float64) * 2 - 1, torch.randn(4, 1, 5, 5, generator=g,
                                                                                              dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 999])
    kt = s.q_sample(k0, t, eps)
    assert torch.allclose(s.predict_k0(kt, t, eps), k0, atol=1e-10)
    assert torch.allclose(s.eps_from_k0(kt, t, k0), eps, atol=1e-10)


def test_ddim_step_with_eta_one_is_the_ddpm_step():
    s = kd.Schedule()
    g = torch.Generator().manual_seed(1)
    kt, k0, z = (torch.randn(3, 1, 5, 5, generator=g, dtype=torch.float64) for _ in range(3))
    for t in (999, 400, 1):
        mean, var = s.posterior(k0, kt, t)
        assert torch.allclose(s.ddim_step(kt, t, t - 1, k0, 1.0, z), mean + var.sqrt() * z, atol=1e-12)
    mean, var = s.posterior(k0, kt, 0)  # last step: k0 itself, no noise
    assert torch.allclose(s.ddim_step(kt, 0, -1, k0, 1.0, z), k0, atol=1e-12) and var.max() == 0
    assert torch.allclose(mean, k0, atol=1e-12)


def test_deterministic_ddim_keeps_the_noise_direction():
    s = kd.Schedule()
    g = torch.Generator().manual_seed(2)
    k0, eps = torch.rand(2, 1, 5, 5, generator=g, dtype=torch.float64), torch.randn(2, 1, 5, 5, generator=g,
                                                                                    dtype=torch.float64)
    kt = s.q_sample(k0, 800, eps)
    step = s.ddim_step(kt, 800, 300, k0, 0.0, torch.randn(2, 1, 5, 5, dtype=torch.float64))
    assert torch.allclose(step, s.q_sample(k0, 300, eps), atol=1e-12)


def test_schedule_rejects_bad_input():
    with pytest.raises(ValueError, match="beta"):
        kd.Schedule(beta_start=0.1, beta_end=0.01)
    with pytest.raises(ValueError, match="steps"):
        kd.Schedule().timesteps(1001)
    with pytest.raises(ValueError, match="timesteps"):
        kd.Schedule().q_sample(torch.zeros(1, 1, 3, 3), 1000, torch.zeros(1, 1, 3, 3))


# ---------------------------------------------------------------------------------- U-Net
def test_parameter_counts():
    paper = kd.parameter_count(kd.PAPER_UNET)
    assert abs(paper - 37e6) / 37e6 < 0.05  # FACTS.md: ≈ 37 M
    assert kd.parameter_count(kdx.unet_config(profiles.get("quick"))) < 1_000_000
    assert kd.parameter_count(kdx.unet_config(profiles.get("smoke"))) < 200_000
    assert kd.parameter_count(TINY) == kd.count_parameters(kd.KernelUNet(TINY))


def test_paper_unet_runs_at_the_paper_sizes():
    """The ≈37 M-parameter configuration only a GPU trains: forward and backward at 64² kernels and
    256² images, on the meta device (shapes only: no memory, no time)."""
    with torch.device("meta"):
        model = kd.KernelUNet(kd.PAPER_UNET)
        k = torch.randn(2, 1, kd.PAPER_UNET.kernel_size, kd.PAPER_UNET.kernel_size, requires_grad=True)
        out = model(k, torch.randn(2, 3, kd.PAPER_UNET.image_size, kd.PAPER_UNET.image_size), torch.tensor([0, 999]))
        out.sum().backward()
    assert out.shape == k.shape and k.grad.shape == k.shape
    assert (kd.PAPER_UNET.kernel_size, kd.PAPER_UNET.image_size) == (64, 256)  # FACTS.md


def test_unet_shapes_and_zero_initial_output():
    model = kd.new_model(TINY, seed=0)
    k, y, t = torch.randn(3, 1, 5, 5), torch.rand(3, 3, 16, 16) * 2 - 1, torch.tensor([0, 5, 999])
    out = model(k, y, t)
    assert out.shape == (3, 1, 5, 5)
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialised output conv
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), kd.new_model(TINY, 0).state_dict().values()))


def test_upsample_conv_equals_the_convolution_of_the_upsampled_image():
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(5, 4, 3, padding=1).double()
    h = torch.randn(2, 5, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    fast = kd.upsample_conv(h, conv)
    plain = conv(torch.nn.functional.interpolate(h, scale_factor=2, mode="nearest"))
    assert fast.shape == (2, 4, 12, 14)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-13)
    weights = torch.randn(plain.shape, generator=g, dtype=torch.float64)
    grads = [torch.autograd.grad((out * weights).sum(), (h, conv.weight, conv.bias)) for out in (fast, plain)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    for other in (torch.nn.Conv2d(5, 4, 1), torch.nn.Conv2d(5, 4, 3, padding=1, padding_mode="reflect")):
        with pytest.raises(ValueError, match="3x3 convolution with zero padding 1"):
            kd.upsample_conv(h, other.double())


def test_unet_rejects_wrong_shapes():
    model = kd.new_model(TINY)
    with pytest.raises(ValueError, match="kt must be"):
        model(torch.zeros(1, 1, 7, 7), torch.zeros(1, 3, 16, 16), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="y must be"):
        model(torch.zeros(1, 1, 5, 5), torch.zeros(1, 3, 32, 32), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        kd.UNetConfig(image_size=18, kernel_size=5, channels=(4, 8, 16))
    with pytest.raises(ValueError, match="exceeds"):
        kd.UNetConfig(image_size=16, kernel_size=17, channels=(4,))


# ------------------------------------------------------------------------------- training
def test_ema_update():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = copy.deepcopy(a)
    kd.ema_update(a, b, 0.9)
    for p_after, p_before, p in zip(a.parameters(), before.parameters(), b.parameters()):
        assert torch.allclose(p_after, 0.9 * p_before + 0.1 * p)


def test_training_learns_and_moves_the_output(trained):
    assert trained.step == 6 and [h["step"] for h in trained.history] == [2, 4, 6]
    out = trained.model(torch.randn(1, 1, 5, 5), torch.zeros(1, 3, 16, 16), torch.tensor([3]))
    assert out.abs().max() > 0
    ema_gap = sum((p - q).abs().sum() for p, q in zip(trained.ema.parameters(), trained.model.parameters()))
    assert ema_gap > 0  # the EMA lags the raw weights


def test_training_is_bit_identical_whatever_the_thread_count(trained):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        again = kd.train(TINY, tiny_config(), tiny_data(), seed=0, progress=False)
        assert torch.get_num_threads() == 3  # restored after the fixed-thread loop
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(again.model.state_dict().values(), trained.model.state_dict().values()):
        assert torch.equal(a, b)


def test_fixed_cpu_threads_sets_and_restores_the_count_even_on_error():
    from repro._threads import fixed_cpu_threads

    threads = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with fixed_cpu_threads(torch.device("cpu"), kd.CPU_THREADS):
            assert torch.get_num_threads() == kd.CPU_THREADS
            raise RuntimeError("inside")
    assert torch.get_num_threads() == threads
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="threads must be an int >= 1"):
            with fixed_cpu_threads(torch.device("cpu"), bad):
                pass


def test_resume_equals_uninterrupted_training(tmp_path, trained):
    path = tmp_path / "ckpt.pt"
    partial = kd.train(TINY, tiny_config(), tiny_data(), seed=0, checkpoint_path=path, stop_at=3, progress=False)
    assert partial.step == 3
    resumed = kd.train(TINY, tiny_config(), tiny_data(), seed=0, checkpoint_path=path, progress=False)
    assert resumed.step == 6 and resumed.history == trained.history
    for net_a, net_b in ((resumed.model, trained.model), (resumed.ema, trained.ema)):
        for a, b in zip(net_a.state_dict().values(), net_b.state_dict().values()):
            assert torch.equal(a, b)
    assert path.with_suffix(".json").exists()
    with pytest.raises(ValueError, match="another run"):
        kd.train(TINY, tiny_config(lr=2e-3), tiny_data(), seed=0, checkpoint_path=path, progress=False)


def test_train_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch"):
        kd.train(TINY, tiny_config(), object(), progress=False)
    with pytest.raises(ValueError, match="ema_decay"):
        kd.TrainConfig(ema_decay=1.0)


# ------------------------------------------------------------------------------- sampling
def test_full_step_sampler_is_ancestral_ddpm(trained):
    schedule = kd.Schedule(T=20)
    y, _ = blurred_case()
    result = kd.sample(trained.ema, y, guided=False, schedule=schedule, seed=5)
    # the reference: eq. 18 written out with the posterior of q, the same random draws
    g = torch.Generator().manual_seed(5)
    k = torch.randn(1, 1, 5, 5, generator=g)
    with torch.no_grad():
        for t in range(19, -1, -1):
            eps = trained.ema(k, 2 * y - 1, torch.tensor([t]))
            k0 = schedule.predict_k0(k, t, eps).clamp(-1, 1)
            mean, var = schedule.posterior(k0, k, t)
            k = mean + var.sqrt() * torch.randn(1, 1, 5, 5, generator=g)
    assert torch.allclose(result.kernels, kd.unit_to_kernel(k.clamp(-1, 1))[:, 0], atol=1e-5)
    assert result.residual is None and result.images is None


def test_guidance_lowers_the_reblurring_residual(trained):
    y, _ = blurred_case()
    solver = kd.wiener_solver(1e-3)
    common = dict(steps=25, eta=0.0, n_samples=4, seed=0, refine_steps=0)
    plain = kd.sample(trained.ema, y, solver, guided=False, **common)
    guided = kd.sample(trained.ema, y, solver, guided=True, **common)
    final_plain, _ = kd.reblur_loss(y.expand(4, -1, -1, -1), plain.kernels[:, None], solver)
    final_guided, _ = kd.reblur_loss(y.expand(4, -1, -1, -1), guided.kernels[:, None], solver)
    assert (final_guided < final_plain).all()
    assert guided.residual.shape == (25, 4) and guided.trace_kernels.shape[1:] == (4, 5, 5)


def test_refinement_never_increases_its_objective(trained):
    y, _ = blurred_case()
    solver = kd.wiener_solver(1e-3)
    start = kd.kernel_to_unit(torch.full((2, 1, 5, 5), 1 / 25.0) + torch.rand(2, 1, 5, 5) * 0.01)
    refined, history = kd.refine(y.expand(2, -1, -1, -1), start, solver, steps=5)
    assert (history[1:] <= history[:-1]).all() and (history[-1] < history[0]).all()
    assert refined.min() >= -1 and refined.max() <= 1


def test_sampling_is_seeded_and_batched(trained):
    y, _ = blurred_case()
    solver = kd.wiener_solver(1e-3)
    a = kd.sample(trained.ema, y, solver, steps=10, n_samples=3, seed=1, refine_steps=2)
    b = kd.sample(trained.ema, y, solver, steps=10, n_samples=3, seed=1, refine_steps=2)
    c = kd.sample(trained.ema, y, solver, steps=10, n_samples=3, seed=2, refine_steps=2)
    assert torch.equal(a.kernels, b.kernels) and not torch.equal(a.kernels, c.kernels)
    assert a.kernels.shape == (3, 5, 5) and torch.allclose(a.kernels.sum(dim=(-2, -1)), torch.ones(3))
    assert a.kernels.min() >= 0 and a.images.shape == (3, 3, 16, 16)
    assert not torch.equal(a.kernels[0], a.kernels[1])  # three different samples for one image


def test_sample_rejects_bad_input(trained):
    y, _ = blurred_case()
    with pytest.raises(ValueError, match="solver"):
        kd.sample(trained.ema, y, None, guided=True)
    with pytest.raises(ValueError, match="NaN"):
        kd.sample(trained.ema, torch.full_like(y, float("nan")), guided=False)
    with pytest.raises(ValueError, match="y must be"):
        kd.sample(trained.ema, torch.rand(1, 3, 32, 32), guided=False)
    with pytest.raises(ValueError, match="steps"):
        kd.sample(trained.ema, y, guided=False, steps=0)


def test_max_batch_does_not_change_the_samples(trained):
    """ε_θ, F and the gradients in slices of two: the same random draws, the same kernels."""
    y, _ = blurred_case()
    solver = kd.wiener_solver(1e-3)
    common = dict(steps=8, n_samples=5, seed=3, refine_steps=3)
    whole = kd.sample(trained.ema, y, solver, **common)
    sliced = kd.sample(trained.ema, y, solver, max_batch=2, **common)
    assert torch.allclose(whole.kernels, sliced.kernels, atol=1e-6, rtol=0)
    assert torch.allclose(whole.final_residual, sliced.final_residual, rtol=1e-5)
    unguided = kd.sample(trained.ema, y, solver, guided=False, steps=8, n_samples=5, seed=3)
    assert torch.allclose(unguided.residual, kd.sample(trained.ema, y, solver, guided=False, steps=8, n_samples=5,
                                                       seed=3, max_batch=3).residual, rtol=1e-5)
    with pytest.raises(ValueError, match="max_batch"):
        kd.sample(trained.ema, y, solver, max_batch=0)
    with pytest.raises(ValueError, match="max_batch"):
        kd.refine(y, torch.zeros(1, 1, 5, 5), solver, max_batch=1.5)


def test_choose_by_residual_keeps_each_images_lowest_residual(trained):
    y1, _ = blurred_case(seed=0)
    y2, _ = blurred_case(seed=1)
    solver = kd.wiener_solver(1e-3)
    result = kd.sample(trained.ema, torch.cat([y1, y2]), solver, steps=6, n_samples=3, seed=0, refine_steps=2)
    final, _ = kd.reblur_loss(torch.cat([y1, y2]).repeat_interleave(3, dim=0), result.kernels[:, None], solver)
    assert torch.allclose(result.final_residual, final, rtol=1e-5)
    kernels, index = kd.choose_by_residual(result, 3)
    assert index.tolist() == final.view(2, 3).argmin(dim=1).tolist()
    assert torch.equal(kernels[1], result.kernels[3 + index[1]]) and kernels.shape == (2, 5, 5)
    with pytest.raises(ValueError, match="divides"):
        kd.choose_by_residual(result, 4)
    unguided = kd.sample(trained.ema, y1, guided=False, steps=4, n_samples=2)
    with pytest.raises(ValueError, match="solver"):
        kd.choose_by_residual(unguided, 2)


def test_selection_summary_compares_the_residuals_choice_with_the_best_sample():
    from repro.metrics import mnc

    k = synth.motion_kernels(1, 5, synth.TEST_KERNEL_SEED)[0]
    flat = torch.full((5, 5), 1 / 25)
    case = type("Case", (), {"name": "a", "k": k})()
    found = {"a": {"samples": torch.stack([flat, k]), "residuals": torch.tensor([1e-4, 2e-4])}}
    summary = kdx.selection_summary([case], found)
    assert summary["cases"][0]["chosen"] == 0 and summary["cases"][0]["best"] == 1
    assert summary["chosen_is_best"] == 0 and summary["best_mnc"] == pytest.approx(1.0)
    assert summary["chosen_mnc"] == pytest.approx(mnc(flat.double(), k.double()).item())
    assert summary["sample_mnc"] == pytest.approx((summary["chosen_mnc"] + 1) / 2)
    assert summary["draw_spread"] == pytest.approx(1 - summary["chosen_mnc"])


def test_steps_sweep_reuses_the_runs_the_chapter_already_drew(trained, tmp_path, monkeypatch):
    """The sweep's rows at the step counts of the main table and of the selection run score those
    runs' kernels (no second draw; all samples of the selection run); the other rows sample the
    sweep's images as one batch."""
    import dataclasses
    from types import SimpleNamespace

    from repro.metrics import mnc

    cases = []
    for i in range(3):
        y, k = blurred_case(seed=i)
        x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i))
        cases.append(SimpleNamespace(name=f"case{i}", x=x, y=y[0], k=k[0, 0]))
    flat = torch.full((5, 5), 1 / 25)
    settings = dataclasses.replace(profiles.get("smoke").kerneldiff, n_test=3, batch=3, n_sweep=2, sample_steps=3,
                                   step_counts=(6, 3, 2), select_steps=2, n_select=2)
    main = {c.name: {"Kernel-Diff, guided": flat if i else c.k, "seconds": 1.5 + i} for i, c in enumerate(cases)}
    several = {c.name: {"samples": torch.stack([c.k, flat]), "seconds": 4.0} for c in cases}
    drawn = {3: kdx._drawn(main, "Kernel-Diff, guided", 1, "main table"),
             2: kdx._drawn(several, "samples", 2, "selection run")}
    calls = []
    real_sample = kd.sample
    monkeypatch.setattr(kdx, "sample", lambda *a, **k: calls.append(a[4]) or real_sample(*a, **k))
    rows = kdx._steps_sweep(cases, trained.ema, kd.wiener_solver(1e-3), settings, kd.Schedule(), tmp_path, "key",
                           drawn, progress=False)
    assert calls == [6] and [r["steps"] for r in rows] == [6, 3, 2]
    reused = rows[1]
    expected = torch.stack([mnc(cases[0].k.double(), cases[0].k.double()), mnc(flat.double(), cases[1].k.double())])
    assert reused["mnc_mean"] == pytest.approx(expected.mean().item()) and reused["n"] == 2
    assert reused["seconds_per_kernel"] == 2.0 and reused["source"] == "main table"
    both = torch.stack([mnc(c.k.double(), c.k.double()) for c in cases[:2]] +
                       [mnc(flat.double(), c.k.double()) for c in cases[:2]])
    assert rows[2]["mnc_mean"] == pytest.approx(both.mean().item()) and rows[2]["n"] == 4
    assert rows[2]["seconds_per_kernel"] == 2.0
    assert reused["mnc_per_case"] == pytest.approx(expected.tolist())
    assert rows[2]["mnc_per_case"] == pytest.approx([(both[i] + both[i + 2]).item() / 2 for i in range(2)])
    assert rows[0]["source"] == "one batch of 2" and rows[0]["n"] == 2 and len(rows[0]["mnc_per_case"]) == 2
    for row in rows:  # per image, an image's kernels averaged: their mean is the row's mean (equal counts)
        assert len(row["psnr_per_case"]) == 2
        assert sum(row["psnr_per_case"]) / 2 == pytest.approx(row["psnr_mean"])
    assert rows[1]["psnr_per_case"][0] != rows[1]["psnr_per_case"][1]
    with pytest.raises(ValueError, match="n_sweep"):
        dataclasses.replace(settings, n_sweep=4)
    with pytest.raises(ValueError, match="select_steps"):
        dataclasses.replace(settings, select_steps=3)
    with pytest.raises(ValueError, match="select_steps"):
        dataclasses.replace(settings, select_steps=5)
    with pytest.raises(ValueError, match="n_select"):
        dataclasses.replace(settings, n_select=0)


def _sweep_row(steps, per_case, seconds=1.0):
    return {"steps": steps, "mnc_mean": sum(per_case) / len(per_case), "mnc_per_case": per_case,
            "seconds_per_kernel": seconds}


def test_steps_comparison_is_paired_over_the_images():
    full = _sweep_row(1000, [0.2, 0.5, 0.8, 0.6], seconds=20.0)
    # every image 0.01 lower with 50 steps: within the tolerance
    met = kdx.steps_comparison([full, _sweep_row(100, [0.1, 0.1, 0.1, 0.1]),
                               _sweep_row(50, [0.19, 0.49, 0.79, 0.59], seconds=2.0)])
    assert met["steps"] == 50 and met["full_steps"] == 1000 and met["images"] == 4 and met["speedup"] == 10
    assert met["gap"] == pytest.approx(-0.01) and met["se"] == pytest.approx(0, abs=1e-12) and met["verdict"] == "met"
    # every image 0.1 lower: a paired difference with no spread is clearly below the tolerance,
    # although the rows' spreads over the images overlap
    assert kdx.steps_comparison([full, _sweep_row(50, [0.1, 0.4, 0.7, 0.5])])["verdict"] == "not met"
    # lower on average, but the per-image differences scatter: not resolved
    noisy = kdx.steps_comparison([full, _sweep_row(50, [0.5, 0.1, 0.9, 0.3])])
    d = torch.tensor([0.3, -0.4, 0.1, -0.3], dtype=torch.float64)
    assert noisy["gap"] == pytest.approx(d.mean().item()) and noisy["se"] == pytest.approx(d.std().item() / 2)
    assert noisy["verdict"] == "not resolved"
    assert kdx.steps_comparison([full, _sweep_row(250, [0.1] * 4)]) is None
    assert kdx.steps_comparison([_sweep_row(100, [0.1] * 4)]) is None
    with pytest.raises(ValueError, match="same >= 2 images"):
        kdx.steps_comparison([full, _sweep_row(50, [0.1] * 3)])
    with pytest.raises(ValueError, match="mnc_per_case"):
        kdx.steps_comparison([full, {"steps": 50, "mnc_mean": 0.3, "seconds_per_kernel": 1.0}])
    with pytest.raises(ValueError, match="tolerance"):
        kdx.steps_comparison([full], tolerance=-1)


def test_sweep_against_pairs_the_sweep_with_a_table_row_on_the_same_images():
    table = [{"method": "alternating", "psnr_per_case": [20.0, 22.0, 30.0, 99.0], "mnc_per_case": [0.5, 0.6, 0.7, 0.0]},
             {"method": "blurred input", "psnr_per_case": [25.0, 25.0, 25.0, 0.0]}]
    sweep = [{"steps": 1000, "mnc_mean": 0.6, "psnr_mean": 25.0, "mnc_per_case": [0.5, 0.7, 0.6],
              "psnr_per_case": [21.0, 24.0, 30.0]},
             {"steps": 50, "mnc_mean": 0.3, "psnr_mean": 20.0, "mnc_per_case": [0.3, 0.3, 0.3],
              "psnr_per_case": [19.0, 20.0, 21.0]}]
    full, few = kdx.sweep_against(sweep, table, "alternating")
    assert full["steps"] == 1000 and full["images"] == 3  # the table's fourth image is not in the sweep
    assert full["method_psnr"] == pytest.approx(24.0) and full["method_mnc"] == pytest.approx(0.6)
    d = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    assert full["psnr_gap"] == pytest.approx(1.0) and full["psnr_se"] == pytest.approx(d.std().item() / 3 ** 0.5)
    assert full["mnc_gap"] == pytest.approx(0.0) and full["mnc_se"] == pytest.approx(0.1 / 3 ** 0.5)
    assert few["psnr_gap"] == pytest.approx(-4.0) and few["mnc_gap"] == pytest.approx(-0.3)
    blurred = kdx.sweep_against(sweep, table, "blurred input")[0]
    assert blurred["psnr_gap"] == pytest.approx(0.0) and blurred["method_psnr"] == 25.0
    assert blurred["mnc_gap"] is None and blurred["method_mnc"] is None and blurred["mnc_se"] is None
    with pytest.raises(ValueError, match="no row 'Blind-DPS'"):
        kdx.sweep_against(sweep, table, "Blind-DPS")
    with pytest.raises(ValueError, match="per-image scores"):
        kdx.sweep_against([{k: v for k, v in sweep[0].items() if k != "psnr_per_case"}], table, "alternating")
    with pytest.raises(ValueError, match="same n >= 2 images"):
        kdx.sweep_against([sweep[0], {**sweep[1], "psnr_per_case": [1.0, 2.0]}], table, "alternating")
    with pytest.raises(ValueError, match="same n >= 2 images"):
        kdx.sweep_against([{**sweep[0], "psnr_per_case": [1.0] * 5}], table, "alternating")


def test_verdict_changes_compares_the_main_tables_sampler_with_the_longest():
    def entry(steps, mnc_gap, psnr_gap, se=1.0):
        return {"steps": steps, "mnc_gap": mnc_gap, "mnc_se": None if mnc_gap is None else 0.01,
                "psnr_gap": psnr_gap, "psnr_se": se}
    paired = [entry(1000, -0.5, 1.0), entry(250, -0.5, -3.0), entry(50, 0.5, 5.0)]
    assert kdx.verdict_changes(paired, 250) == [("PSNR", "behind", "not resolved")]
    assert kdx.verdict_changes(paired, 50) == [("MNC", "ahead", "behind"), ("PSNR", "ahead", "not resolved")]
    assert kdx.verdict_changes(paired, 1000) == []  # the same row
    assert kdx.verdict_changes([entry(1000, None, 3.0), entry(250, None, -3.0)], 250) == [("PSNR", "behind", "ahead")]
    with pytest.raises(ValueError, match="no row with sample_steps = 100"):
        kdx.verdict_changes(paired, 100)


def test_format_sweep_against_has_a_column_per_method_and_metric():
    table = [{"method": "alt", "psnr_per_case": [20.0, 22.0], "mnc_per_case": [0.5, 0.7]},
             {"method": "blurred", "psnr_per_case": [30.0, 30.0]}]
    sweep = [{"steps": 1000, "mnc_mean": 0.6, "psnr_mean": 21.0, "mnc_per_case": [0.5, 0.7],
              "psnr_per_case": [20.0, 22.0]}]
    text = kdx.format_sweep_against(sweep, table, ("alt", "blurred"))
    header, rule, line = text.splitlines()
    assert header == "| steps | MNC | PSNR (dB) | MNC − alt | PSNR − alt | PSNR − blurred |" and rule.count("---") == 6
    assert line == "| 1000 | 0.600 | 21.00 | +0.000 ± 0.000, not resolved | +0.00 ± 0.00, not resolved | -9.00 ± 1.00, behind |"


def test_profiles():
    for name in ("smoke", "quick", "paper"):
        chosen = profiles.get(name)
        assert kdx.unet_config(chosen).kernel_size == chosen.kerneldiff_data.kernel_size
        assert kdx.unet_config(chosen) == chosen.kerneldiff.unet(chosen.kerneldiff_data)
    assert kdx.unet_config(profiles.get("paper")) == kd.PAPER_UNET
    with pytest.raises(ValueError, match="profile"):
        profiles.get("fast").kerneldiff


def test_eta_is_ddpm_with_all_steps_and_the_profiles_with_fewer():
    settings = dataclasses.replace(profiles.get("quick").kerneldiff, strided_eta=0.3)
    assert settings.eta(1000) == 1.0 and settings.eta(250) == 0.3 and settings.eta(50) == 0.3
    assert settings.eta(20, T=20) == 1.0 and settings.eta(1000, T=2000) == 0.3


def test_the_evaluation_blur_is_the_guidance_blur():
    """Test cases blurred by ``build_cases(blur_mode="reflect")`` (what :func:`kd.test_cases` uses)
    are reproduced by :func:`kd.reblur` with the true kernel, the border included; with the
    symmetric boundary they are not: the guidance loss would then see a border residual even at
    the true kernel."""
    from repro.experiments.evaluation import build_cases

    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 40, 40, generator=g)
    k = torch.rand(9, 9, generator=g)
    k = k / k.sum()
    residual = {}
    for mode in ("reflect", "symmetric"):
        (case,) = build_cases({"img": image}, {"k": k}, pairing="zip", blur_mode=mode)
        residual[mode] = (kd.reblur(case.x[None], case.k[None, None]) - case.y[None]).abs().max().item()
    assert residual["reflect"] < 1e-6 < 1e-3 < residual["symmetric"]


@needs_data("bsds500")
def test_test_cases_use_held_out_kernels_and_val_images():
    from repro import data

    cases = kdx.test_cases(profiles.get("smoke"))
    spec = profiles.get("smoke").kerneldiff_data
    assert len(cases) == profiles.get("smoke").kerneldiff.n_test
    held_out = spec.test_kernels()
    for i, case in enumerate(cases):
        assert torch.equal(case.k, held_out[i]) and case.x.shape == (3, spec.crop, spec.crop)
        assert case.meta["blur_mode"] == "reflect"
        # the true kernel explains y under the guidance loss's own blur, borders included
        assert torch.allclose(kd.reblur(case.x[None], case.k[None, None]), case.y[None], atol=1e-6, rtol=0)
    val_names = {name.rsplit("/", 1)[-1].split(".")[0] for name in data.bsds500("val")}
    assert {c.meta["image"] for c in cases} <= val_names
    again = kdx.test_cases(profiles.get("smoke"))
    assert all(torch.equal(a.y, b.y) for a, b in zip(cases, again))


def test_classical_rows_use_the_books_one_wiener_nsr(monkeypatch):
    """The chapter's Wiener F takes its NSR from D3's experiments (the value its selection
    procedure chose), not from a constant of its own."""
    assert kdx.classical_solver().nsr == d3.wiener_nsr(0.0) == d3.WIENER_NSR
    monkeypatch.setattr(d3, "WIENER_NSR", 2.5e-3)
    assert kdx.classical_solver().nsr == 2.5e-3 and kdx.classical_solver().key == "wiener(nsr=0.0025)"
    assert not hasattr(kd, "WIENER_NSR") and not hasattr(kdx, "WIENER_NSR")


def test_trained_model_loads_a_finished_run_and_retrains_a_stale_one(tmp_path, monkeypatch):
    from repro._io import save_checkpoint
    from repro.store import Store

    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path))
    monkeypatch.setattr(synth, "training_images", lambda n: list(torch.rand(2, 3, 40, 40)))
    settings = profiles.get("smoke").kerneldiff
    path = Store.default().folder(profiles.get("smoke"), kdx.CHAPTER) / kdx.MODEL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = kd.KernelUNet(kdx.unet_config(profiles.get("smoke"))).state_dict()
    finished = {"run": kdx.profile_run_identity(profiles.get("smoke")), "step": settings.train.steps, "model": weights,
                "ema": weights, "history": []}
    save_checkpoint(finished, path)
    monkeypatch.setattr(kdx, "train", lambda *a, **k: pytest.fail("retrained a finished run"))
    assert kdx.trained_model(profiles.get("smoke"), "cpu", progress=False).step == settings.train.steps
    # written with other settings of the profile (here: other steps): moved aside, trained anew
    save_checkpoint(finished | {"run": {**finished["run"], "train": {"steps": 1}}}, path)
    calls = []
    monkeypatch.setattr(kdx, "train", lambda *a, **k: calls.append(a[3]) or "trained")
    with pytest.warns(UserWarning, match="other settings"):
        assert kdx.trained_model(profiles.get("smoke"), "cpu", progress=False) == "trained"
    assert calls == [kdx.SEED] and not path.exists() and path.with_name(kdx.MODEL_FILE + ".stale").exists()


def test_a_longer_training_run_continues_the_longest_finished_one_and_equals_one_from_scratch(tmp_path, monkeypatch):
    from repro._io import load_checkpoint
    from repro.store import Store

    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path))
    monkeypatch.setattr(synth, "training_images", lambda n: list(torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(3))))
    smoke = profiles.get("smoke")
    short = dataclasses.replace(smoke.kerneldiff.train, steps=6, log_every=2, checkpoint_every=3)
    smoke = dataclasses.replace(smoke, kerneldiff=dataclasses.replace(smoke.kerneldiff, train=short),
                                kerneldiff_data=dataclasses.replace(smoke.kerneldiff_data, n_train_kernels=4))
    settings = smoke.kerneldiff
    longer = settings.train.steps + 4
    profile_run = kdx.trained_model(smoke, "cpu", progress=False)
    assert kdx.model_path(smoke) == Store.default().folder(profiles.get("smoke"), kdx.CHAPTER) / kdx.MODEL_FILE
    assert kdx.model_path(smoke, settings.train.steps) == kdx.model_path(smoke)
    assert kdx.model_path(smoke, longer).name == f"diffusion_{longer}steps.pt"
    trained = []  # the step of the checkpoint each training starts from
    original_train = kd.train

    def recording_train(*args, **kwargs):
        trained.append(load_checkpoint(args[4])["step"])
        return original_train(*args, **kwargs)

    monkeypatch.setattr(kdx, "train", recording_train)
    continued = kdx.trained_model(smoke, "cpu", progress=False, steps=longer)
    assert trained == [settings.train.steps] and continued.step == longer  # started from the profile's run
    assert load_checkpoint(kdx.model_path(smoke))["step"] == settings.train.steps  # which is left as it was
    monkeypatch.setattr(kdx, "train", original_train)
    spec = smoke.kerneldiff_data
    data = synth.BlurPairs(spec.train_kernels(), synth.training_images(None), spec.crop, spec.noise_sigma, seed=kdx.SEED)
    scratch = kd.train(kdx.unet_config(smoke), dataclasses.replace(settings.train, steps=longer), data, kdx.SEED, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(continued.ema.state_dict().values(), scratch.ema.state_dict().values()))
    assert continued.history == scratch.history
    assert not any(torch.equal(a, b) for a, b in zip(continued.ema.parameters(), profile_run.ema.parameters()))
    assert kdx.trained_model(smoke, "cpu", progress=False, steps=longer).step == longer  # now read, not trained
    # a still longer run starts from the longest finished one, the study's, and equals one from scratch
    longest = longer + 2
    trained.clear()
    monkeypatch.setattr(kdx, "train", recording_train)
    continued = kdx.trained_model(smoke, "cpu", progress=False, steps=longest)
    assert trained == [longer] and continued.step == longest
    scratch = original_train(kdx.unet_config(smoke), dataclasses.replace(settings.train, steps=longest), data, kdx.SEED, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(continued.ema.state_dict().values(), scratch.ema.state_dict().values()))
    assert continued.history == scratch.history
    with pytest.raises(ValueError, match="steps must be a positive int"):
        kdx.trained_model(smoke, "cpu", progress=False, steps=0)


# ------------------------------------------------------------------------------ CUDA
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.cuda
@cuda
def test_cuda_sampling_follows_the_cpu_up_to_rounding(trained):
    """The paper profile samples on a GPU. Every random draw of the sampler comes from a CPU
    generator, so the unguided sampler on CUDA follows the CPU one up to rounding; the guided one
    returns normalised, non-negative kernels on the GPU."""
    y, _ = blurred_case()
    solver = kd.wiener_solver(1e-3)
    gpu_model = copy.deepcopy(trained.ema).cuda()
    cpu = kd.sample(trained.ema, y, solver, guided=False, steps=10, n_samples=2, seed=1)
    gpu = kd.sample(gpu_model, y.cuda(), solver, guided=False, steps=10, n_samples=2, seed=1)
    assert gpu.kernels.is_cuda
    torch.testing.assert_close(gpu.kernels.cpu(), cpu.kernels, rtol=0, atol=1e-4)
    guided = kd.sample(gpu_model, y.cuda(), solver, steps=10, n_samples=2, seed=1, refine_steps=2)
    assert guided.kernels.is_cuda and guided.kernels.min() >= 0
    torch.testing.assert_close(guided.kernels.sum(dim=(-2, -1)).cpu(), torch.ones(2))


@pytest.mark.cuda
@cuda
def test_cuda_training_follows_the_cpu_run(trained):
    """Initial weights, batches, timesteps and noise are drawn on the CPU, so training on CUDA
    follows the CPU run up to rounding (amplified a little by Adam)."""
    gpu = kd.train(TINY, tiny_config(), tiny_data(), seed=0, progress=False, device="cuda")
    assert next(gpu.ema.parameters()).is_cuda and gpu.step == trained.step
    torch.testing.assert_close([h["loss"] for h in gpu.history], [h["loss"] for h in trained.history],
                               rtol=1e-2, atol=0)


def test_the_sampling_figure_needs_two_samples_traced_alike(trained):
    """The Explore figure of the sampling chapter: one frame per traced step of both samplers."""
    y, _ = blurred_case()
    solver = kd.wiener_solver(1e-3)
    guided = kd.sample(trained.ema, y, solver, guided=True, steps=10, seed=0, refine_steps=0)
    unguided = kd.sample(trained.ema, y, solver, guided=False, steps=10, seed=0)
    fig = kdx.sampling_figure(y, guided, unguided, solver)
    assert len(fig.frames) == len(guided.trace_steps) and fig.layout.xaxis4.autorange == "reversed"
    assert fig.layout.sliders[0].steps[-1].label == f"t = {guided.trace_steps[-1]}"
    with pytest.raises(ValueError, match="traced at different steps"):
        kdx.sampling_figure(y, guided, kd.sample(trained.ema, y, solver, guided=False, steps=5, seed=0), solver)
    with pytest.raises(ValueError, match="no reblurring loss"):
        kdx.sampling_figure(y, guided, kd.sample(trained.ema, y, None, guided=False, steps=10, seed=0), solver)
