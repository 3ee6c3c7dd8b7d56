"""The ``repro`` command: deblur your own photographs, and rebuild the book.

    repro deblur --method drk blurred.png restored.png
    repro deblur --method wiener --kernel kernel.npy blurred.jpg restored.png
    repro deblur --method selfdeblur --kernel-size 15 --iterations 500 blurred.png restored.png
    repro reproduce --profile quick --only d3_collapse d3_evaluation
    repro data fetch                      # download and check Levin, Kodak and BSDS500 once

``deblur`` reads a PNG or JPEG (grey or colour, 8 or 16 bits; an alpha channel is dropped, with
a note), runs a method of :mod:`repro.methods` and writes the restored image to OUT (its format
from the suffix: .png, .jpg/.jpeg, .tif/.tiff or .bmp; 8 bits per channel) and, for a method
that estimates the blur kernel, the kernel next to it: ``<OUT stem>_kernel.png`` (scaled so
that its maximum is white) and ``<OUT stem>_kernel.npy`` (the exact values, summing to 1).
Every file is written to a temporary name and moved into place only when all of them are
complete, so a failed or interrupted run leaves no partial output.

``reproduce`` is what ``make reproduce`` runs: execute the chapters (``repro.chapters``), run
the benchmarks when it executes the whole book with a profile other than smoke
(``repro.chapters.benchmarks_follow``), stage the chapters, and build the book with
``jupyter-book build book --warningiserror --keep-going``.

Errors (unreadable file, unsupported size, kernel larger than the image, missing trained
weights, CUDA requested but absent, ...) print ``repro: error: <message>`` on stderr and exit
with status 2 (1 for a failure during a run), never a traceback; ``REPRO_DEBUG=1`` shows one.

The commands import what they need (torch, the methods, papermill) inside their functions, so
that ``repro --help`` and argument errors answer at once instead of after loading torch.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}
"""Output suffixes and the Pillow format each is written in."""


class CLIError(Exception):
    """A problem with the user's input, reported as ``repro: error: ...`` (exit status 2)."""


