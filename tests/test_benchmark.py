"""Tests of repro.experiments.benchmark: test sets, the common protocol, resumable records, the summary and
its spread, validation. Synthetic cases and fake adapters; the real sets when they are on this machine (tests/conftest.needs_data)."""

import dataclasses
import statistics

import pytest
import torch

from conftest import needs_data

from repro import profiles
from repro.experiments import benchmark as bm
from repro import kernels, metrics
from repro import selfdeblur as sd
from repro.experiments import selfdeblur as se
from repro.experiments.evaluation import build_cases
from repro.experiments import d3
from repro.store import Store



def _cases(n=2, size=40, ksize=7, prefix="img"):
    gen = torch.Generator().manual_seed(0)
    images = {f"{prefix}{i}": torch.nn.functional.avg_pool2d(torch.rand(1, 1, 60, 60, generator=gen), 3, 1, 1)[0]
              for i in range(n)}
    return build_cases(images, {"g": kernels.gaussian(ksize, 1.5)}, crop=size, meta={"dataset": "synthetic"})


def _fake(name, calls, stochastic=False, oracle=False, key="", value=20.0):
    """An adapter that counts its calls and returns scores depending on the case and seed."""

    def run(case, seed):
        calls.append((name, case.name, seed))
        return {"psnr": value + seed + len(case.name) % 3, "ssim": 0.5 + 0.01 * seed,
                "mnc": 0.3 if stochastic else None, "seconds": 0.1}

    return bm.Adapter(name, run, key, oracle=oracle, stochastic=stochastic)


# ------------------------------------------------------------------------------------------
# Profiles and test sets
# ------------------------------------------------------------------------------------------


def test_profiles_reduce_only_what_they_say():
    paper = profiles.get("paper").benchmark
    assert paper.selfdeblur_sets == bm.SETS and paper.kerneldiff_steps is None and paper.mild_crop is None
    assert (paper.n_mild, paper.n_motion) == (100, 100)
    # Levin and Kodak come from the SelfDeblur profile: all 32 Levin images and 8 x 8 Kodak inputs there
    assert len(profiles.get("paper").selfdeblur.levin_inputs) == 32
    assert len(profiles.get("paper").selfdeblur.kodak_images) * len(profiles.get("paper").selfdeblur.kodak_kernels) == 64
    quick = bm.describe(profiles.get("quick"))
    assert "not run on" in quick and "50 reverse steps" in quick
    assert "not run on" not in bm.describe(profiles.get("paper"))
    # each skipped set has its reason; the motion set's 64² crops are also below the 92² inputs
    # the quick SelfDeblur profile is sized for
    assert "mild Gaussian blur (too slow for this profile)" in quick
    assert "motion blur (too slow for this profile, and its 64² crops are smaller than the 92² inputs" in quick
    # crops as large as the SelfDeblur inputs drop the second reason
    roomy = dataclasses.replace(profiles.get("quick").kerneldiff_data, crop=96)
    assert bm._selfdeblur_skip_reason("bsd100-motion", profiles.get("quick").selfdeblur, roomy) == \
        "too slow for this profile"


