"""The studies behind a profile's choices: outputs of committed scripts, kept with their provenance.

A study is a script of ``scripts/`` run once with a stated command (the SelfDeblur crop sizes of
``scripts/selfdeblur_probe.py``, the Kernel-Diff sampler settings of
``scripts/kerneldiff_validation.py``). Its ``--out`` file is committed under ``scripts/outputs/``
and holds, beside the script's own rows, the command that wrote it, the date, a description of
the machine and the commit. The book's Notes pages read these files (:func:`read`) and name the
command with every table (:func:`describe`), so a number on those pages always comes from a
committed script's output, never from prose.
"""

from __future__ import annotations

import datetime as _dt
import shlex
import statistics
from dataclasses import dataclass
from pathlib import Path

from ._io import load_json, save_json
from .chapters import REPO, source_commit
from .metrics import describe_gap
from .timing import machine_description

OUTPUTS = REPO / "scripts" / "outputs"
"""Where the committed study outputs live."""

FORMAT = "repro.study/1"
PROVENANCE = ("command", "date", "machine", "commit")


@dataclass(frozen=True)
class Study:
    """One study output: ``name`` (its file's stem), the ``command`` that wrote it, its ``date``,
    ``machine`` and ``commit``, and ``data``, the script's own payload."""

    name: str
    command: str
    date: str
    machine: str
    commit: str
    data: dict


def write(path: str | Path, data: dict, script: str, argv: list[str]) -> Path:
    """Write ``data`` (a JSON-able dict) to ``path`` atomically, with the provenance of this run:
    the command (``python scripts/<script> <argv>``), the date, the machine and the commit."""
    if not isinstance(data, dict):
        raise ValueError(f"a study's data must be a dict, got {type(data).__name__}")
    record = {"format": FORMAT, "command": shlex.join(["python", f"scripts/{script}", *argv]),
              "date": _dt.datetime.now().isoformat(timespec="seconds"), "machine": machine_description(),
              "commit": source_commit(), "data": data}
    save_json(record, path)
    return Path(path)


def read(name: str, folder: str | Path = OUTPUTS) -> Study:
    """The study ``<folder>/<name>.json``; FileNotFoundError naming the file and ValueError for a
    file that is not a study output (no provenance, another format)."""
    path = Path(folder) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no study output {path}: run the command its Notes page names, with --out {path}")
    record = load_json(path)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path} is not a study output of format {FORMAT!r} "
                         f"(found {record.get('format') if isinstance(record, dict) else type(record).__name__!r})")
    missing = [key for key in (*PROVENANCE, "data") if key not in record]
    if missing:
        raise ValueError(f"{path} lacks {missing}: a study output must name its command, date, machine and commit")
    return Study(name, *(record[key] for key in PROVENANCE), record["data"])


def describe(study: Study) -> str:
    """One Markdown sentence that names where a study's numbers come from."""
    return (f"From `scripts/outputs/{study.name}.json`, written by `{study.command}` on {study.date[:10]} "
            f"({study.machine}; commit {study.commit}).")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; ValueError when a row has another number of cells than the header."""
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} cells for {len(header)} columns: {row!r}")
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(row) + " |" for row in rows)])


def _multiplier(value) -> str:
    return "" if value is None else f"×{value:g}"


def kerneldiff_validation_tables(study: Study) -> tuple[str, str]:
    """The two tables of ``scripts/kerneldiff_validation.py``'s output: every row (mean ± standard
    error over the validation pairs), and every guided sampler's paired differences to the
    alternating baseline and to the longest sampler (:func:`repro.metrics.describe_gap`)."""
    rows = [[row["method"], "" if row["steps"] is None else str(row["steps"]), _multiplier(row["guidance_multiplier"]),
             f"{row['mnc_mean']:.3f} ± {row['mnc_se']:.3f}" if "mnc_mean" in row else "—",
             f"{row['psnr_mean']:.2f} ± {row['psnr_se']:.2f}", f"{row['seconds_per_kernel']:.2f} s"]
            for row in study.data["rows"]]
    scores = markdown_table(["method", "steps / iterations", "guidance step", "kernel MNC", "PSNR (dB)",
                             "time per kernel"], rows)
    differences = [[str(d["steps"]), _multiplier(d["guidance_multiplier"]), describe_gap(*d["mnc_vs_alternating"], 3),
                    describe_gap(*d["psnr_vs_alternating"], 2, "dB"),
                    f"{describe_gap(*d['mnc_vs_longest'], 3)} (against {d['longest_steps']} steps)"]
                   for d in study.data["differences"]]
    gaps = markdown_table(["steps", "guidance step", "MNC − alternating", "PSNR − alternating", "MNC − longest sampler"],
                          differences)
    return scores, gaps


def crop_size_table(study: Study) -> str:
    """The runs of ``scripts/selfdeblur_probe.py``'s output, one row each, by crop size, input and method."""
    runs = sorted(study.data["runs"], key=lambda r: (r["size"], r["case"], r["method"], r["seed"]))
    rows = [[f"{r['size']} px", r["case"], r["method"], str(r["seed"]), str(r["iterations"]), f"{r['isnr']:+.2f}",
             f"{r['mnc']:.3f}", f"{r['kernel_support']:.1f}", f"{r['seconds']} s"] for r in runs]
    return markdown_table(["crop", "input", "method", "seed", "iterations", "ISNR (dB)", "kernel MNC",
                           "kernel support", "time"], rows)


def seconds_by_size(study: Study) -> dict[int, float]:
    """Mean seconds per run of ``scripts/selfdeblur_probe.py``'s output at each crop size."""
    sizes = sorted({r["size"] for r in study.data["runs"]})
    return {size: statistics.fmean(r["seconds"] for r in study.data["runs"] if r["size"] == size) for size in sizes}
