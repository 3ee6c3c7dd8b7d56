"""Robustness across the book: killed runs resume exactly, malformed input gets a clear error.

* Kill-and-resume: a long run (DIL training, a resumable evaluation) is started in a separate
  process and killed with SIGKILL in the middle, as a power cut or an out-of-memory kill would;
  the run is then resumed here and must equal an uninterrupted one, with nothing lost or
  computed twice in the stored results.
* Fuzz: every public entry point is fed malformed inputs (wrong ranks, empty, integer, complex
  or half-precision tensors, NaN/Inf, non-tensors, empty and truncated files) and must raise a
  ``ValueError`` (or the data layer's ``DataError``) whose message names the problem; any other
  exception (a torch ``RuntimeError``, an ``IndexError`` from deep inside) is a defect.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from repro import data, dil, kernels, metrics, nonblind, ops, selfdeblur, toy1d
from repro.experiments import evaluation
from repro.experiments import d3

# ------------------------------------------------------------------------------ kill and resume


def _start(script: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when(process: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` is true; fail if it ends or times out first."""
    start = time.monotonic()
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"the run ended before it could be killed:\n{process.stderr.read()[-2000:]}")
        if time.monotonic() - start > timeout:
            process.kill()
            pytest.fail("the run made no progress to kill")
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


DIL_RUN = dict(gallery_size=40, steps=1000, batch_size=8, log_every=10, checkpoint_every=25)