@pytest.mark.parametrize("change, match", [
    ({"runs": 1}, "runs must be >= 2"),
    ({"n_mild": 0}, "n_mild must be a positive int"),
    ({"mild_crop": -3}, "mild_crop must be None or a positive int"),
    ({"selfdeblur_sets": ("nope",)}, "selfdeblur_sets must be one of"),
    ({"name": "fast"}, "profile must be one of"),
])
def test_profile_validation(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(profiles.get("smoke").benchmark, **change)
    with pytest.raises(ValueError, match="profile must be one of"):
        profiles.get("fast").benchmark


@needs_data()
def test_test_sets_are_deterministic_and_follow_their_sources():
    first, second = bm.test_sets(profiles.get("smoke")), bm.test_sets(profiles.get("smoke"))
    assert list(first) == list(bm.SETS)
    for name in bm.SETS:
        assert [c.fingerprint() for c in first[name]] == [c.fingerprint() for c in second[name]]
    sd_settings = profiles.get("smoke").selfdeblur
    assert [c.fingerprint() for c in first["levin"]] == [c.fingerprint() for c in se.levin_cases(sd_settings)]
    assert [c.fingerprint() for c in first["kodak"]] == [c.fingerprint() for c in se.kodak_cases(sd_settings)]
    spec = profiles.get("smoke").kerneldiff_data
    motion = first["bsd100-motion"][0]
    assert torch.equal(motion.k, spec.test_kernels()[0]) and motion.y.shape[-1] == spec.crop
    assert all(c.meta["blur_mode"] == "valid" and c.meta["noise_sigma"] == 0 for s in bm.SETS[1:] for c in first[s])
    mild = first["bsd100-mild"][0]
    assert mild.k.shape[-1] in range(11, 22, 2) and mild.x.shape[-1] == profiles.get("smoke").benchmark.mild_crop


# ------------------------------------------------------------------------------------------
# Protocol
# ------------------------------------------------------------------------------------------


def test_score_is_the_selfdeblur_protocol_up_to_shift():
    case = _cases(1, size=40)[0]
    k_hat = kernels.gaussian(7, 1.4)
    gen = torch.Generator().manual_seed(3)
    x_big = (sd.pad_observation(case.x[None], k_hat.shape, "reflect") + 0.02 * torch.randn(1, 1, 46, 46, generator=gen))
    x_big = x_big.clamp(0, 1)[0]
    ours = bm.score(case, sd.crop_to_observation(x_big[None], k_hat.shape)[0], k_hat)
    theirs = se.score_run(case, x_big, k_hat)
    assert ours["psnr"] == pytest.approx(theirs["psnr"], abs=1e-9)
    assert ours["ssim"] == pytest.approx(theirs["ssim"], abs=1e-9)
    assert ours["mnc"] == pytest.approx(theirs["mnc"], abs=1e-12)
    assert ours["border"] == se.protocol_border(40) == 14


def test_score_forgives_a_shift_but_not_blur():
    case = _cases(1, size=48)[0]
    shifted = torch.roll(case.x, shifts=(2, -1), dims=(-2, -1))
    assert bm.score(case, shifted)["psnr"] > 60  # the same image moved: perfect up to shift
    assert metrics.psnr(shifted, case.x) < 40
    assert bm.score(case, case.y)["psnr"] < 40 and bm.score(case, case.y)["mnc"] is None
    with pytest.raises(ValueError, match="does not match case"):
        bm.score(case, case.x[..., :-1])


# ------------------------------------------------------------------------------------------
# Resumable records
# ------------------------------------------------------------------------------------------


def test_selfdeblur_runs_on_a_bsd100_case_with_an_even_kernel(tmp_path):
    """The branch only the paper profile reaches (SelfDeblur on the BSD100 sets): an even true
    kernel is estimated at the next odd size, the run is stored in the benchmark's own folder and
    scored by the common protocol; a second call reuses the stored run."""
    gen = torch.Generator().manual_seed(1)
    image = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 48, 48, generator=gen), 3, 1, 1)[0]
    case = build_cases({"img": image}, {"motion0": kernels.gaussian(8, 1.5)}, crop=32,
                       meta={"dataset": "BSD100"})[0]
    assert case.k.shape[-1] == 8
    adapter = bm._selfdeblur_adapter("original", profiles.get("smoke"), "cpu", Store(tmp_path))
    first = adapter.run(case, 0)
    assert all(torch.isfinite(torch.tensor(first[m])) for m in ("psnr", "ssim", "mnc"))
    assert 0 < first["mnc"] <= 1 + 1e-9 and first["border"] == se.protocol_border(32)
    stored = list((tmp_path / "smoke" / bm.CHAPTER / "selfdeblur" / "runs" / "benchmark-BSD100").rglob("*.pt"))
    assert [p.relative_to(p.parents[1]).as_posix() for p in stored] == ["img_motion0/original_seed0.pt"]
    record = torch.load(stored[0], weights_only=False)
    assert tuple(record["k_hat"].shape) == (9, 9)
    assert adapter.run(case, 0) == first  # read back, not run again (the same seconds too)