def _parser() -> argparse.ArgumentParser:
    from .methods import METHODS
    from .store import PROFILES

    parser = argparse.ArgumentParser(prog="repro", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = commands.add_parser("deblur", help="deblur an image file", description=(
        "Deblur a PNG/JPEG image. Methods: " + "; ".join(f"{m.name}: {m.summary}" for m in METHODS.values())))
    d.add_argument("input", metavar="IN", help="the blurred image (PNG, JPEG, ...; grey or colour)")
    d.add_argument("output", metavar="OUT", help=f"the restored image ({', '.join(IMAGE_FORMATS)})")
    d.add_argument("--method", required=True, choices=list(METHODS))
    d.add_argument("--kernel-size", type=int, default=None, metavar="N",
                   help="side of the blur kernel (needed by selfdeblur, odd; wiener's Gaussian guess size; "
                        "kerneldiff: must equal its model's, the default)")
    d.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    d.add_argument("--seed", type=int, default=0, help="seed of stochastic methods (default 0)")
    d.add_argument("--profile", default="quick", choices=list(PROFILES),
                   help="which trained weights / iteration budget to use (default quick)")
    d.add_argument("--iterations", type=int, default=None, metavar="N",
                   help="selfdeblur: iterations on the finest scale (default: the profile's)")
    d.add_argument("--variant", default=None, choices=("original", "improved"),
                   help="selfdeblur: the original loop or Kotera et al.'s improved one (default improved)")
    d.add_argument("--steps", type=int, default=None, metavar="N",
                   help="kerneldiff: number of (strided) reverse diffusion steps (default: the profile's)")
    d.add_argument("--samples", type=int, default=None, metavar="N",
                   help="kerneldiff: draw N kernels and keep the one that best explains the image (lowest "
                        "reblurring residual; default 1, the paper's sampler)")
    d.add_argument("--kernel", default=None, metavar="PATH",
                   help="wiener: a known kernel (.npy, or an image), instead of the blind Gaussian guess")
    d.add_argument("--noise-sigma", type=float, default=None, metavar="S",
                   help="wiener: assumed noise standard deviation in [0, 1] units (default 0.01)")
    d.add_argument("--quiet", action="store_true", help="no progress bars")

    t = commands.add_parser("train", help="train (or resume, or read) a Kernel-Diff model of a profile", description=(
        "Train the model a profile's Kernel-Diff chapters use, resuming an interrupted run and reading a "
        "finished one: the learned non-blind solver F, or the ε-network (which needs F only for sampling). "
        "Under torchrun the ε-network trains data-parallel across its processes, each on its share of every "
        "global batch (`torchrun --standalone --nproc_per_node 2 -m repro train kerneldiff`); only rank 0 "
        "writes, and an interrupted run resumes with any number of processes."))
    t.add_argument("model", choices=("solver", "kerneldiff"))
    t.add_argument("--profile", default="quick", choices=list(PROFILES))
    t.add_argument("--device", default=None, choices=("cpu", "cuda"), help="default: CUDA when there is one")
    t.add_argument("--steps", type=int, default=None,
                   help="kerneldiff only: train this many steps instead of the profile's, in a checkpoint of its own")

    g = commands.add_parser("data", help="download and check the data sets (Levin, Kodak, BSDS500)", description=(
        "fetch: download every file of the data sets that is not in the cache yet (or read the mirror named by "
        "REPRO_DATA_MIRROR) and check each file's SHA-256; the chapters and the tests that read real data "
        "then run without a network."))
    g.add_argument("action", choices=("fetch",))
    g.add_argument("datasets", nargs="*", metavar="DATASET", help="levin, kodak, bsds500 (default: all)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")

    r = commands.add_parser("reproduce", help="execute the chapters and build the book (as make reproduce)")
    r.add_argument("--profile", default="quick", choices=list(PROFILES))
    r.add_argument("--only", nargs="+", default=[], metavar="CHAPTER", help="execute and stage only these chapters")
    r.add_argument("--allow-cpu", action="store_true",
                   help="execute the paper profile of chapters that need a GPU even without CUDA (days to years)")
    return parser


# --------------------------------------------------------------------------------------------
# deblur
# --------------------------------------------------------------------------------------------


def _output_format(path: Path) -> str:
    fmt = IMAGE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise CLIError(f"cannot write {path}: unknown image suffix {path.suffix!r}; use one of {list(IMAGE_FORMATS)}")
    if path.exists() and path.is_dir():
        raise CLIError(f"cannot write {path}: it is a directory")
    if not path.parent.exists():
        raise CLIError(f"cannot write {path}: the folder {path.parent} does not exist")
    return fmt


def read_input(path: Path):
    """The image at ``path`` as (1, C, H, W) float32 in [0, 1], and a note for the user (or None)."""
    from PIL import Image

    from .data import DataError, read_image

    try:
        image = read_image(path)
    except DataError as err:
        raise CLIError(str(err)) from None
    note = None
    with contextlib.suppress(OSError, ValueError):
        with Image.open(path) as im:
            if "A" in im.getbands() or "transparency" in im.info:
                note = f"{path}: the alpha channel (transparency) is ignored"
    return image[None], note


def _to_pil(x):
    """(C, H, W) in [0, 1] → an 8-bit grey or RGB Pillow image."""
    import numpy as np
    import torch
    from PIL import Image

    array = x.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    return Image.fromarray(array[0] if array.shape[0] == 1 else np.ascontiguousarray(array.transpose(1, 2, 0)))


def kernel_paths(output: Path) -> tuple[Path, Path]:
    """Where the estimated kernel goes: ``<stem>_kernel.png`` and ``<stem>_kernel.npy`` beside OUT."""
    return output.with_name(f"{output.stem}_kernel.png"), output.with_name(f"{output.stem}_kernel.npy")


def write_outputs(output: Path, x_hat, k_hat) -> list[Path]:
    """Write x̂ (1, C, H, W) to ``output`` and, if given, the kernel beside it, all atomically:
    every file is complete in a temporary name before the first is moved into place."""
    import numpy as np

    from ._io import atomic_path

    fmt = _output_format(output)
    written = [output]
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(output))
        _to_pil(x_hat[0]).save(tmp, format=fmt)
        if k_hat is not None:
            png, npy = kernel_paths(output)
            tmp_png, tmp_npy = stack.enter_context(atomic_path(png)), stack.enter_context(atomic_path(npy))
            _to_pil((k_hat / k_hat.max())[None]).save(tmp_png, format="PNG")
            with open(tmp_npy, "wb") as fh:
                np.save(fh, k_hat.double().numpy())
            written += [png, npy]
    return written


