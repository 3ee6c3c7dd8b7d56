"""The GPU check (``scripts/device_check.sh``) runs where no test runs: on a lent GPU, in one call
that has no time for a second try. Its parts (the scripts, and the benchmark functions it reaches
on CUDA) are run here on the CPU at small sizes, so that one broken by a change in the package
fails here first."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import torch

from repro import dil, kerneldiff, nonblind, selfdeblur, selfdeblur_eval

REPO = Path(__file__).resolve().parents[1]


def _script(name: str, folder: str = "scripts"):
    spec = importlib.util.spec_from_file_location(name, REPO / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_device_check_is_valid_bash_and_names_what_exists():
    script = REPO / "scripts" / "device_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    for path in re.findall(r"\b((?:tests|benchmarks|scripts)/\w+\.py)\b", text):
        assert (REPO / path).exists(), f"device_check.sh runs {path}, which does not exist"
    listed = re.search(r"cuda_tests=\((.*?)\)", text, flags=re.S).group(1).split()
    assert listed
    for path in listed:
        assert "@pytest.mark.cuda" in (REPO / path).read_text(), f"{path} has no CUDA test"


def test_gpu_determinism_on_the_cpu_is_bit_identical(tmp_path):
    rows = _script("gpu_determinism").main(["--device", "cpu", "--out", str(tmp_path / "d.json")])
    assert len(rows) == 5 and all(row["bit_identical"] and row["max_abs_difference"] == 0 for row in rows), rows
    assert json.loads((tmp_path / "d.json").read_text())["rows"] == rows


def test_step_times_covers_every_long_run_of_the_profile(tmp_path, monkeypatch):
    results = tmp_path / "results"
    monkeypatch.setenv("REPRO_RESULTS", str(results))
    out = tmp_path / "steps.json"
    rows = _script("step_times").main(["--profile", "smoke", "--device", "cpu", "--short", "1", "--long", "3",
                                       "--out", str(out)])
    iterations = selfdeblur.SelfDeblurConfig().scaled(selfdeblur_eval.get_profile("smoke").iteration_scale).iterations
    assert [row["steps"] for row in rows] == [dil.get_profile("smoke").steps, nonblind.solver_profile("smoke").steps,
                                              kerneldiff.get_profile("smoke").train.steps, iterations, iterations]
    for row in rows:  # a resolved row is consistent; an unresolved one (noise on a tiny model) says so
        if row["seconds_per_step"] is not None:
            assert row["seconds_per_step"] > 0
            assert row["hours_per_run"] == pytest.approx(row["seconds_per_step"] * row["steps"] / 3600)
        else:
            assert row["hours_per_run"] is None
    assert json.loads(out.read_text())["rows"] == rows
    # the runs' results went to temporary folders, and the caller's results folder is restored
    assert not results.exists()
    assert os.environ["REPRO_RESULTS"] == str(results)


def test_step_times_formats_durations_and_refuses_bad_step_counts():
    step_times = _script("step_times")
    assert [step_times.duration(s) for s in (12, 150, 3 * 3600, 5 * 86400)] == ["12 s", "2.5 min", "3.0 h", "5.0 days"]
    with pytest.raises(SystemExit):
        step_times.main(["--short", "3", "--long", "3"])


def test_selfdeblur_restart_benchmark_runs_on_the_cpu():
    bench = _script("bench_selfdeblur", "benchmarks")
    args = argparse.Namespace(cuda_size=32, kernel=5, restarts=2, warmup=1, iterations=2)
    out = bench.bench_restarts(args, "cpu")
    assert (out["device"], out["restarts"], out["size"]) == ("cpu", 2, 32)
    batched, sequential = out["batched_seconds_per_iteration"], out["sequential_seconds_per_iteration"]
    assert batched > 0 and sequential > 0
    assert out["throughput_gain"] == pytest.approx(sequential / batched)
    assert out["meets_3x_target"] == (out["throughput_gain"] >= 3)


def test_kerneldiff_sampling_benchmark_runs_on_the_cpu():
    bench = _script("bench_kerneldiff", "benchmarks")
    model = kerneldiff.new_model(kerneldiff.get_profile("smoke").unet()).eval()
    solver = nonblind.LearnedWiener(**nonblind.solver_profile("smoke").model).eval().requires_grad_(False)
    rows = bench.time_steps(model, solver, 32, [4, 2], 0.5, torch.device("cpu"))
    assert [(row["steps"], row["eta"], row["device"]) for row in rows] == [(4, 0.5, "cpu"), (2, 0.5, "cpu")]
    assert all(row["seconds_per_image"] > 0 and row["ms_per_step"] == pytest.approx(1e3 * row["seconds_per_image"]
                                                                                   / row["steps"]) for row in rows)


@pytest.mark.cuda  # not skipped without a GPU: it checks tests/conftest.py's fixture
def test_cuda_tests_compare_without_tf32():
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32


def test_other_tests_keep_pytorchs_tf32_defaults():
    assert torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
