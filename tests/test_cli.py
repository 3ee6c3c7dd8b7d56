"""Tests of the ``repro`` command (repro.cli) and the method registry (repro.methods)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from repro import profiles
from repro import _io, cli, dil, methods
from repro.experiments import benchmark
from repro.data import read_image
from repro.nonblind import wiener
from repro._io import save_checkpoint
from repro.store import Store
from repro.experiments import d3
from repro.experiments import kerneldiff as kdx
from repro.experiments import solver as learned_solver

REPRO = Path(sys.executable).parent / "repro"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with small test images; results (trained weights) looked up under it."""
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "results"))
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(tmp_path / "rgb.png")
    Image.fromarray((rng.random((40, 48)) * 65535).astype(np.uint16)).save(tmp_path / "grey16.png")
    Image.fromarray((rng.random((40, 48, 4)) * 255).astype(np.uint8), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray((rng.random((10, 48)) * 255).astype(np.uint8)).save(tmp_path / "tiny.png")
    (tmp_path / "truncated.png").write_bytes((tmp_path / "rgb.png").read_bytes()[:300])
    (tmp_path / "notes.png").write_text("not an image")
    np.save(tmp_path / "box.npy", np.ones((5, 5)))
    np.save(tmp_path / "negative.npy", -np.ones((3, 3)))
    return tmp_path


def run(*argv):
    return cli.main([str(a) for a in argv])


def outputs(folder: Path, stem: str = "out") -> list[str]:
    """Files named after OUT, and temporary files (``.<stem>.tmp.*``), left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((stem, f".{stem}")))


def place_drk(profile: str, seed: int = 3, step: int | None = None) -> torch.Tensor:
    """A DRK checkpoint where the D3 chapter would write it; returns its DRK."""
    config = d3.variant_configs(profiles.get(profile))["full"]
    model = dil.LinearCNN(seed=seed)
    save_checkpoint({"run": {"config": config.to_dict(), "seed": d3.SEED, "gallery": "test"},
                     "step": config.steps if step is None else step, "model": model.state_dict(),
                     "optimizer": {}, "history": []}, Store.default().folder(profiles.get(profile), "d3") / "dil_full.pt")
    with torch.no_grad():
        return dil.collapse(model).detach()


def place_kerneldiff(profile: str, step: int | None = None) -> None:
    """An untrained ε-network and solver F of ``profile``'s sizes where the Kernel-Diff chapters
    would write them (identity of the profile's run, ``step`` of its steps)."""
    from repro import kerneldiff as kd
    from repro import nonblind

    chosen = profiles.get(profile)
    model = kd.new_model(kdx.unet_config(chosen), seed=1)
    steps = chosen.kerneldiff.train.steps
    save_checkpoint({"run": kdx.profile_run_identity(chosen), "step": steps if step is None else step,
                     "model": model.state_dict(), "ema": model.state_dict(), "optimizer": {}, "history": [],
                     "pending": []}, Store.default().folder(profiles.get(profile), kdx.CHAPTER) / kdx.MODEL_FILE)
    solver = nonblind.LearnedWiener(**chosen.solver.model)
    save_checkpoint({"run": {}, "step": 0, "model": solver.state_dict(), "config": solver.config},
                    learned_solver.solver_path(chosen))


def as_8bit(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1).mul(255).round() / 255


# ------------------------------------------------------------------------------ deblur


def test_drk_uses_the_trained_weights_of_the_profile(workdir, capsys):
    drk = place_drk("smoke")
    assert run("deblur", "--method", "drk", "--profile", "smoke", workdir / "rgb.png", workdir / "out.png") == 0
    image = read_image(workdir / "rgb.png")
    expected = as_8bit(dil.deblur_drk(image, drk))
    got = read_image(workdir / "out.png")
    assert got.shape == image.shape == (3, 40, 48)
    assert (got - expected).abs().max() <= 1 / 255 + 1e-6
    assert outputs(workdir) == ["out.png"]  # no kernel for the DRK, no temporary left
    assert "wrote" in capsys.readouterr().out


def test_drk_missing_or_unfinished_weights_name_the_training_command(workdir, capsys):
    assert run("deblur", "--method", "drk", "--profile", "smoke", workdir / "rgb.png", workdir / "out.png") == 2
    err = capsys.readouterr().err
    assert err.startswith("repro: error: no trained DRK for profile 'smoke'")
    assert "python -m repro.chapters execute --profile smoke d3_collapse" in err and "Traceback" not in err
    place_drk("smoke", step=10)
    assert run("deblur", "--method", "drk", "--profile", "smoke", workdir / "rgb.png", workdir / "out.png") == 2
    assert "only partly trained" in capsys.readouterr().err
    assert outputs(workdir) == []


def test_wiener_blind_and_with_a_known_kernel(workdir):
    assert run("deblur", "--method", "wiener", workdir / "rgb.png", workdir / "out.png") == 0
    assert run("deblur", "--method", "wiener", "--kernel", workdir / "box.npy", "--noise-sigma", "0",
               workdir / "rgb.png", workdir / "known.png") == 0
    image = read_image(workdir / "rgb.png")[None]
    expected = as_8bit(wiener(image, torch.full((5, 5), 1 / 25), d3.wiener_nsr(0.0))[0])
    assert (read_image(workdir / "known.png") - expected).abs().max() <= 1 / 255 + 1e-6
    blind = read_image(workdir / "out.png")
    assert blind.shape == (3, 40, 48) and not torch.equal(blind, read_image(workdir / "known.png"))
    assert outputs(workdir) == ["out.png"]


def test_grey_16_bit_and_alpha_inputs(workdir, capsys):
    assert run("deblur", "--method", "wiener", workdir / "grey16.png", workdir / "out.jpg") == 0
    assert read_image(workdir / "out.jpg").shape == (1, 40, 48)
    assert run("deblur", "--method", "wiener", workdir / "rgba.png", workdir / "alpha.png") == 0
    assert "alpha channel (transparency) is ignored" in capsys.readouterr().err
    assert read_image(workdir / "alpha.png").shape == (3, 40, 48)


def test_selfdeblur_writes_the_estimated_kernel(workdir):
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(workdir / "grey64.png")
    assert run("deblur", "--method", "selfdeblur", "--kernel-size", "5", "--iterations", "2", "--quiet",
               workdir / "grey64.png", workdir / "out.png") == 0
    assert outputs(workdir) == ["out.png", "out_kernel.npy", "out_kernel.png"]
    kernel = np.load(workdir / "out_kernel.npy")
    assert kernel.shape == (5, 5) and kernel.min() >= 0 and kernel.sum() == pytest.approx(1, abs=1e-5)
    picture = np.asarray(Image.open(workdir / "out_kernel.png"))
    assert picture.shape == (5, 5) and picture.max() == 255  # scaled to its maximum
    assert read_image(workdir / "out.png").shape == (1, 64, 64)


def test_kerneldiff_samples_a_kernel_of_the_models_size(workdir, capsys, monkeypatch):
    torch.set_num_threads(1)
    assert run("deblur", "--method", "kerneldiff", "--profile", "smoke", "--quiet", workdir / "rgb.png",
               workdir / "out.png") == 2
    err = capsys.readouterr().err
    assert "no trained Kernel-Diff" in err and "repro train kerneldiff --profile smoke" in err
    assert "repro train solver --profile smoke" in err and outputs(workdir) == []
    place_kerneldiff("smoke", step=3)
    assert run("deblur", "--method", "kerneldiff", "--profile", "smoke", workdir / "rgb.png", workdir / "out.png") == 2
    assert "only partly trained" in capsys.readouterr().err

    place_kerneldiff("smoke")
    image_size, size = methods.kerneldiff_sizes(profiles.get("smoke"))
    assert (image_size, size) == (32, 9)
    assert run("deblur", "--method", "kerneldiff", "--profile", "smoke", "--quiet", "--steps", "5",
               workdir / "rgb.png", workdir / "out.png") == 0
    assert outputs(workdir) == ["out.png", "out_kernel.npy", "out_kernel.png"]
    kernel = np.load(workdir / "out_kernel.npy")
    assert kernel.shape == (size, size) and kernel.min() >= 0 and kernel.sum() == pytest.approx(1, abs=1e-5)
    assert read_image(workdir / "out.png").shape == (3, 40, 48)
    # seeded, grey handled as three equal channels, sizes checked
    grey = read_image(workdir / "grey16.png")[None]
    x1, k1 = methods.deblur("kerneldiff", grey, profile="smoke", seed=2, steps=5, progress=False)
    x2, k2 = methods.deblur("kerneldiff", grey, profile="smoke", seed=2, steps=5, progress=False)
    assert x1.shape == grey.shape and torch.equal(x1, x2) and torch.equal(k1, k2)
    with pytest.raises(ValueError, match="estimates 9x9 kernels only; omit the kernel size or pass 9"):
        methods.deblur("kerneldiff", grey, profile="smoke", kernel_size=7)
    # several samples: the one with the lowest residual is kept
    from repro import kerneldiff as kd

    chosen = []
    real_choose = kd.choose_by_residual
    monkeypatch.setattr(kd, "choose_by_residual", lambda *a: chosen.append(real_choose(*a)) or chosen[-1])
    x3, k3 = methods.deblur("kerneldiff", grey, profile="smoke", seed=2, steps=5, samples=3, progress=False)
    (kernels, index), = chosen
    assert torch.equal(k3, kernels[0]) and x3.shape == grey.shape and 0 <= int(index[0]) < 3
    with pytest.raises(ValueError, match="samples must be a positive int"):
        methods.deblur("kerneldiff", grey, profile="smoke", samples=0)
    small = torch.rand(1, 3, 20, 40, generator=torch.Generator().manual_seed(0))  # extended by reflection to 32
    assert methods.deblur("kerneldiff", small, profile="smoke", steps=2, progress=False)[0].shape == small.shape
    monkeypatch.setattr(methods, "kerneldiff_sizes", lambda profile: (64, 9))
    with pytest.raises(ValueError, match="needs images of more than 32 pixels per side"):
        methods.deblur("kerneldiff", small, profile="smoke")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        methods.deblur("kerneldiff", grey, profile="smoke", steps=0)


@pytest.mark.parametrize("argv, message", [
    (["--method", "wiener", "truncated.png"], "truncated.png is not a readable image"),
    (["--method", "wiener", "notes.png"], "notes.png is not a readable image"),
    (["--method", "wiener", "missing.png"], "missing.png: no such image file"),
    (["--method", "wiener", "tiny.png"], "unsupported image size 48x10"),
    (["--method", "wiener", "--kernel-size", "41", "rgb.png"], "kernel (41x41) must be smaller than the image (48x40)"),
    (["--method", "wiener", "--kernel-size", "4", "rgb.png"], "kernel size must be an odd int"),
    (["--method", "wiener", "--kernel", "negative.npy", "rgb.png"], "non-negative with a positive sum"),
    (["--method", "wiener", "--kernel", "nothing.npy", "rgb.png"], "nothing.npy: no such kernel file"),
    (["--method", "drk", "--kernel", "box.npy", "rgb.png"], "does not take the option(s) ['kernel']"),
    (["--method", "selfdeblur", "rgb.png"], "needs --kernel-size"),
    (["--method", "wiener", "--seed", "-1", "rgb.png"], "seed must be an int >= 0"),
])
def test_bad_input_gives_a_message_and_no_output(workdir, capsys, argv, message):
    *options, source = argv
    options = [workdir / o if o.endswith(".npy") else o for o in options]
    code = run("deblur", *options, workdir / source, workdir / "out.png")
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("repro: error:") and message in err and "Traceback" not in err
    assert outputs(workdir) == []


def test_bad_output_and_device(workdir, capsys):
    assert run("deblur", "--method", "wiener", workdir / "rgb.png", workdir / "out.gif") == 2
    assert "unknown image suffix '.gif'" in capsys.readouterr().err
    assert run("deblur", "--method", "wiener", workdir / "rgb.png", workdir / "rgb.png") == 2
    assert "OUT must differ from IN" in capsys.readouterr().err
    assert run("deblur", "--method", "wiener", workdir / "rgb.png", workdir / "nofolder" / "out.png") == 2
    assert "does not exist" in capsys.readouterr().err
    assert run("deblur", "--method", "nope", workdir / "rgb.png", workdir / "out.png") == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert run("deblur", "--method", "wiener", "--device", "cuda", workdir / "rgb.png", workdir / "out.png") == 2
        assert "no CUDA device is available" in capsys.readouterr().err
    assert outputs(workdir) == []


def test_a_failure_while_writing_leaves_nothing(workdir, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    x_hat, k_hat = torch.rand(1, 3, 20, 20), torch.full((3, 3), 1 / 9)
    with pytest.raises(OSError, match="disk full"):
        cli.write_outputs(workdir / "out.png", x_hat, k_hat)
    assert outputs(workdir) == []
    cli.write_outputs(workdir / "ok.png", x_hat, None)
    assert outputs(workdir, "ok") == ["ok.png"]


def test_console_script_never_shows_a_traceback(workdir):
    done = subprocess.run([str(REPRO), "deblur", "--method", "wiener", str(workdir / "truncated.png"),
                           str(workdir / "out.png")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.startswith("repro: error:")
    assert outputs(workdir) == []


@pytest.mark.parametrize("argv", [["--help"], ["deblur", "--method", "wiener", "truncated.png", "out.png"]])
def test_python_m_repro_is_the_console_script(workdir, argv):
    """``python -m repro`` prints and exits exactly as ``repro`` does, help and errors alike."""
    script, module = (subprocess.run(command + argv, capture_output=True, text=True, timeout=120, cwd=workdir)
                      for command in ([str(REPRO)], [sys.executable, "-m", "repro"]))
    assert module.returncode == script.returncode
    assert (module.stdout, module.stderr) == (script.stdout, script.stderr)
    assert "cannot be directly executed" not in module.stderr
    assert outputs(workdir) == []


# ------------------------------------------------------------------------------ registry


def test_registry_and_its_checks():
    assert list(methods.METHODS) == ["drk", "wiener", "selfdeblur", "kerneldiff"]
    assert methods.METHODS["kerneldiff"].estimates_kernel and not methods.METHODS["kerneldiff"].odd_kernel
    assert methods.METHODS["selfdeblur"].estimates_kernel and methods.METHODS["selfdeblur"].needs_kernel_size

    @methods.register("identity-test", "returns its input")
    def identity(y, *, kernel_size, device, seed, profile, progress, store):
        return y, None

    try:
        y = torch.rand(1, 1, 20, 20)
        x_hat, k_hat = methods.deblur("identity-test", y)
        assert torch.equal(x_hat, y) and k_hat is None
        with pytest.raises(ValueError, match="registered twice"):
            methods.register("identity-test", "again")(identity)
        with pytest.raises(ValueError, match="values must lie in"):
            methods.deblur("identity-test", y + 2)
        with pytest.raises(ValueError, match="one grey or RGB image"):
            methods.deblur("identity-test", torch.rand(1, 2, 20, 20))
        with pytest.raises(ValueError, match="profile must be one of"):
            methods.deblur("identity-test", y, profile="fast")
    finally:
        del methods.METHODS["identity-test"]
    with pytest.raises(ValueError, match="method must be one of"):
        methods.deblur("nope", torch.rand(1, 1, 20, 20))
    with pytest.raises(ValueError, match="variant must be one of"):
        methods.deblur("selfdeblur", torch.rand(1, 1, 40, 40), kernel_size=5, variant="blind")


# ------------------------------------------------------------------------------ reproduce


def test_reproduce_runs_the_makefile_steps(monkeypatch, capsys):
    from repro import chapters

    calls = []
    monkeypatch.setattr(chapters, "main", lambda argv: calls.append(("chapters", *argv)) or 0)
    monkeypatch.setattr(cli.subprocess, "call", lambda argv, cwd: calls.append(tuple(argv[1:])) or 0)
    assert run("reproduce", "--profile", "smoke", "--only", "d3_collapse", "toy1d") == 0
    assert calls == [("chapters", "execute", "--profile", "smoke", "d3_collapse", "toy1d"),
                     ("chapters", "stage", "--profile", "smoke", "d3_collapse", "toy1d"),
                     ("build", "book", "--warningiserror", "--keep-going")]
    calls.clear()
    assert run("reproduce", "--only", "nochapter") == 2
    assert "unknown chapter(s) ['nochapter']" in capsys.readouterr().err and calls == []
    monkeypatch.setattr(chapters, "main", lambda argv: calls.append(argv[0]) or 1)
    assert run("reproduce", "--profile", "smoke") == 1 and calls == ["execute"]  # a failed chapter stops it


def test_reproduce_of_the_whole_book_runs_the_benchmarks(monkeypatch):
    from repro import chapters

    calls = []
    monkeypatch.setattr(chapters, "main", lambda argv: calls.append(tuple(argv)) or 0)
    monkeypatch.setattr(cli.subprocess, "call", lambda argv, cwd: 0)
    assert run("reproduce") == 0
    assert calls == [("execute", "--profile", "quick"), ("bench",), ("stage", "--profile", "quick")]
    calls.clear()
    assert run("reproduce", "--profile", "smoke") == 0  # smoke: a check in seconds, no measurements
    assert calls == [("execute", "--profile", "smoke"), ("stage", "--profile", "smoke")]
    monkeypatch.setattr(chapters, "main", lambda argv: calls.append(argv[0]) or (3 if argv[0] == "bench" else 0))
    calls.clear()
    assert run("reproduce", "--profile", "paper", "--allow-cpu") == 3 and calls == ["execute", "bench"]  # a failed benchmark stops it


def test_reproduce_refuses_the_paper_profile_of_gpu_chapters_without_cuda(monkeypatch, capsys):
    from repro import chapters

    calls = []
    monkeypatch.setattr(chapters, "main", lambda argv: calls.append(tuple(argv)) or 0)
    monkeypatch.setattr(cli.subprocess, "call", lambda argv, cwd: 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert run("reproduce", "--profile", "paper") == 2 and calls == []  # nothing ran
    err = capsys.readouterr().err
    assert "the paper profile of ['selfdeblur_failure_modes'," in err and "needs a CUDA GPU" in err
    assert "--allow-cpu" in err and "d3_evaluation" in err
    assert run("reproduce", "--profile", "paper", "--only", "d3_collapse", "d3_evaluation") == 0  # a CPU runs D3
    assert run("reproduce", "--profile", "paper", "--only", "kerneldiff_sampling", "--allow-cpu") == 0
    assert calls[-2] == ("execute", "--profile", "paper", "--allow-cpu", "kerneldiff_sampling")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    calls.clear()
    assert run("reproduce", "--profile", "paper", "--only", "kerneldiff_sampling") == 0 and len(calls) == 2


def test_train_reads_a_finished_model_and_refuses_a_bad_profile(workdir, capsys):
    """`repro train` is the command the error messages name: on a finished model it reads and reports it."""
    place_kerneldiff("smoke")
    assert run("train", "kerneldiff", "--profile", "smoke", "--device", "cpu") == 0
    out = capsys.readouterr().out
    assert out.startswith("ε_θ (") and "step 60" in out and "diffusion.pt" in out
    assert run("train", "solver", "--profile", "fast") == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def test_data_fetch_checks_each_named_set_and_refuses_an_unknown_one(monkeypatch, capsys):
    from repro import data

    fetched = []
    monkeypatch.setattr(data, "fetch_all", lambda name, progress: fetched.append((name, progress)) or [Path("f")] * 3)
    assert run("data", "fetch", "kodak", "nosuch") == 2 and fetched == []  # names are checked before any download
    assert "dataset must be one of" in capsys.readouterr().err
    assert run("data", "fetch", "kodak", "levin", "--quiet") == 0
    assert fetched == [("kodak", False), ("levin", False)]
    assert capsys.readouterr().out.splitlines()[0].startswith("kodak: 3 files checked in ")
    fetched.clear()
    assert run("data", "fetch") == 0 and [name for name, _ in fetched] == list(data.datasets())


def test_deblur_says_first_when_the_profiles_benchmark_found_the_method_worse_than_its_input(tmp_path, monkeypatch,
                                                                                           capsys):
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "results"))
    records = _io.Entries(tmp_path / "results" / "quick" / "benchmark" / "records.json", benchmark.FORMAT)
    for i, gap in enumerate((-9.0, -8.0, -10.0)):
        for method, psnr in (("blurred input", 25.0), ("Kernel-Diff, guided", 25.0 + gap)):
            records.put(f"{method}/{i}", "k", {"set": "bsd100-motion", "case": f"img{i}", "method": method, "seed": 0,
                                               "psnr": psnr})
    assert run("deblur", "--method", "kerneldiff", tmp_path / "absent.png", tmp_path / "out.png") != 0
    err = capsys.readouterr().err
    warning = "repro: warning: kerneldiff with the quick profile's models did worse than the blurred input"
    assert warning in err and err.index(warning) < err.index("absent.png")  # said before anything runs