def test_paper_bsd100_inputs_are_feasible_for_both_selfdeblur_variants():
    """Every BSD100 input of the paper benchmark fits SelfDeblur's scale plans: whole 321×481
    images (either orientation) with D3's largest mild kernel, and the Kernel-Diff crops with its
    motion kernels at the next odd size."""
    spec = profiles.get("paper").kerneldiff_data
    shapes = [((321, 481), max(d3.TEST_KERNEL_SIZES)), ((481, 321), max(d3.TEST_KERNEL_SIZES)),
              ((spec.crop, spec.crop), spec.kernel_size | 1)]
    assert profiles.get("paper").benchmark.mild_crop is None and set(profiles.get("paper").benchmark.selfdeblur_sets) == set(bm.SETS)
    for variant in ("original", "improved"):
        config = profiles.get("paper").selfdeblur.config(variant)
        for shape, size in shapes:
            assert sd.scale_plan(shape, size, config)[-1].image_size == shape


def test_run_resumes_without_losing_or_duplicating(tmp_path):
    sets = {"a": _cases(2), "b": _cases(1, prefix="other")}
    calls = []
    methods = {"det": _fake("det", calls), "sto": _fake("sto", calls, stochastic=True)}
    full = bm.run(sets, methods, tmp_path / "full.json", runs=3, progress=False)
    assert len(full) == len(calls) == 3 * (1 + 3)
    calls.clear()
    partial = bm.run(sets, methods, tmp_path / "part.json", runs=3, progress=False, stop_after=5)
    assert len(partial) == 5 == len(calls)
    resumed = bm.run(sets, methods, tmp_path / "part.json", runs=3, progress=False)
    assert len(calls) == 12 and len(set(calls)) == 12  # each record computed exactly once
    assert resumed == full
    calls.clear()
    assert bm.run(sets, methods, tmp_path / "part.json", runs=3, progress=False) == full and calls == []
    # a changed method key recomputes that method only
    methods["det"] = _fake("det", calls, key="v2")
    bm.run(sets, methods, tmp_path / "part.json", runs=3, progress=False)
    assert sorted({c[0] for c in calls}) == ["det"] and len(calls) == 3


def test_run_honours_the_sets_of_an_adapter_and_validates(tmp_path):
    calls = []
    only_b = dataclasses.replace(_fake("x", calls), sets=("b",))
    records = bm.run({"a": _cases(1), "b": _cases(1)}, {"x": only_b}, tmp_path / "r.json", runs=2, progress=False)
    assert [r["set"] for r in records] == ["b"]
    with pytest.raises(ValueError, match="sets must be a non-empty dict"):
        bm.run({}, {"x": only_b}, tmp_path / "r.json", runs=2)
    with pytest.raises(ValueError, match="methods must be a non-empty dict"):
        bm.run({"a": _cases(1)}, {"x": lambda c, s: {}}, tmp_path / "r.json", runs=2)
    with pytest.raises(ValueError, match="runs must be a positive int"):
        bm.run({"a": _cases(1)}, {"x": only_b}, tmp_path / "r.json", runs=0)
    twice = _cases(1) + _cases(1)
    with pytest.raises(ValueError, match="distinct names"):
        bm.run({"a": twice}, {"x": only_b}, tmp_path / "r.json", runs=2)


def test_a_corrupt_store_is_set_aside_and_rebuilt(tmp_path):
    path = tmp_path / "records.json"
    path.write_text("{ truncated")
    calls = []
    with pytest.warns(UserWarning, match="records.json is corrupt"):
        records = bm.run({"a": _cases(1)}, {"d": _fake("d", calls)}, path, runs=2, progress=False)
    assert len(records) == 1 and (tmp_path / "records.json.corrupt").exists()


# ------------------------------------------------------------------------------------------
# Summary
# ------------------------------------------------------------------------------------------


def _record(set_name, case, method, seed, psnr, oracle=False, stochastic=True, mnc=None, seconds=1.0):
    return {"set": set_name, "case": case, "method": method, "seed": seed, "psnr": psnr, "ssim": psnr / 100,
            "mnc": mnc, "seconds": seconds, "oracle": oracle, "stochastic": stochastic}


