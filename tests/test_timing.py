"""The timing helper: warm-up calls are not timed, the reduction is applied, bad counts refused."""

import pytest

from repro.timing import time_call


def test_time_call_counts_and_reduces():
    calls = []
    seconds = time_call(lambda: calls.append(1), repeats=4, warmup=2, reduce=min)
    assert len(calls) == 6 and 0 <= seconds < 1


@pytest.mark.parametrize("repeats, warmup", [(0, 1), (2, -1)])
def test_time_call_rejects_bad_counts(repeats, warmup):
    with pytest.raises(ValueError, match="repeats"):
        time_call(lambda: None, repeats=repeats, warmup=warmup)


def test_record_targets_feeds_the_performance_page(tmp_path, monkeypatch):
    from repro import chapters, timing

    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path))
    monkeypatch.setattr(chapters, "BOOK_CHAPTERS", tmp_path / "book")
    empty = chapters.stage_performance().read_text()
    assert "No benchmark has been run" in empty
    rows = [{"part": "D3", "measure": "L-CNN / DRK time", "value": 123.4, "target": "≥ 100×", "met": True},
            {"part": "D3", "measure": "DRK / one FFT conv", "value": 1.7, "target": "≤ 1.5×", "met": False}]
    timing.record_targets("bench_x", rows, "1 thread, 1024² RGB")
    page = chapters.stage_performance().read_text()
    assert "| D3 | L-CNN / DRK time | 123 | ≥ 100× | yes |" in page
    assert "| D3 | DRK / one FFT conv | 1.7 | ≤ 1.5× | **no** |" in page
    assert "1 thread, 1024² RGB" in page and "No benchmark" not in page
    with pytest.raises(ValueError, match="exactly the keys"):
        timing.record_targets("bench_x", [{"part": "D3"}], "")
