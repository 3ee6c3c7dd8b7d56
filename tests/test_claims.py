"""The claims ledger decides by its fixed rules: decisive, undecided and reversed evidence, from
synthetic intervals and from the smoke profile's own runs."""

import re
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest

from repro import _io, claims, metrics, profiles
from repro.experiments import benchmark
from repro.experiments import toy
from repro.store import Store


def _intervals(**overrides):
    """Every claim decided in its favour (an interval far on its side), except ``overrides``."""
    out = {}
    for c in claims.REGISTER:
        far = c.threshold + (1.0 if c.holds_when == "above" else -1.0) * max(1.0, abs(c.threshold))
        out[c.id] = (claims.exact(far), "synthetic")
    return out | overrides


def test_the_register_holds_every_claim_of_claims_md_once():
    assert [c.id for c in claims.REGISTER] == ["T1", "T2", "D1", "D2", "D3", "D4", "S1", "S2", "S3", "S4",
                                               "K1", "K2", "K3", "K4"]
    with pytest.raises(ValueError, match="no claim 'X9'"):
        claims.claim("X9")


def test_decisive_evidence_reproduces_and_reversed_evidence_does_not():
    decided = {d.claim.id: d for d in claims.decide_all(_intervals())}
    assert all(d.verdict == "reproduced" and d.needed is None for d in decided.values())
    # S3 (improved − original ISNR, must be above 0): a paired interval wholly below 0
    reversed_ = metrics.paired_interval([1.0, 1.5, 0.5, 1.2], [3.0, 3.2, 2.9, 3.1])
    decided = {d.claim.id: d for d in claims.decide_all(_intervals(S3=(reversed_, "4 inputs")))}
    assert decided["S3"].verdict == "not reproduced" and decided["S3"].needed is None
    # K4 holds below 0: an interval above 0 reverses it
    assert claims.decide(claims.claim("K4"), metrics.welch_interval([1.0, 1.2, 1.1], [0.1, 0.2, 0.0])).verdict \
        == "not reproduced"


def test_undecided_evidence_says_how_many_inputs_would_decide_it():
    straddling = metrics.paired_interval([1.0, 2.0, 3.0, 4.5], [0.5, 1.0, 2.9, 3.0])  # +0.775 [−0.19, 1.74]
    decision = claims.decide(claims.claim("K1"), straddling, "4 images")
    assert decision.verdict == "undecided" and decision.needed == 5
    assert "about 5 images would decide it" in claims.verdict_text(decision)
    alone = claims.decide(claims.claim("S3"), None, "1 inputs: a paired interval needs two or more")
    assert alone.verdict == "undecided" and alone.needed is None
    assert "too few inputs" in claims.verdict_text(alone)


def test_decide_all_refuses_missing_or_unknown_claims():
    with pytest.raises(ValueError, match=r"none for \['K4'\]"):
        claims.decide_all({k: v for k, v in _intervals().items() if k != "K4"})
    with pytest.raises(ValueError, match=r"unknown claims \['Z1'\]"):
        claims.decide_all(_intervals(Z1=(claims.exact(0.0), "")))


def test_the_ledger_table_links_every_claim_to_its_evidence():
    table = claims.markdown(claims.decide_all(_intervals()))
    lines = table.splitlines()
    assert len(lines) == 2 + len(claims.REGISTER)
    assert '<a href="selfdeblur_evaluation.html#table-1">Table 1</a>' in lines[2 + 8]  # S3
    assert all(line.split(" | ")[1] == "**reproduced**" for line in lines[2:])  # the verdict beside the claim


def test_the_toy_claims_are_decided_from_the_toy_runs():
    # the whole smoke ledger is built by notebooks/claims.py under nbval (`make test`), against its
    # stored outputs; the toy's part is cheap enough to check here too
    smoke = profiles.get("smoke")
    intervals = claims.toy_intervals(toy.run_chapter(smoke))
    t1, note = intervals["T1"]
    assert t1.n == smoke.toy1d.starts and note == f"{round(t1.estimate * t1.n)} of {t1.n} starts"
    assert 0 <= t1.low <= t1.estimate <= t1.high <= 1
    t2, note = intervals["T2"]
    assert "eq. 12: 1 peak(s)" in note and "eq. 16: 1 peak(s)" in note
    assert claims.decide(claims.claim("T2"), t2).verdict in claims.VERDICTS


def _benchmark(store, profile_name, gaps):
    """Benchmark records at ``profile_name``: on bsd100-motion, Kernel-Diff's PSNR is the blurred
    input's plus each gap (one input per gap, two seeds each)."""
    entries = _io.Entries(store.root / profile_name / benchmark.CHAPTER / "records.json", benchmark.FORMAT)
    for i, gap in enumerate(gaps):
        for seed in (0, 1):
            for method, psnr in ((benchmark.REFERENCE, 25.0 + i), ("Kernel-Diff, guided", 25.0 + i + gap + 0.1 * seed)):
                entries.put(f"{method}/{i}/{seed}", "k", {"set": "bsd100-motion", "case": f"img{i}", "method": method,
                                                         "seed": seed, "psnr": psnr})