def deblur_command(args) -> int:
    from . import claims, methods

    source, output = Path(args.input), Path(args.output)
    _output_format(output)  # before any work: a wrong suffix should not cost a long run
    if output.resolve() == source.resolve():
        raise CLIError(f"OUT must differ from IN ({source}): the input is never overwritten")
    if args.method == "selfdeblur" and args.kernel_size is None:
        raise CLIError("method 'selfdeblur' needs --kernel-size N (odd: the side of the blur to estimate)")
    methods.check_device(args.device)
    warning = claims.deblur_warning(args.method, args.profile)
    if warning:
        print(f"repro: warning: {warning}", file=sys.stderr)
    image, note = read_input(source)
    if note:
        print(f"repro: note: {note}", file=sys.stderr)
    options = {"iterations": args.iterations, "variant": args.variant, "steps": args.steps, "samples": args.samples,
               "kernel": args.kernel,
               "noise_sigma": args.noise_sigma}
    if args.kernel is not None:
        options["kernel"] = methods.load_kernel(args.kernel)
    x_hat, k_hat = methods.deblur(args.method, image, kernel_size=args.kernel_size, device=args.device,
                                  seed=args.seed, profile=args.profile, progress=not args.quiet, **options)
    for path in write_outputs(output, x_hat, k_hat):
        print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------


def train_command(args) -> int:
    from . import profiles
    from ._checks import count_parameters
    from ._distributed import Shard, process_group
    from .experiments import kerneldiff, solver

    profile = profiles.get(args.profile)
    if args.model == "solver":
        if args.steps is not None:
            raise CLIError("--steps applies to `repro train kerneldiff` only")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise CLIError("the learned solver trains in one process: run `repro train solver` without torchrun")
        model = solver.train_learned_wiener(profile, device=args.device)
        print(f"LearnedWiener ({count_parameters(model):,} parameters) in {solver.solver_path(profile)}")
        return 0
    with process_group(args.device):  # under torchrun: data-parallel across its processes
        run = kerneldiff.trained_model(profile, device=args.device, progress=Shard.current().writes, steps=args.steps)
        if Shard.current().writes:
            print(f"ε_θ ({count_parameters(run.model):,} parameters), step {run.step}, in "
                  f"{kerneldiff.model_path(profile, args.steps)}")
    return 0


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def data_command(args) -> int:
    from . import data
    from ._checks import check_choice

    names = args.datasets or list(data.datasets())
    for name in names:  # every name is checked before the first download
        check_choice(name, "dataset", data.datasets())
    for name in names:
        paths = data.fetch_all(name, progress=not args.quiet)
        where = data.mirror_dir() or data.cache_dir()
        print(f"{name}: {len(paths)} files checked in {where}")
    return 0


# --------------------------------------------------------------------------------------------
# reproduce
# --------------------------------------------------------------------------------------------


def _jupyter_book() -> str:
    beside = Path(sys.executable).parent / "jupyter-book"
    found = str(beside) if beside.exists() else shutil.which("jupyter-book")
    if not found:
        raise CLIError("jupyter-book is not installed in this environment (pip install -r requirements.txt)")
    return found


def reproduce_command(args) -> int:
    from . import chapters

    chapters._check_names(args.only)  # unknown chapter names fail before anything runs
    book = _jupyter_book()
    chapters.check_device(args.profile, args.only, args.allow_cpu)  # the paper profile wants a GPU
    steps = [["execute", "--profile", args.profile, *(["--allow-cpu"] if args.allow_cpu else []), *args.only]]
    if chapters.benchmarks_follow(args.profile, args.only):
        steps.append(["bench"])
    steps.append(["stage", "--profile", args.profile, *args.only])
    for step in steps:
        code = chapters.main(step)
        if code:
            return code
    print("building the book: jupyter-book build book --warningiserror --keep-going", flush=True)
    code = subprocess.call([book, "build", "book", "--warningiserror", "--keep-going"], cwd=chapters.REPO)
    if code == 0:
        print(f"The book: {chapters.REPO / 'book' / '_build' / 'html' / 'index.html'}")
    return code


# --------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    """Entry point of the ``repro`` console script; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has printed "repro: error: ..." (or the help) already
        return int(exit_.code or 0)
    try:
        if args.command == "deblur":
            return deblur_command(args)
        if args.command == "train":
            return train_command(args)
        if args.command == "data":
            return data_command(args)
        return reproduce_command(args)
    except KeyboardInterrupt:
        print("repro: interrupted; nothing was written", file=sys.stderr)
        return 130
    except (CLIError, ValueError, FileNotFoundError) as err:  # bad input: the user can fix it
        if os.environ.get("REPRO_DEBUG"):
            raise
        print(f"repro: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a failure during the run (out of memory, ...): still no traceback
        if os.environ.get("REPRO_DEBUG"):
            raise
        print(f"repro: error: {type(err).__name__}: {err} (set REPRO_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