def test_killed_dil_training_resumes_to_the_uninterrupted_result(tmp_path):
    path = tmp_path / "run.pt"
    process = _start(f"""
        from repro import dil
        from repro.kernels import random_kernel_gallery
        dil.train_dil(dil.DILConfig(**{DIL_RUN!r}), seed=1, checkpoint_path={str(path)!r},
                      gallery=random_kernel_gallery(40, 11, seed=3), progress=False)
    """)
    from repro._io import load_checkpoint

    _kill_when(process, lambda: path.exists() and load_checkpoint(path)["step"] >= 100)
    killed_at = load_checkpoint(path)["step"]
    assert 100 <= killed_at < DIL_RUN["steps"], "the kill came after the end of training"
    # A SIGKILL during a save leaves that save's temporary file (its writer cannot remove it), never a
    # half-written run.pt or run.json: what is there under those names loads whole.
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("run.pt", "run.json")]
    assert all(name.startswith(".run.tmp.") for name in leftovers), f"unexpected files: {leftovers}"
    if (tmp_path / "run.json").exists():
        json.loads((tmp_path / "run.json").read_text())

    gallery = kernels.random_kernel_gallery(40, 11, seed=3)
    resumed = dil.train_dil(dil.DILConfig(**DIL_RUN), seed=1, checkpoint_path=path, gallery=gallery, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.pt"]  # the resumed saves swept them
    straight = dil.train_dil(dil.DILConfig(**DIL_RUN), seed=1, gallery=gallery, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(resumed.model.parameters(), straight.model.parameters()))
    assert resumed.history == straight.history  # no log entry lost or repeated
    steps = [entry["step"] for entry in resumed.history]
    assert steps == sorted(set(steps))


EVAL_SCRIPT = """
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    from test_robustness import eval_cases, slow_method
    from repro.experiments import evaluation
    evaluation.evaluate({{"slow": slow_method({log!r}, {delay})}}, eval_cases(), {path!r}, progress=False)
"""


def eval_cases():
    g = torch.Generator().manual_seed(0)
    images = {f"im{i}": torch.rand(1, 24, 24, generator=g, dtype=torch.float64) for i in range(8)}
    return evaluation.build_cases(images, {"g": kernels.gaussian(5, 1.0, dtype=torch.float64)}, blur_mode="circular")


def slow_method(log: str, delay: float):
    def method(y, case):
        time.sleep(delay)
        with open(log, "a") as f:  # one line per computation, flushed at once
            f.write(case.name + "\n")
        return (y * 0.9 + 0.05).clamp(0, 1)

    return method


def test_killed_evaluation_resumes_without_losing_or_repeating_a_case(tmp_path):
    path, log = tmp_path / "scores.json", tmp_path / "calls.log"
    process = _start(EVAL_SCRIPT.format(tests=str(Path(__file__).parent), log=str(log), delay=0.3, path=str(path)))
    _kill_when(process, lambda: path.exists() and len(evaluation.load_results(path)) >= 3)
    saved_before = set(evaluation.load_results(path))
    assert 3 <= len(saved_before) < 8

    evaluation.evaluate({"slow": slow_method(str(log), 0.0)}, eval_cases(), path, progress=False)
    calls = log.read_text().split()
    names = [c.name for c in eval_cases()]
    assert sorted(set(calls)) == sorted(names)  # nothing lost
    assert all(calls.count(n) == 1 for n in saved_before)  # nothing finished was recomputed
    assert len(calls) - len(names) <= 1  # at most the case in flight at the kill ran twice
    stored = json.loads(path.read_text())["entries"]
    straight = tmp_path / "straight.json"
    evaluation.evaluate({"slow": slow_method(str(tmp_path / "other.log"), 0.0)}, eval_cases(), straight, progress=False)
    assert stored == json.loads(straight.read_text())["entries"]


# ------------------------------------------------------------------------------ fuzz

GOOD_IMAGE = torch.rand(1, 1, 20, 20, generator=torch.Generator().manual_seed(0))
GOOD_KERNEL = kernels.gaussian(5, 1.0)


def malformed_tensors(seed: int = 0):
    """Inputs that no image or kernel argument should accept, with a label for the report."""
    rng = np.random.default_rng(seed)
    nan = torch.rand(1, 1, 12, 12)
    nan[0, 0, 3, 4] = float("nan")
    inf = torch.rand(1, 1, 12, 12)
    inf[0, 0, 5, 1] = -float("inf")
    yield "nan", nan
    yield "inf", inf
    yield "int64", torch.ones(1, 1, 12, 12, dtype=torch.int64)
    yield "bool", torch.ones(1, 1, 12, 12, dtype=torch.bool)
    yield "complex", torch.ones(1, 1, 12, 12, dtype=torch.complex64)
    yield "float16", torch.ones(1, 1, 12, 12, dtype=torch.float16)
    yield "empty", torch.ones(1, 1, 0, 12)
    yield "scalar", torch.tensor(0.5)
    yield "six-d", torch.rand(1, 1, 1, 1, 4, 4)
    yield "list", [[0.5, 0.5], [0.5, 0.5]]
    yield "none", None
    yield "string", "image.png"
    for _ in range(4):  # random ranks and sizes, each with a NaN somewhere
        shape = tuple(int(s) for s in rng.integers(1, 6, size=int(rng.integers(1, 6))))
        t = torch.rand(shape)
        t.view(-1)[int(rng.integers(t.numel()))] = float("nan")
        yield f"nan{shape}", t


ENTRY_POINTS = {
    # name: a call taking the malformed value in the place of one image or kernel argument
    "ops.blur(x)": lambda v: ops.blur(v, GOOD_KERNEL),
    "ops.blur(k)": lambda v: ops.blur(GOOD_IMAGE, v),
    "ops.blur_adjoint(y)": lambda v: ops.blur_adjoint(v, GOOD_KERNEL, mode="reflect"),
    "ops.pad(x)": lambda v: ops.pad(v, (2, 2, 2, 2), "symmetric"),
    "nonblind.wiener(y)": lambda v: nonblind.wiener(v, GOOD_KERNEL, 0.01),
    "nonblind.wiener(k)": lambda v: nonblind.wiener(GOOD_IMAGE, v, 0.01),
    "nonblind.tikhonov(k)": lambda v: nonblind.tikhonov(GOOD_IMAGE, v, 0.01),
    "metrics.psnr(x)": lambda v: metrics.psnr(v, GOOD_IMAGE),
    "metrics.ssim(ref)": lambda v: metrics.ssim(GOOD_IMAGE, v),
    "metrics.mnc(k_hat)": lambda v: metrics.mnc(v, GOOD_KERNEL),
    "metrics.compare_up_to_shift(x_hat)": lambda v: metrics.compare_up_to_shift(v, GOOD_IMAGE),
    "kernels.normalize": lambda v: kernels.normalize(v),
    "kernels.recenter": lambda v: kernels.recenter(v),
    "dil.deblur_drk(image)": lambda v: dil.deblur_drk(v, kernels.gaussian(11, 1.0)),
    "dil.deblur_drk(drk)": lambda v: dil.deblur_drk(GOOD_IMAGE, v),
    "dil.unsharp_mask(y)": lambda v: d3.unsharp_mask(v),
    "selfdeblur.run_selfdeblur(y)": lambda v: selfdeblur.run_selfdeblur(
        v, 5, selfdeblur.SelfDeblurConfig(iterations=1), progress=False),
    "toy1d.observe(x)": lambda v: toy1d.observe(v, 1.5),
}


BATCHED_KERNELS = {"kernels.normalize", "kernels.recenter"}  # (..., kh, kw): any leading dimensions are valid


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_malformed_tensors_get_a_clear_error(entry):
    call = ENTRY_POINTS[entry]
    for label, value in malformed_tensors():
        if label == "six-d" and entry in BATCHED_KERNELS:
            continue
        try:
            call(value)
        except ValueError as err:
            assert str(err).strip(), f"{entry} with {label}: empty error message"
        except Exception as err:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{entry} with {label}: {type(err).__name__} instead of a clear ValueError: {err}")
        else:
            pytest.fail(f"{entry} accepted {label}")


def test_unreadable_image_files_get_a_clear_error(tmp_path):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)).save(good)
    cases = {
        "empty.png": b"",
        "truncated.png": good.read_bytes()[: len(good.read_bytes()) // 2],
        "text.jpg": b"this is not an image\n",
        "garbage.png": bytes(np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8)),
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises((ValueError, data.DataError), match=name):
            data.read_image(path)
    with pytest.raises(data.DataError, match="missing.png"):
        data.read_image(tmp_path / "missing.png")
