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
from dataclasses import dataclass
from pathlib import Path

from ._io import load_json, save_json
from .chapters import REPO, source_commit
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
