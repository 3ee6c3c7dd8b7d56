"""The smoke profile's outputs stored in ``notebooks/*.ipynb``, which nbval compares.

``pytest --nbval notebooks`` (and ``make test``) executes every paired notebook and compares each
cell's printed lines, tables and glued values with the outputs stored in the ``.ipynb``, after the
substitutions of ``notebooks/nbval_sanitize.cfg`` (timings, progress bars). A change that moves a
smoke result therefore fails, naming the cell. :func:`refresh` regenerates the stored outputs after
an intended change (``make notebooks-refresh``).

Both sides run under :func:`environment`: the smoke profile, a fresh results folder (so a cached
result of older code never stands in for a computation), two intra-op CPU threads whatever the
core count, the same x86 code paths whatever the CPU (AVX2 for PyTorch's kernels and oneDNN's
convolutions, MKL's reproducible ``COMPATIBLE`` branch), no GPU (the stored numbers are CPU
numbers) and no progress bars. The code paths matter: another instruction set sums in another
order, and the smoke profile's 20-iteration SelfDeblur runs amplify a last-bit difference into a
different result (the README's "What `make test` checks" says how this was measured). Figures are not
stored: nbval does not compare images, and the book is built from the executed chapters of
``results/<profile>/notebooks/``, not from these files.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from ._io import atomic_path
from .chapters import CELL_TIMEOUT_S, CHAPTERS, NOTEBOOKS

PROFILE = "smoke"
SANITIZE = NOTEBOOKS / "nbval_sanitize.cfg"
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")


def environment(results: str | Path) -> dict[str, str]:
    """The variables under which stored outputs are made and compared (see the module docstring)."""
    return {"REPRO_PROFILE": PROFILE, "REPRO_RESULTS": str(results), "OMP_NUM_THREADS": "2",
            "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE",
            "CUDA_VISIBLE_DEVICES": "", "TQDM_DISABLE": "1"}


def execution_order(names=None) -> list[str]:
    """Chapters in the order nbval executes them (pytest collects files alphabetically), so that a
    refresh sees the same results folder at each notebook as the comparison does."""
    names = CHAPTERS if not names else names
    unknown = [n for n in names if n not in CHAPTERS]
    if unknown:
        raise ValueError(f"unknown chapters {unknown}; choose from {list(CHAPTERS)}")
    return sorted(names)


def clean(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``notebook`` as stored: images removed from its outputs (their ``text/plain`` stays) and no
    per-cell execution timestamps, so that a refresh changes only what nbval compares."""
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            for key in IMAGE_TYPES:
                output.get("data", {}).pop(key, None)
                output.get("metadata", {}).pop(key, None)
    return notebook


def unexecuted_cells(notebook: nbformat.NotebookNode) -> list[int]:
    """Indices of code cells without a stored execution: nbval compares nothing for them."""
    return [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code" and cell.execution_count is None]


def refresh(names=None, progress=print) -> list[Path]:
    """Execute the chapters ``names`` (default: all) from their ``.py`` scripts under
    :func:`environment` and store the outputs in the paired ``.ipynb`` files (each written
    atomically: a failing cell leaves the stored notebook as it was)."""
    written = []
    with tempfile.TemporaryDirectory(prefix="repro-stored-outputs-") as results:
        env = {**os.environ, **environment(results)}
        for name in execution_order(names):
            progress(f"[{PROFILE}] executing {name} ...")
            notebook = jupytext.read(NOTEBOOKS / f"{name}.py")
            client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S[PROFILE], kernel_name="python3",
                                    record_timing=False, resources={"metadata": {"path": str(NOTEBOOKS)}})
            client.execute(env=env)
            target = NOTEBOOKS / f"{name}.ipynb"
            with atomic_path(target) as tmp:
                nbformat.write(clean(notebook), tmp)
            written.append(target)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repro.stored_outputs",
                                     description="Regenerate the smoke outputs stored in notebooks/*.ipynb.")
    parser.add_argument("names", nargs="*", help=f"chapters (default: all of {list(CHAPTERS)})")
    args = parser.parse_args(argv)
    try:
        for path in refresh(args.names):
            print(f"stored {path.relative_to(NOTEBOOKS.parent)}")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except CellExecutionError as err:  # the stored notebook is unchanged
        print(f"error: a cell failed ({err.ename}: {err.evalue}); the stored outputs are kept", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