def test_deblur_warns_of_a_method_worse_than_its_input_and_names_a_better_profile(tmp_path):
    store = Store(tmp_path)
    assert claims.deblur_warning("kerneldiff", "quick", store) is None  # no benchmark: nothing to say
    _benchmark(store, "quick", [-9.0, -8.0, -10.0])
    warning = claims.deblur_warning("kerneldiff", "quick", store)
    assert warning.startswith("kerneldiff with the quick profile's models did worse than the blurred input")
    assert "bsd100-motion: -8.95 dB" in warning and "3 inputs" in warning
    assert warning.endswith("no other profile's benchmark in this store did better")
    _benchmark(store, "paper", [1.0, 2.0, 1.5])
    assert claims.deblur_warning("kerneldiff", "quick", store).endswith(
        "the paper profile's models were not worse there (--profile paper)")
    assert claims.deblur_warning("kerneldiff", "paper", store) is None  # better than its input there
    assert claims.deblur_warning("wiener", "quick", store) is None  # not measured blind by the benchmark


def test_a_straddling_benchmark_gap_gives_no_warning(tmp_path):
    store = Store(tmp_path)
    _benchmark(store, "quick", [-3.0, 2.0, 0.5])
    interval = claims.against_blurred_input(_benchmark_records(store), "Kernel-Diff, guided")["bsd100-motion"]
    assert interval.low < 0 < interval.high
    assert claims.deblur_warning("kerneldiff", "quick", store) is None


def _benchmark_records(store):
    return list(benchmark.load_records(store.root / "quick" / benchmark.CHAPTER / "records.json").values())


def _table1_records(gaps, seeds=3):
    """Records as run_evaluation stores them: per Kodak input, the original at 2 dB ISNR and the
    improved at 2 dB + that input's gap, with a seed-dependent wobble."""
    return [{"dataset": "kodak", "input": f"kodim{i:02d}", "method": method, "seed": seed,
             "metrics": {"isnr": 2.0 + (gap if method == "improved" else 0.0) + 0.3 * (seed - 1) * (-1) ** i}}
            for i, gap in enumerate(gaps) for method in ("original", "improved") for seed in range(seeds)]


@pytest.mark.parametrize("gaps, verdict", [
    ([3.0, 2.5, 3.5, 2.8, 3.1, 2.9], "reproduced"),      # Table 1's direction, decisively
    ([1.0, -1.2, 0.4, -0.3, 0.8, -0.5], "undecided"),    # no clear sign on six inputs
    ([-2.0, -2.5, -1.5, -2.2, -1.8, -2.1], "not reproduced"),  # the improvement hurts
])
def test_table1_records_are_decided_per_input(gaps, verdict):
    records = _table1_records(gaps)
    intervals = claims.table1_intervals(SimpleNamespace(records=records))
    interval, note = intervals["S3"]
    assert note == "6 inputs (× 3 seeds)" and interval.estimate == pytest.approx(statistics.fmean(gaps))
    decision = claims.decide(claims.claim("S3"), interval, note)
    assert decision.verdict == verdict
    assert (decision.needed is not None) == (verdict == "undecided")
    assert intervals["S4"] == (None, "0 inputs (× 0 seeds): a paired interval needs two or more")  # no Levin records


def test_kerneldiff_rows_are_paired_by_case_name_not_by_position():
    rows = [{"method": "Kernel-Diff, guided", "cases": ["a", "b", "c"], "psnr_per_case": [20.0, 21.0, 22.0],
             "mnc_per_case": [0.8, 0.7, 0.9]},
            {"method": "alternating MAP_{x,k}", "cases": ["c", "b", "a"], "psnr_per_case": [21.0, 20.0, 19.0],
             "mnc_per_case": [0.7, 0.5, 0.6]},
            {"method": "Kernel-Diff, unguided", "cases": ["a", "b", "c"], "psnr_per_case": [20.0, 21.0, 22.0]}]
    figure5 = {"images": [{"case": "img7", "kernel_diff": [[1.0, 0.01], [1.0, 0.011], [1.0, 0.009]],
                           "alternating": [[1.0, 0.1], [1.0, 0.12], [1.0, 0.09]]}]}
    intervals = claims.kerneldiff_intervals(SimpleNamespace(table=rows, figure5=figure5))
    assert intervals["K1"][0].estimate == pytest.approx(1.0) and intervals["K1"][0].sd == 0  # +1 dB on every image
    assert intervals["K2"][0].estimate == pytest.approx(0.2) and intervals["K2"][0].sd == pytest.approx(0, abs=1e-12)
    assert claims.decide(claims.claim("K4"), intervals["K4"][0]).verdict == "reproduced"  # a tenth of the residual
    assert intervals["K4"][1] == "3 and 3 trials on the image img7"


def test_a_bar_inside_a_claim_does_not_split_its_table_row():
    line = claims.markdown(claims.decide_all(_intervals())).splitlines()[3]  # T2: "log p(σ | y) has ..."
    assert "p(σ \\| y)" in line
    assert len(line.replace("\\|", "").split("|")) == 9  # seven cells between eight bars


def test_every_claim_links_to_a_heading_of_its_chapter():
    # the id docutils gives a section is make_id of its title; a renamed heading breaks the link
    from docutils.nodes import make_id

    for c in claims.REGISTER:
        chapter, anchor, _ = c.evidence
        source = (Path(__file__).resolve().parents[1] / "notebooks" / f"{chapter}.py").read_text()
        headings = {make_id(m.group(1)) for m in re.finditer(r"^# #{1,4} (.+)$", source, flags=re.M)}
        assert anchor in headings, f"claim {c.id}: no heading of notebooks/{chapter}.py has the id {anchor!r}"
