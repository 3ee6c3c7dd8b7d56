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


def test_parts_cover_every_chapter_once_and_budgets_make_90_minutes():
    from repro import chapters

    listed = [name for _, names, _ in chapters.PARTS for name in names]
    assert sorted(listed) == sorted(chapters.CHAPTERS) and len(set(listed)) == len(listed)
    assert sum(minutes for _, _, minutes in chapters.PARTS) == 90


def test_chapter_times_sum_the_computing_execution_per_part(tmp_path, monkeypatch):
    from repro import chapters
    from repro._io import save_json

    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path))

    def record(name, seconds, computed):
        save_json({"chapter": name, "profile": "quick", "seconds": seconds, "machine": "m", "date": "d",
                   "commit": "new", "computed": {"seconds": computed, "machine": "m", "date": "c", "commit": name}},
                  chapters.executed_path(name, "quick").with_suffix(".json"))

    record("toy1d", 5.0, 290.0)                       # 4.8 min of a 5-min budget
    record("selfdeblur_failure_modes", 6.0, 900.0)
    record("selfdeblur_evaluation", 7.0, 660.0)
    record("selfdeblur_notes", 1.0, 60.0)            # 15 + 11 + 1 = 27 min of 25
    page = "\n".join(chapters.chapter_times("quick"))
    assert "| 1D toy | 4 min 50 s | 4.8 | 5 | yes | m | toy1d | c |" in page  # the computing run's commit
    assert ("| SelfDeblur | 15 min 0 s + 11 min 0 s + 1 min 0 s | 27.0 | 25 | **no** | m | "
            "selfdeblur_evaluation; selfdeblur_failure_modes; selfdeblur_notes | c |") in page
    assert "| **all parts** | | **31.8** | 90 | — | | | |" in page      # incomplete: no verdict
    assert "D3 / NSD-DIL" not in page and "d3_collapse" in page     # not executed: listed, not summed
    smoke = "\n".join(chapters.chapter_times("smoke"))                 # no budgets outside quick
    assert "| **all parts** | | **0.0** | — | — | | | |" in smoke and "toy1d, d3_regularisers" in smoke


def test_the_vector_extension_is_the_widest_among_the_flags():
    from repro.timing import machine_description, vector_extension

    assert vector_extension(["fpu", "avx", "avx2", "avx512f", "avx512bw"]) == "AVX-512"
    assert vector_extension({"sse4_2", "avx2"}) == "AVX2"
    assert vector_extension(["sse4_2", "avx"]) is None
    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    extension = vector_extension(flags)
    assert (f"({extension})" in machine_description()) == (extension is not None)


def test_a_run_names_its_commit_and_whether_tracked_files_changed(tmp_path, monkeypatch):
    import re
    import subprocess

    from repro import chapters

    assert re.fullmatch(r"[0-9a-f]{12}(\+changes)?", chapters.source_commit())
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.setattr(chapters, "REPO", repo)
    assert chapters.source_commit() == "unknown"  # not a git checkout
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "a.txt").write_text("1")
    subprocess.run(["git", "add", "a.txt"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-qm", "a"], cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    (repo / "untracked.json").write_text("{}")  # results are not tracked: no change
    assert chapters.source_commit() == head
    (repo / "a.txt").write_text("2")
    assert chapters.source_commit() == head + "+changes"
