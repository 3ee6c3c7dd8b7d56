"""Tests of repro.experiments.selfdeblur: profiles, resumable and deterministic runs, scores, Table 1,
failure-mode helpers, validation. Tiny synthetic inputs and a few iterations; one CPU thread."""

import dataclasses
import math

import pytest
import torch

from repro import profiles
from repro import data, kernels, ops
from repro import selfdeblur as sd
from repro.experiments import selfdeblur as se
from repro.experiments.evaluation import build_cases
from repro.selfdeblur import SelfDeblurConfig

TINY = {"original": SelfDeblurConfig(iterations=3, ssim_switch=2),
        "improved": SelfDeblurConfig.kotera(multiscale=False, iterations=3, regularisation_switch=2,
                                            init_max_iterations=2)}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(n=1, side=50, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    return {f"img{i}": torch.nn.functional.avg_pool2d(
        torch.rand(1, 1, side, side, generator=gen, dtype=dtype), 5, 1, 2)[0] for i in range(n)}


def _cases(n=1, size=36, ksize=5, dtype=torch.float32):
    """Synthetic Kodak-like cases: smooth random images, a Gaussian kernel, valid blur."""
    cases = build_cases(_images(n, dtype=dtype), {"g": kernels.gaussian(ksize, 1.2, dtype=dtype)}, crop=size,
                        meta={"dataset": "kodak"})
    for c in cases:
        c.meta["kernel_size"] = ksize
        c.meta["input"] = f"{c.meta['image']}_{c.meta['kernel']}"
    return cases


def _strip(records):
    """Records without what legitimately differs between two computations of the same run."""
    return [{k: v for k, v in r.items() if k not in ("seconds", "workers")} for r in records]


# ------------------------------------------------------------------------------------------
# Profiles
# ------------------------------------------------------------------------------------------


def test_profiles_and_paper_protocol():
    paper = profiles.get("paper").selfdeblur
    assert len(paper.kodak_images) * len(paper.kodak_kernels) == 64  # 8 images × 8 kernels
    assert len(paper.levin_inputs) == 32 and paper.runs == 10 and paper.iteration_scale == 1
    assert paper.config("original") == SelfDeblurConfig()
    assert paper.config("improved") == SelfDeblurConfig.kotera()
    quick = profiles.get("quick").selfdeblur
    assert quick.config("original").iterations == round(5000 * quick.iteration_scale)
    assert quick.config("over-regularised").tv_initial_weight == quick.tv_initial_weight > 0
    improved = quick.config("improved")
    assert quick.config("without kernel ℓ²") == dataclasses.replace(improved, kernel_l2_weight=0.0)
    assert quick.config("kernel ℓ² as a sum") == dataclasses.replace(improved, kernel_l2_per_entry=False)
    assert improved.kernel_l2_per_entry and improved.kernel_l2_weight == 0.1
    assert "kodim01" in quick.describe() and "im1_kernel3" in quick.describe() and "×0.1" in quick.describe()
    assert "learning rate 0.001 instead of 0.0001" in quick.describe()
    assert "learning rate" not in profiles.get("paper").selfdeblur.describe()
    assert "kh·kw entries" in profiles.get("paper").selfdeblur.describe()
    with pytest.raises(ValueError, match="profile must be one of"):
        profiles.get("fast").selfdeblur


@pytest.mark.parametrize("change, match", [
    (dict(runs=1), "runs must be an int >= 2"),
    (dict(kodak_images=(0,)), "kodak_images"),
    (dict(kodak_kernels=(9,)), "kodak_kernels"),
    (dict(kodak_images=(1, 1)), "repeat"),
    (dict(levin_inputs=((5, 1),)), "levin_inputs images"),
    (dict(levin_inputs=((1, 2), (1, 2))), "repeat a pair"),
    (dict(kodak_downscale=1.5), "kodak_downscale"),
    (dict(kodak_size=8), "kodak_size"),
    (dict(variants=("shock filter",)), "variants"),
    (dict(fit_inputs=99), "fit_inputs"),
    (dict(gray=1), "gray"),
])
def test_profile_validation(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(profiles.get("smoke").selfdeblur, **change)


def test_every_profile_input_is_feasible():
    """The quick and smoke inputs are large enough for every scale of both methods (no data
    needed: the check only uses sizes)."""
    for name in ("smoke", "quick"):
        settings = profiles.get(name).selfdeblur
        for method in ("original", "improved"):
            config = settings.config(method)
            for j in settings.kodak_kernels:
                sd.scale_plan((settings.kodak_size, settings.kodak_size), data.LEVIN_KERNEL_SIZES[j - 1], config)
            for _, j in settings.levin_inputs:
                sd.scale_plan((settings.levin_size, settings.levin_size), sd.SELFDEBLUR_LEVIN_KERNEL_SIZES[j - 1], config)
        # the Explore section's default (Levin kernel 5, 13×13, all modifications on)
        sd.scale_plan((settings.explore_size, settings.explore_size), 13, SelfDeblurConfig.kotera())


# ------------------------------------------------------------------------------------------
# Runs: determinism, resumption, storage
# ------------------------------------------------------------------------------------------


def test_runs_are_seeded_and_resume_exactly(tmp_path):
    cases = _cases()
    full = se.evaluate_runs(cases, TINY, range(2), tmp_path / "a", device="cpu", progress=False, workers=1)
    assert [(r["input"], r["method"], r["seed"]) for r in full] == [
        ("img0_g", "original", 0), ("img0_g", "original", 1), ("img0_g", "improved", 0), ("img0_g", "improved", 1)]
    # an "interrupted" evaluation: 3 runs, then resumed
    partial = se.evaluate_runs(cases, TINY, range(2), tmp_path / "b", device="cpu", progress=False, stop_after=3,
                                workers=1)
    assert len(partial) == 3
    assert _strip(partial) == _strip(full[:3])
    stored = se.load_records(tmp_path / "b")
    resumed = se.evaluate_runs(cases, TINY, range(2), tmp_path / "b", device="cpu", progress=False, workers=1)
    assert _strip(resumed) == _strip(full)  # seeded: bit-identical on the CPU
    for rid in stored:  # the first three were not recomputed
        assert se.load_records(tmp_path / "b")[rid]["seconds"] == stored[rid]["seconds"]
    a, b = se.load_run(tmp_path / "a", full[-1]), se.load_run(tmp_path / "b", resumed[-1])
    assert torch.equal(a["x_hat"], b["x_hat"]) and torch.equal(a["k_hat"], b["k_hat"])
    assert torch.equal(a["loss_curve"], b["loss_curve"])
    assert a["seed"] == 1 and a["config"] == TINY["improved"].to_dict()
    # the record holds the scores of the stored estimate
    assert a["metrics"] == se.score_run(cases[0], a["x_hat"], a["k_hat"])


def test_changed_config_recomputes_only_its_runs(tmp_path):
    cases = _cases()
    first = se.evaluate_runs(cases, TINY, [0], tmp_path, device="cpu", progress=False, workers=1)
    changed = dict(TINY, original=dataclasses.replace(TINY["original"], iterations=4))
    second = se.evaluate_runs(cases, changed, [0], tmp_path, device="cpu", progress=False, workers=1)
    assert second[1] == first[1]  # improved reused as is
    assert second[0]["key"] != first[0]["key"]
    assert se.load_run(tmp_path, second[0])["loss_curve"].shape == (4,)


def test_changed_oracle_rescores_the_stored_runs_without_rerunning(tmp_path, monkeypatch):
    cases = _cases()
    first = se.evaluate_runs(cases, TINY, [0], tmp_path, device="cpu", progress=False, workers=1)
    assert all(r["oracle"] == se.ORACLE for r in first)
    changed = dict(se.ORACLE, lam=10 * se.ORACLE["lam"])
    monkeypatch.setattr(se, "ORACLE", changed)
    second = se.evaluate_runs(cases, TINY, [0], tmp_path, device="cpu", progress=False, workers=1)
    for a, b in zip(first, second):
        assert (b["key"], b["seconds"]) == (a["key"], a["seconds"])  # not rerun
        assert b["oracle"] == changed and b["metrics"]["psnr"] == a["metrics"]["psnr"]
        assert b["metrics"]["error_ratio"] != a["metrics"]["error_ratio"]
        stored = se.load_run(tmp_path, b)
        assert stored["metrics"] == b["metrics"] == se.score_run(cases[0], stored["x_hat"], stored["k_hat"])
    assert se.load_records(tmp_path) == {r["id"]: r for r in second}


def test_the_error_ratio_reference_is_computed_once_per_input(tmp_path, monkeypatch):
    cases = _cases(n=2)
    calls = []
    compute = se.error_ratio_reference
    monkeypatch.setattr(se, "error_ratio_reference", lambda case: calls.append(case.name) or compute(case))
    records = se.evaluate_runs(cases, TINY, range(2), tmp_path, device="cpu", progress=False, workers=1)
    assert len(records) == 2 * len(TINY) * len(cases) and sorted(calls) == sorted(c.name for c in cases)
    # a given reference scores exactly as one computed by score_run itself
    run = se.load_run(tmp_path, records[0])
    assert se.score_run(cases[0], run["x_hat"], run["k_hat"], compute(cases[0])) == records[0]["metrics"]


def test_batched_group_stores_one_record_per_seed(tmp_path):
    cases = _cases(dtype=torch.float64)  # float64: batched = single up to rounding (test_selfdeblur)
    records = se.evaluate_runs(cases, {"original": TINY["original"]}, [3, 4], tmp_path, device="cpu",
                               batched=True, progress=False)
    assert [r["seed"] for r in records] == [3, 4]
    assert all(r["restarts_in_call"] == 2 for r in records)
    assert all(r["threads"] == se.RUN_THREADS for r in records)  # results depend on it
    single = sd.run_selfdeblur(cases[0].y[None], 5, TINY["original"], seed=4, progress=False)
    stored = se.load_run(tmp_path, records[1])
    torch.testing.assert_close(stored["x_hat"], single.x_hat[0], rtol=0, atol=1e-7)


def test_parallel_workers_store_the_same_runs_as_one(tmp_path):
    """On the CPU each run has RUN_THREADS threads in its own worker process: two workers store
    bit-identical runs to one, and a plan naming a run twice runs it once."""
    cases = _cases()
    one = se.evaluate_runs(cases, TINY, range(2), tmp_path / "one", device="cpu", progress=False, workers=1)
    plan = [(cases, TINY, range(2)), (cases, {"original": TINY["original"]}, [1, 2])]
    two = se.evaluate_plan(plan, tmp_path / "two", device="cpu", progress=False, workers=2)
    assert [r["id"] for r in two] == [r["id"] for r in one] + [two[-1]["id"]] and two[-1]["seed"] == 2
    assert _strip(two[:4]) == _strip(one) and {r["workers"] for r in two} == {2}
    for a, b in zip(one, two):
        ra, rb = se.load_run(tmp_path / "one", a), se.load_run(tmp_path / "two", b)
        assert torch.equal(ra["x_hat"], rb["x_hat"]) and torch.equal(ra["loss_curve"], rb["loss_curve"])


def test_evaluate_runs_validation(tmp_path):
    cases = _cases()
    with pytest.raises(ValueError, match="cases"):
        se.evaluate_runs([], TINY, [0], tmp_path)
    with pytest.raises(ValueError, match="configs"):
        se.evaluate_runs(cases, {"x": "original"}, [0], tmp_path)
    with pytest.raises(ValueError, match="seeds"):
        se.evaluate_runs(cases, TINY, [0, 0], tmp_path)
    with pytest.raises(ValueError, match="stop_after"):
        se.evaluate_runs(cases, TINY, [0], tmp_path, stop_after=-1)
    with pytest.raises(ValueError, match="device"):
        se.evaluate_runs(cases, TINY, [0], tmp_path, device="gpu0")
    with pytest.raises(ValueError, match="workers"):
        se.evaluate_runs(cases, TINY, [0], tmp_path, workers=0)
    with pytest.raises(ValueError, match="plan"):
        se.evaluate_plan([(cases, TINY)], tmp_path)
    small = _cases(size=20, ksize=5)
    with pytest.raises(ValueError, match="cannot be run by 'original'"):
        se.evaluate_runs(small, TINY, [0], tmp_path)
    (tmp_path / "runs.json").write_text('{"format": "other"}')  # an older index is set aside, not trusted
    with pytest.warns(UserWarning, match="not of format"):
        assert se.load_records(tmp_path) == {}
    assert (tmp_path / "runs.json.stale").exists()


# ------------------------------------------------------------------------------------------
# Scores
# ------------------------------------------------------------------------------------------


def test_score_of_the_truth_and_of_the_no_blur_pair():
    case = _cases()[0]
    seen = se.seen_region(_images()["img0"], case)
    torch.testing.assert_close(ops.blur(seen[None], case.k, mode="valid", op="conv")[0], case.y)
    truth = se.score_run(case, seen, case.k)
    assert truth["psnr"] > 60 and truth["isnr"] > 30 and truth["mnc"] == pytest.approx(1)
    assert truth["shift"] == [0.0, 0.0] and not truth["no_blur"]
    delta = kernels.pad_to(torch.ones(1, 1), (5, 5))
    no_blur = se.score_run(case, sd.pad_observation(case.y[None], 5)[0], delta)
    assert no_blur["isnr"] == pytest.approx(0, abs=1e-9)  # x̂ = y
    assert no_blur["no_blur"] and no_blur["kernel_support"] == pytest.approx(1)
    # a translated estimate scores as the truth: comparisons are up to shift
    shifted = se.score_run(case, torch.roll(seen, (2, -1), dims=(-2, -1)), case.k)
    assert shifted["shift"] == [2.0, -1.0]
    with pytest.raises(ValueError, match="does not match"):
        se.score_run(case, seen[..., 1:], case.k)


def test_protocol_border():
    assert se.protocol_border(255) == 15
    assert se.protocol_border(64) == 15
    assert se.protocol_border(30) == 9  # keeps an 11×11 interior
    assert se.protocol_border(11) == 0


# ------------------------------------------------------------------------------------------
# Table 1
# ------------------------------------------------------------------------------------------


def _record(dataset, method, inp, seed, isnr, no_blur=False):
    return {"dataset": dataset, "method": method, "input": inp, "seed": seed,
            "metrics": {"isnr": isnr, "psnr": 20 + isnr, "ssim": 0.5, "error_ratio": 2.0 + seed, "no_blur": no_blur}}


def test_table1_means_and_per_input_std():
    records = [_record("kodak", "original", "a", 0, 1.0), _record("kodak", "original", "a", 1, 3.0),
               _record("kodak", "original", "b", 0, -2.0, True), _record("kodak", "original", "b", 1, 2.0),
               _record("levin", "improved", "c", 0, 5.0), _record("levin", "improved", "c", 1, 5.0)]
    rows = se.table1(records)
    assert [(r["dataset"], r["method"]) for r in rows] == [("kodak", "original"), ("levin", "improved")]
    kodak, levin = rows
    assert kodak["isnr_mean"] == pytest.approx(1.0)
    assert kodak["isnr_std"] == pytest.approx((math.sqrt(2) + math.sqrt(8)) / 2)  # sample stds 1.414, 2.828
    assert (kodak["inputs"], kodak["runs"], kodak["failed"], kodak["no_blur"]) == (2, 4, 0.25, 0.25)
    assert kodak["error_ratio_median"] == 2.5 and kodak["paper"] == (2.48, 2.52)
    assert kodak["error_ratio_successes"] == 2  # the seed-0 runs (2.0); the seed-1 ones are at 3.0, not below
    assert levin["isnr_std"] == 0 and levin["paper"] == (8.23, 1.21)
    text = se.format_table1(rows)
    assert "| Kodak (synthetic) | original | 2 × 2 | 1.00 | 2.12 |" in text
    assert text.count("paper") == 2
    one_run = se.table1([_record("levin", "original", "c", 0, 1.0)])
    assert math.isnan(one_run[0]["isnr_std"]) and "| – |" in se.format_table1(one_run)


# ------------------------------------------------------------------------------------------
# Failure-mode helpers
# ------------------------------------------------------------------------------------------


def test_fit_curves_seeded_and_decreasing():
    targets = torch.rand(2, 1, 36, 36, generator=torch.Generator().manual_seed(1))
    a = se.fit_curves(targets, 6, seed=3, workers=2)
    b = se.fit_curves(targets, 6, seed=3, workers=2)
    assert a.shape == (2, 6) and torch.equal(a, b)
    assert (a[:, -1] < a[:, 0]).all()
    # target 1 alone with seed 4 is the second row (targets run independently), in 1 or 2 workers
    torch.testing.assert_close(se.fit_curves(targets[1:], 6, seed=4)[0], a[1], rtol=0, atol=0)
    assert torch.equal(se.fit_curves(targets, 6, seed=3, workers=1), a)
    with pytest.raises(ValueError, match="iterations"):
        se.fit_curves(targets, 0)


def test_no_blur_objectives():
    case = _cases()[0]
    rows = se.no_blur_objectives(se.seen_region(_images()["img0"], case), case.k, case.y)
    true, no_blur = rows
    assert no_blur["mse"] == pytest.approx(0, abs=1e-12) and no_blur["kernel_l2"] == pytest.approx(1)
    assert true["mse"] == pytest.approx(0, abs=1e-12)  # noise-free: both pairs explain y exactly
    assert no_blur["tv"] < true["tv"]  # TV prefers the blurred image
    early = "improved, early (MSE + 0.1‖k‖²/(kh·kw))"
    entries = case.k.numel()
    assert no_blur[early] == pytest.approx(0.1 / entries) and true[early] == pytest.approx(0.1 * true["kernel_l2"] / entries)
    assert true[early] < no_blur[early]  # the kernel term still makes the no-blur pair costlier
    assert "| no-blur (y, δ) |" in se.format_objectives(rows)
