"""Compare two trees of executed chapters cell by cell and list every number that changed.

    python scripts/compare_notebooks.py OLD NEW [--report FILE] [--ignore REGEX ...] [--no-figures]

OLD and NEW are folders of executed notebooks, e.g. ``results/quick/notebooks/`` of two clones, or
``notebooks/`` (the stored smoke outputs, which keep no figures: ``--no-figures``) and
``results/smoke/notebooks/``. Notebooks are paired by file name and code cells by position, leaving
out the parameters cell that papermill injects. For each code cell the script reads
what a reader sees: glued values (by glue name), printed text, tables and Markdown; progress
bars (stderr) are left out, and so are lines that match any ``--ignore`` pattern (wall times,
say). Figures are compared by their bytes and counted. The report (Markdown, on stdout and in
``--report``) lists, per changed cell, each changed glue value (old → new) and each changed
output line (old as −, new as +). The exit status is 0 when nothing but ignored lines differs, 1 otherwise.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import re
import sys
from pathlib import Path

TEXT_TYPES = ("text/markdown", "text/plain", "text/latex")


def cell_view(cell: dict, ignore: list[re.Pattern]) -> dict:
    """What a reader sees of one code cell: ``glue`` (name → text), ``lines`` and ``figures`` (hashes)."""
    glue, lines, figures = {}, [], []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            if output.get("name") == "stdout":
                lines += "".join(output.get("text", "")).splitlines()
            continue
        scrapbook = output.get("metadata", {}).get("scrapbook", {})
        name, prefix = scrapbook.get("name"), scrapbook.get("mime_prefix", "")
        # glued values are stored under prefixed MIME types (myst-nb: application/papermill.record/)
        data = {key.removeprefix(prefix): value for key, value in output.get("data", {}).items()}
        text = next(("".join(data[t]) for t in TEXT_TYPES if t in data), None)
        if name is not None:
            glue[name] = text
        elif text is not None:
            lines += text.splitlines()
        figures += [hashlib.sha256("".join(data[t]).encode()).hexdigest() for t in data if t.startswith("image/")]
    lines = [line for line in lines if not any(p.search(line) for p in ignore)]
    glue = {k: v for k, v in glue.items() if v is None or not any(p.search(v) for p in ignore)}
    return {"glue": glue, "lines": lines, "figures": figures}


def compare_cells(old: dict, new: dict, figures: bool = True) -> list[str]:
    """Report lines for one pair of cell views; empty when they agree."""
    out = []
    for name in sorted(old["glue"].keys() | new["glue"].keys()):
        a, b = old["glue"].get(name), new["glue"].get(name)
        if a != b:
            out.append(f"- glue `{name}`: {a!r} → {b!r}")
    for line in difflib.unified_diff(old["lines"], new["lines"], lineterm="", n=0):
        if line.startswith(("---", "+++", "@@")):
            continue
        out.append(f"  {line}")
    changed = sum(a != b for a, b in zip(old["figures"], new["figures"])) + abs(len(old["figures"]) - len(new["figures"]))
    if changed and figures:
        out.append(f"- {changed} figure(s) changed")
    return out


def _code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"]
            if c["cell_type"] == "code" and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def compare_trees(old_dir: Path, new_dir: Path, ignore: list[re.Pattern], figures: bool = True) -> tuple[list[str], int]:
    """The report and the number of cells (or notebooks) that differ."""
    report, differing = [], 0
    names = sorted({p.name for p in old_dir.glob("*.ipynb")} | {p.name for p in new_dir.glob("*.ipynb")})
    if not names:
        raise SystemExit(f"compare_notebooks: no executed notebooks (*.ipynb) in {old_dir} or {new_dir}")
    for name in names:
        paths = old_dir / name, new_dir / name
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            report.append(f"## {name}\n\nmissing: {', '.join(missing)}\n")
            differing += 1
            continue
        old_cells, new_cells = (_code_cells(p) for p in paths)
        section = []
        if len(old_cells) != len(new_cells):
            section.append(f"- {len(old_cells)} code cells → {len(new_cells)}; cells paired by position up to the shorter")
        for i, (a, b) in enumerate(zip(old_cells, new_cells)):
            lines = compare_cells(cell_view(a, ignore), cell_view(b, ignore), figures)
            if lines:
                source = "" if a["source"] == b["source"] else " (its source changed)"
                section += [f"### code cell {i}{source}", *lines]
        differing += bool(section)
        report.append(f"## {name}\n\n" + ("\n".join(section) if section else "identical") + "\n")
    return report, differing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--report", type=Path, help="also write the report to this file")
    parser.add_argument("--ignore", action="append", default=[], metavar="REGEX",
                        help="leave out output lines (and glued values) that match; repeatable")
    parser.add_argument("--no-figures", action="store_true", help="do not compare figures")
    args = parser.parse_args(argv)
    for folder in (args.old, args.new):
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder")
    try:
        ignore = [re.compile(p) for p in args.ignore]
    except re.error as err:
        parser.error(f"--ignore: {err}")
    report, differing = compare_trees(args.old, args.new, ignore, figures=not args.no_figures)
    text = f"# {args.old} → {args.new}\n\n" + "\n".join(report) + f"\n{differing} notebook(s) differ\n"
    print(text)
    if args.report:
        args.report.write_text(text)
    return int(differing > 0)


if __name__ == "__main__":
    sys.exit(main())
