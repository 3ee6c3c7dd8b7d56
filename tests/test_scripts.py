"""The GPU check (``scripts/device_check.sh``) runs where no test runs: on a lent GPU, in one call
that has no time for a second try. Its parts (the scripts, and the benchmark functions it reaches
on CUDA) are run here on the CPU at small sizes, so that one broken by a change in the package
fails here first."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import torch

from repro import kerneldiff, nonblind, profiles, selfdeblur, studies, synth
from repro.experiments import kerneldiff as kdx
from repro.metrics import psnr

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
    rows = _script("gpu_determinism").main(["--device", "cpu", "--iterations", "10", "--out", str(tmp_path / "d.json")])
    assert len(rows) == 5 and all(row["bit_identical"] and row["max_abs_difference"] == 0 for row in rows), rows
    assert json.loads((tmp_path / "d.json").read_text())["rows"] == rows


def test_gpu_determinism_refuses_too_few_iterations(capsys):
    with pytest.raises(SystemExit):
        _script("gpu_determinism").main(["--device", "cpu", "--iterations", "1"])
    assert "--iterations must be at least 2, got 1" in capsys.readouterr().err


def test_step_times_covers_every_long_run_of_the_profile(tmp_path, monkeypatch):
    results = tmp_path / "results"
    monkeypatch.setenv("REPRO_RESULTS", str(results))
    out = tmp_path / "steps.json"
    rows = _script("step_times").main(["--profile", "smoke", "--device", "cpu", "--short", "1", "--long", "3",
                                       "--out", str(out)])
    iterations = selfdeblur.SelfDeblurConfig().scaled(profiles.get("smoke").selfdeblur.iteration_scale).iterations
    assert [row["steps"] for row in rows] == [profiles.get("smoke").d3.steps, profiles.get("smoke").solver.steps,
                                              profiles.get("smoke").kerneldiff.train.steps, iterations, iterations]
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
    model = kerneldiff.new_model(kdx.unet_config(profiles.get("smoke"))).eval()
    solver = nonblind.LearnedWiener(**profiles.get("smoke").solver.model).eval().requires_grad_(False)
    rows = bench.time_steps(model, solver, 32, [4, 2],
                           dataclasses.replace(profiles.get("smoke").kerneldiff, strided_eta=0.5), torch.device("cpu"))
    assert [(row["steps"], row["eta"], row["device"]) for row in rows] == [(4, 0.5, "cpu"), (2, 0.5, "cpu")]
    assert all(row["seconds_per_image"] > 0 and row["ms_per_step"] == pytest.approx(1e3 * row["seconds_per_image"]
                                                                                   / row["steps"]) for row in rows)


def test_kerneldiff_benchmark_checks_the_steps_sweep_of_every_profile_that_has_one(tmp_path, monkeypatch, capsys):
    from repro._io import Entries, load_json
    from repro.store import Store

    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path))
    bench = _script("bench_kerneldiff", "benchmarks")
    assert bench.mnc_checks() == [] and "no steps sweep" in capsys.readouterr().out

    def sweep(profile, full, few):  # per-image MNC of the 1000- and 50-step rows
        rows = [{"steps": steps, "mnc_mean": sum(mnc) / len(mnc), "mnc_per_case": mnc, "seconds_per_kernel": seconds}
                for steps, mnc, seconds in ((1000, full, 20.0), (50, few, 1.0))]
        store(profile, rows)

    def store(profile, rows):  # as the evaluation chapter's steps sweep stores them
        entries = Entries(Store.default().folder(profiles.get(profile), kdx.CHAPTER) / "steps.json", kdx.STEPS_FORMAT)
        for row in rows:
            entries.put(str(row["steps"]), "k", row)

    # smoke's sweep (40, 20 and 10 steps) has no row above 100 steps: no check
    store("smoke", [{"steps": 40, "mnc_mean": 0.3, "mnc_per_case": [0.3, 0.3], "seconds_per_kernel": 1.0}])
    sweep("quick", [0.5, 0.6, 0.4], [0.49, 0.59, 0.41])
    sweep("paper", [0.5, 0.6, 0.4, 0.5], [0.1, 0.2, 0.1, 0.2])
    checks = bench.mnc_checks()
    assert [(c["profile"], c["verdict"]) for c in checks] == [("quick", "met"), ("paper", "not met")]
    bench.record({"cpu": [], "profile": "quick", "threads": 1, "models": "m", "mnc_checks": checks})
    rows = load_json(tmp_path / "bench" / "kerneldiff.json")["rows"]
    assert [(("profile quick" in r["measure"]), ("profile paper" in r["measure"]), r["met"]) for r in rows] == [
        (True, False, True), (False, True, False)]
    assert rows[1]["value"] == pytest.approx(-0.35)


@pytest.mark.cuda  # not skipped without a GPU: it checks tests/conftest.py's fixture
def test_cuda_tests_compare_without_tf32():
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32


def test_other_tests_keep_pytorchs_tf32_defaults():
    assert torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32


def test_kerneldiff_validation_scores_every_sampler_on_the_same_pairs(capsys):
    validation = _script("kerneldiff_validation")
    torch.manual_seed(0)
    model = kerneldiff.KernelUNet(kerneldiff.UNetConfig(image_size=16, kernel_size=5, channels=(4, 8), time_dim=8,
                                                        attention_heads=1)).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(3, 3, 4, 4, generator=g), size=16, mode="bicubic").clamp(0, 1)
    k = kerneldiff.unit_to_kernel(torch.rand(3, 1, 5, 5, generator=g) * 2 - 1)
    y = synth.blur_reflect(x, k)
    settings = dataclasses.replace(profiles.get("smoke").kerneldiff, step_counts=(8, 4, 2), sample_steps=4,
                                   select_steps=2, alternating_iterations=3)
    solver, schedule = kerneldiff.wiener_solver(1e-3), kerneldiff.Schedule(T=8)
    rows = validation.run(model, solver, y, x, k, settings, scale_with_stride=True, schedule=schedule, max_batch=2)
    assert [(r["method"], r["steps"], r["guidance_multiplier"]) for r in rows] == [
        ("blurred input", None, None), ("alternating MAP_{x,k}", 3, None), ("Kernel-Diff, guided", 8, 1.0),
        ("Kernel-Diff, guided", 4, 1.0), ("Kernel-Diff, guided", 4, 2.0), ("Kernel-Diff, guided", 2, 1.0),
        ("Kernel-Diff, guided", 2, 4.0)]
    assert all(r["pairs"] == 3 and len(r["psnr_per_pair"]) == 3 for r in rows)
    assert rows[0]["psnr_per_pair"] == pytest.approx(psnr(y.double(), x.double()).tolist()) and "mnc_mean" not in rows[0]
    assert all(0 < r["mnc_mean"] <= 1 and len(r["mnc_per_pair"]) == 3 for r in rows[1:])
    assert rows[3]["mnc_per_pair"] != rows[4]["mnc_per_pair"]  # the multiplier changes the samples
    again = validation.run(model, solver, y, x, k, settings, scale_with_stride=False, schedule=schedule, max_batch=2)
    assert len(again) == 5 and again[3]["mnc_per_pair"] == rows[3]["mnc_per_pair"]  # seeded
    assert "guidance ×2" in validation.format_row(rows[4]) and "MNC —" in validation.format_row(rows[0])
    differences = validation.paired_differences(rows)
    assert [(d["steps"], d["guidance_multiplier"], d["longest_steps"]) for d in differences] == [
        (8, 1.0, 8), (4, 1.0, 8), (4, 2.0, 8), (2, 1.0, 8), (2, 4.0, 8)]
    d = torch.tensor(rows[3]["mnc_per_pair"], dtype=torch.float64) - torch.tensor(rows[1]["mnc_per_pair"], dtype=torch.float64)
    assert differences[1]["mnc_vs_alternating"] == pytest.approx((d.mean().item(), d.std().item() / 3 ** 0.5))
    assert differences[0]["mnc_vs_longest"] == (0.0, 0.0)
    assert "against alternating: MNC" in validation.format_difference(differences[2])
    chosen = validation.run(model, solver, y, x, k, settings, scale_with_stride=True, schedule=schedule, max_batch=2,
                            step_counts=(4,), guidance_multipliers=(0.5, 1.0, 2.0))
    assert [(r["steps"], r["guidance_multiplier"]) for r in chosen[2:]] == [(4, 0.5), (4, 1.0), (4, 2.0)]  # 2 = T / 4 once
    assert chosen[3]["mnc_per_pair"] == rows[3]["mnc_per_pair"]
    assert len({tuple(r["mnc_per_pair"]) for r in chosen[2:]}) == 3  # each multiplier samples other kernels
    capsys.readouterr()
    shown = validation.run(model, solver, y, x, k, settings, schedule=schedule, max_batch=2, step_counts=(4,),
                           progress=True)
    assert "Kernel-Diff sampling" in capsys.readouterr().err and shown[2]["mnc_per_pair"] == rows[3]["mnc_per_pair"]
    without_official = validation.run(model, solver, y, x, k, settings, schedule=schedule, max_batch=2,
                                      step_counts=(8, 2), guidance_multipliers=(0.5,))
    assert [d["longest_steps"] for d in validation.paired_differences(without_official)] == [8, 8]
    for bad in ((), (0.0,), (-1.0,), (float("nan"),)):
        with pytest.raises(ValueError, match="guidance_multipliers"):
            validation.run(model, solver, y, x, k, settings, schedule=schedule, guidance_multipliers=bad)
    with pytest.raises(SystemExit):
        validation.main(["--pairs", "1"])
    assert "--pairs must be >= 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        validation.main(["--guidance", "0"])
    assert "--guidance multipliers must be positive" in capsys.readouterr().err


def _executed_notebook(path: Path, value: str, printed: str, seconds: str) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    prefix = "application/papermill.record/"  # how myst-nb stores a glued value
    glued = nbformat.v4.new_output("display_data", data={prefix + "text/plain": repr(value)},
                                   metadata={"scrapbook": {"name": "psnr", "mime_prefix": prefix}})
    cells = [nbformat.v4.new_code_cell("glue('psnr', ...)", outputs=[glued]),
             nbformat.v4.new_code_cell("print(...)", outputs=[
                 nbformat.v4.new_output("stream", name="stdout", text=f"{printed}\nran in {seconds} s\n"),
                 nbformat.v4.new_output("stream", name="stderr", text=f"progress {seconds}\n")])]
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter")] + cells
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def test_compare_notebooks_pairs_stored_outputs_with_a_papermill_run(tmp_path):
    """The stored smoke outputs (no figures, no injected cell) against a papermill execution."""
    import nbformat

    compare = _script("compare_notebooks")

    def notebook(path, injected, figure):
        params = nbformat.v4.new_code_cell("profile = 'quick'", metadata={"tags": ["parameters"]})
        data = {"text/plain": "<Figure size 640x480 with 1 Axes>", **({"image/png": "iVBOR"} if figure else {})}
        shown = nbformat.v4.new_code_cell("plot()", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="PSNR 21.47\n"),
            nbformat.v4.new_output("display_data", data=data)])
        injected_cell = nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["injected-parameters"]})
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbformat.v4.new_notebook(cells=[params, *([injected_cell] if injected else []), shown]), path)

    notebook(tmp_path / "stored" / "ch.ipynb", injected=False, figure=False)
    notebook(tmp_path / "run" / "ch.ipynb", injected=True, figure=True)
    assert compare.main([str(tmp_path / "stored"), str(tmp_path / "run"), "--no-figures"]) == 0
    assert compare.main([str(tmp_path / "stored"), str(tmp_path / "run")]) == 1  # the figure is missing


def test_compare_notebooks_names_each_changed_number(tmp_path, capsys):
    compare = _script("compare_notebooks")
    _executed_notebook(tmp_path / "old" / "ch.ipynb", "25.08", "MNC 0.433", "12.5")
    _executed_notebook(tmp_path / "new" / "ch.ipynb", "25.08", "MNC 0.433", "14.1")
    # only the wall time (and the progress bar, never compared) differs: identical when ignored
    assert compare.main([str(tmp_path / "old"), str(tmp_path / "new"), "--ignore", r"^ran in"]) == 0
    assert compare.main([str(tmp_path / "old"), str(tmp_path / "new")]) == 1
    assert "-ran in 12.5 s" in capsys.readouterr().out
    _executed_notebook(tmp_path / "new" / "ch.ipynb", "25.81", "MNC 0.431", "12.5")
    report = tmp_path / "report.md"
    assert compare.main([str(tmp_path / "old"), str(tmp_path / "new"), "--report", str(report)]) == 1
    text = report.read_text()
    assert "## ch.ipynb" in text and "### code cell 0" in text and "glue `psnr`: \"'25.08'\" → \"'25.81'\"" in text
    assert "-MNC 0.433" in text and "+MNC 0.431" in text and "1 notebook(s) differ" in text
    (tmp_path / "new" / "ch.ipynb").unlink()
    assert compare.main([str(tmp_path / "old"), str(tmp_path / "new")]) == 1
    assert "missing:" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        compare.main([str(tmp_path / "absent"), str(tmp_path / "new")])


def test_selfdeblur_probe_runs_its_grid_in_order_and_keeps_the_command(tmp_path):
    out = tmp_path / "probe.json"
    argv = ["--method", "original", "improved", "--size", "60", "--case", "1", "--scale", "0.004",
            "--workers", "2", "--out", str(out)]
    # a subprocess, as a user runs it: its worker processes import the script as __main__
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "selfdeblur_probe.py"), *argv], capture_output=True,
                          text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    rows.sort(key=lambda row: row["method"] != "original")  # printed as they finish
    assert [row["method"] for row in rows] == ["original", "improved"]
    assert all(row["size"] == 60 and row["case"] == "im1_kernel3" and row["threads"] == 1 for row in rows), rows
    study = studies.read("probe", tmp_path)
    assert study.data["runs"] == rows
    assert study.command == "python scripts/selfdeblur_probe.py " + " ".join(argv)


def test_selfdeblur_probe_refuses_a_case_that_does_not_exist(capsys):
    with pytest.raises(SystemExit):
        _script("selfdeblur_probe").main(["--case", "0", "7"])
    assert "--case must be in 0..1, got [0, 7]" in capsys.readouterr().err
