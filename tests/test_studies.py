"""The committed study outputs: their provenance is kept and checked, and the Notes pages' tables
say what the rows hold."""

import json

import pytest

from repro import studies
from repro.metrics import paired_gap


def test_a_study_keeps_its_command_and_reads_back_the_same_data(tmp_path):
    data = {"runs": [{"size": 64, "isnr": 1.5}]}
    studies.write(tmp_path / "s.json", data, "selfdeblur_probe.py", ["--size", "64", "--set", "lr_kernel=1e-4"])
    study = studies.read("s", tmp_path)
    assert study.data == data and study.name == "s"
    assert study.command == "python scripts/selfdeblur_probe.py --size 64 --set lr_kernel=1e-4"
    assert study.commit and "cores" in study.machine and study.date[:2] == "20"
    assert study.command in studies.describe(study) and "scripts/outputs/s.json" in studies.describe(study)


def test_reading_a_missing_or_foreign_study_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no study output .*absent.json"):
        studies.read("absent", tmp_path)
    (tmp_path / "plain.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="not a study output of format 'repro.study/1'"):
        studies.read("plain", tmp_path)
    (tmp_path / "bare.json").write_text(json.dumps({"format": studies.FORMAT, "data": {}}))
    with pytest.raises(ValueError, match=r"lacks \['command', 'date', 'machine', 'commit'\]"):
        studies.read("bare", tmp_path)


def test_a_study_must_be_a_dict_and_nothing_is_written_otherwise(tmp_path):
    with pytest.raises(ValueError, match="must be a dict, got list"):
        studies.write(tmp_path / "s.json", [1, 2], "x.py", [])
    assert not (tmp_path / "s.json").exists()


def test_markdown_table_refuses_a_row_of_the_wrong_width():
    assert studies.markdown_table(["a", "b"], [["1", "2"]]) == "| a | b |\n|---|---|\n| 1 | 2 |"
    with pytest.raises(ValueError, match="a row has 1 cells for 2 columns"):
        studies.markdown_table(["a", "b"], [["1"]])


def _validation_row(method, steps, multiplier, mnc, psnr):
    row = {"method": method, "steps": steps, "guidance_multiplier": multiplier, "pairs": len(psnr),
           "psnr_mean": sum(psnr) / len(psnr), "psnr_se": 0.1, "psnr_per_pair": psnr, "seconds_per_kernel": 2.0}
    if mnc is not None:
        row |= {"mnc_mean": sum(mnc) / len(mnc), "mnc_se": 0.01, "mnc_per_pair": mnc}
    return row


def test_kerneldiff_validation_tables_show_each_row_and_the_paired_gaps():
    alternating = _validation_row("alternating MAP_{x,k}", 100, None, [0.5, 0.6, 0.7], [20.0, 21.0, 22.0])
    guided = _validation_row("Kernel-Diff, guided", 250, 1.0, [0.6, 0.7, 0.8], [21.0, 22.5, 22.0])
    rows = [_validation_row("blurred input", None, None, None, [19.0, 20.0, 21.0]), alternating, guided]
    difference = {"steps": 250, "guidance_multiplier": 1.0, "longest_steps": 250,
                  "mnc_vs_alternating": paired_gap(guided["mnc_per_pair"], alternating["mnc_per_pair"]),
                  "psnr_vs_alternating": paired_gap(guided["psnr_per_pair"], alternating["psnr_per_pair"]),
                  "mnc_vs_longest": (0.0, 0.0)}
    study = studies.Study("v", "python x", "2026-01-01", "m", "c", {"rows": rows, "differences": [difference]})
    scores, gaps = studies.kerneldiff_validation_tables(study)
    assert scores.splitlines()[2] == "| blurred input |  |  | — | 20.00 ± 0.10 | 2.00 s |"
    assert scores.splitlines()[4] == "| Kernel-Diff, guided | 250 | ×1 | 0.700 ± 0.010 | 21.83 ± 0.10 | 2.00 s |"
    # MNC +0.100 with no spread: ahead; PSNR +0.83 ± 0.44: not resolved
    assert gaps.splitlines()[2] == ("| 250 | ×1 | +0.100 ± 0.000, ahead | +0.83 ± 0.44 dB, not resolved | "
                                    "+0.000 ± 0.000, not resolved (against 250 steps) |")


def test_crop_size_table_orders_runs_and_times_are_averaged_per_size():
    runs = [{"case": c, "size": s, "method": m, "seed": 0, "iterations": 500, "isnr": 1.0, "mnc": 0.5,
             "kernel_support": 9.0, "seconds": t}
            for s, c, m, t in ((92, "b", "original", 30), (64, "a", "improved", 10), (64, "a", "original", 20))]
    study = studies.Study("c", "python x", "2026-01-01", "m", "c", {"runs": runs})
    lines = studies.crop_size_table(study).splitlines()
    assert [line.split(" | ")[:3] for line in lines[2:]] == [["| 64 px", "a", "improved"], ["| 64 px", "a", "original"],
                                                              ["| 92 px", "b", "original"]]
    assert studies.seconds_by_size(study) == {64: 15.0, 92: 30.0}