def test_summary_means_and_run_to_run_spread():
    m = "SelfDeblur, improved"
    records = [_record("levin", "c1", m, 0, 10.0, mnc=0.2), _record("levin", "c1", m, 1, 12.0, mnc=0.4),
               _record("levin", "c2", m, 0, 20.0, mnc=0.5), _record("levin", "c2", m, 1, 26.0, mnc=0.5),
               _record("levin", "c1", "DRK (D3)", 0, 15.0, stochastic=False, seconds=0.01),
               _record("levin", "c2", "DRK (D3)", 0, 17.0, stochastic=False, seconds=0.03)]
    rows = {r["method"]: r for r in bm.summarize(records)}
    row = rows[m]
    assert (row["inputs"], row["runs"]) == (2, 2)
    assert row["psnr"] == pytest.approx(17.0)
    # mean over inputs of the sample std across runs: (stdev(10, 12) + stdev(20, 26)) / 2
    assert row["psnr_spread"] == pytest.approx((statistics.stdev([10, 12]) + statistics.stdev([20, 26])) / 2)
    assert row["psnr_spread"] == pytest.approx((2 ** 0.5 + 18 ** 0.5) / 2)
    assert row["mnc"] == pytest.approx(0.4) and row["mnc_spread"] == pytest.approx(statistics.stdev([0.2, 0.4]) / 2)
    drk = rows["DRK (D3)"]
    assert drk["psnr_spread"] is None and drk["mnc"] is None and drk["seconds"] == pytest.approx(0.02)
    assert "17.00 ± 2.83" in bm.format_table(bm.summarize(records), "levin")
    matrix = bm.format_matrix(bm.summarize(records))
    assert "| DRK (D3) | 16.00 | — | — | — |" in matrix


def test_winners_exclude_oracles_and_the_blurred_input():
    records = [_record("kodak", "c", "Wiener, true k (oracle)", 0, 40.0, oracle=True, stochastic=False),
               _record("kodak", "c", bm.REFERENCE, 0, 30.0, stochastic=False, seconds=0.0001),
               _record("kodak", "c", "DRK (D3)", 0, 25.0, stochastic=False, seconds=0.01),
               _record("kodak", "c", "Kernel-Diff, guided", 0, 27.0, seconds=5.0)]
    best = bm.winners(bm.summarize(records))["kodak"]
    assert best["method"] == "Kernel-Diff, guided" and best["runner_up"] == "DRK (D3)"
    assert best["margin"] == pytest.approx(2.0) and best["oracle"] == 40.0 and best["reference"] == 30.0
    assert best["fastest"] == "DRK (D3)"
    assert best["above_reference"] is None  # no records given
    # per input: the winner's mean over its runs against the blurred input, inputs it has no reference on left out
    records += [_record("kodak", "d", bm.REFERENCE, 0, 20.0, stochastic=False),
                _record("kodak", "d", "Kernel-Diff, guided", 0, 19.0), _record("kodak", "d", "Kernel-Diff, guided", 1, 23.0),
                _record("kodak", "e", "Kernel-Diff, guided", 0, 50.0)]
    assert bm.winners(bm.summarize(records), "psnr", records)["kodak"]["above_reference"] == (1, 2)
    with pytest.raises(ValueError, match="metric must be one of"):
        bm.winners([], "mnc")
    with pytest.raises(ValueError, match="no rows to plot"):
        bm.plot_quality_vs_time([])


def test_quality_vs_time_plot_has_one_panel_per_set():
    import matplotlib.pyplot as plt

    records = [_record("levin", "c", "DRK (D3)", 0, 20.0, stochastic=False),
               _record("kodak", "c", "SelfDeblur, original", 0, 21.0),
               _record("kodak", "c", "SelfDeblur, original", 1, 22.0)]
    fig = bm.plot_quality_vs_time(bm.summarize(records))
    assert [ax.get_title() for ax in fig.axes] == [bm.SET_TITLES["levin"], bm.SET_TITLES["kodak"]]
    plt.close(fig)

