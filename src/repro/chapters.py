"""Execute the book's chapters with papermill and stage them for Jupyter Book.

Each chapter is a jupytext percent script ``notebooks/<name>.py`` (the source of truth) whose first
code cell, tagged ``parameters``, defines ``profile``. ``execute`` runs it with papermill for one
profile and keeps the executed notebook in ``results/<profile>/notebooks/<name>.ipynb`` together
with a small JSON record (run time, machine, date); ``stage`` copies the executed notebooks of one
profile into ``book/chapters/`` with a closing note saying how and where they ran, so the book can
be rebuilt without executing anything. Staging named chapters also stages the rest of the book:
each other chapter's executed notebook of that profile, or a page saying how to execute it
(:func:`stage_placeholder`), so that the book of a chapter subset builds::

    python -m repro.chapters execute --profile quick toy1d
    python -m repro.chapters stage --profile quick toy1d

``bench`` runs the speed benchmarks of ``benchmarks/`` (:data:`BENCHMARKS`), whose records in
``results/bench/`` the book's Performance page shows; ``make reproduce`` runs them after the
chapters when it executes the whole book (:func:`benchmarks_follow`)::

    python -m repro.chapters bench
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat

from ._io import atomic_path, load_json, save_json
from .store import check_profile, results_root
from .timing import machine_description

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
BOOK_CHAPTERS = REPO / "book" / "chapters"

CHAPTERS = (
    "toy1d",
    "d3_regularisers",
    "d3_collapse",
    "d3_evaluation",
    "selfdeblur_failure_modes",
    "selfdeblur_evaluation",
    "selfdeblur_notes",
    "kerneldiff_sampling",
    "kerneldiff_evaluation",
    "kerneldiff_notes",
    "benchmark",
    "claims",
)
"""Chapters in the order they execute; each is ``notebooks/<name>.py``. ``claims`` (the ledger,
"What reproduces") comes first in the book but executes last: it reads every other chapter's
results."""

PARTS = (
    ("1D toy", ("toy1d",), 5),
    ("D3 / NSD-DIL", ("d3_regularisers", "d3_collapse", "d3_evaluation"), 10),
    ("SelfDeblur", ("selfdeblur_failure_modes", "selfdeblur_evaluation", "selfdeblur_notes"), 25),
    ("Kernel-Diff", ("kerneldiff_sampling", "kerneldiff_evaluation", "kerneldiff_notes"), 43),
    ("Benchmark", ("benchmark",), 5),
    ("What reproduces", ("claims",), 2),
)
"""The book's parts: (title, chapters, minutes the quick profile may take on a 2-core laptop).
The budgets add up to the 90 minutes of the whole quick book."""

BENCHMARKS = ("bench_ops.py", "bench_dil.py", "bench_selfdeblur.py", "bench_kerneldiff.py")
"""The scripts of ``benchmarks/`` that ``make bench`` runs, in this order (about 4 minutes on a
2-core machine); each records its figures in ``results/bench/<benchmark>.json``."""

CPU_AFFORDABLE_AT_PAPER = ("toy1d", "d3_regularisers", "d3_collapse", "d3_evaluation", "selfdeblur_notes",
                           "kerneldiff_notes")
"""Chapters whose ``paper`` profile a CPU runs in reasonable time (the Notes pages only read the
committed study outputs, :mod:`repro.studies`). The others train or run, at the
papers' sizes, for days to years on a CPU (``scripts/step_times.py --profile paper --device cpu``
times them; book/reproduce.md), so :func:`check_device` refuses them there."""

CELL_TIMEOUT_S = {"smoke": 900, "quick": 3600, "paper": None}
"""Per-cell time limit by profile: a cell that hangs fails the run instead of blocking it forever."""


def _check_names(names) -> list[str]:
    names = list(names) or list(CHAPTERS)
    unknown = [n for n in names if n not in CHAPTERS]
    if unknown:
        raise ValueError(f"unknown chapter(s) {unknown}; known: {list(CHAPTERS)}")
    return names


def check_device(profile: str, names, allow_cpu: bool = False, cuda_available: bool | None = None) -> None:
    """ValueError before anything runs when the ``paper`` profile is asked of chapters that need a
    GPU (not in :data:`CPU_AFFORDABLE_AT_PAPER`) on a machine without CUDA, unless ``allow_cpu``;
    the message names those chapters and what to do instead. ``cuda_available``: None asks torch."""
    if check_profile(profile) != "paper" or allow_cpu:
        return
    heavy = [n for n in _check_names(names) if n not in CPU_AFFORDABLE_AT_PAPER]
    if not heavy:
        return
    if cuda_available is None:
        import torch  # here: `repro reproduce --help` must not wait for torch

        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        raise ValueError(
            f"the paper profile of {heavy} needs a CUDA GPU, and this machine has none: on a CPU it would "
            f"train or run for days to years (book/reproduce.md). Run it on a GPU machine, execute only "
            f"{list(CPU_AFFORDABLE_AT_PAPER)} here (make reproduce PROFILE=paper CHAPTERS=\"...\"), or start "
            f"anyway with --allow-cpu (repro reproduce --profile paper --allow-cpu)")


def source_commit() -> str:
    """The commit of this checkout (12 hex digits), with ``+changes`` when tracked files differ from
    it (results are not tracked), or ``unknown`` outside a git checkout: what a run record names."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if changed else "")


def executed_path(name: str, profile: str) -> Path:
    return results_root() / check_profile(profile) / "notebooks" / f"{name}.ipynb"


def execute(name: str, profile: str, progress: bool = True) -> Path:
    """Run ``notebooks/<name>.py`` with papermill under ``profile``; return the executed notebook.

    The output is written atomically: an interrupted or failed run leaves the previous result
    in place (papermill's partial notebook is discarded).
    """
    import papermill  # here: a slow import that only execution needs

    check_profile(profile)
    source = NOTEBOOKS / f"{name}.py"
    if not source.exists():
        raise ValueError(f"chapter source {source} does not exist")
    out = executed_path(name, profile)
    out.parent.mkdir(parents=True, exist_ok=True)
    stored, commit = _stored_results(profile), source_commit()  # the commit before the run, as it started
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp_in = Path(tmp_dir) / f"{name}.ipynb"
        nbformat.write(jupytext.read(source), tmp_in)
        start = time.perf_counter()
        with atomic_path(out) as tmp_out:
            papermill.execute_notebook(
                str(tmp_in), str(tmp_out), parameters={"profile": profile}, cwd=str(NOTEBOOKS),
                kernel_name="python3", progress_bar=progress, execution_timeout=CELL_TIMEOUT_S[profile],
            )
        seconds = time.perf_counter() - start
    record = {"chapter": name, "profile": profile, "seconds": round(seconds, 1), "machine": machine_description(),
              "commit": commit, "date": _dt.datetime.now().isoformat(timespec="seconds")}
    # A re-run that only reads the models and runs cached in results/<profile>/ takes a fraction of
    # the run that computed them: keep that run on record too, so the page can say what computing
    # costs. An execution computed if it wrote a result (or if none is on record yet).
    previous = out.with_suffix(".json")
    computed = load_json(previous).get("computed") if previous.exists() else None
    if computed is None or _stored_results(profile) != stored:
        computed = {key: record[key] for key in ("seconds", "machine", "commit", "date")}
    save_json({**record, "computed": computed}, previous)
    return out


def benchmarks_follow(profile: str, names) -> bool:
    """Whether ``make reproduce`` (and ``repro reproduce``) runs the benchmarks after executing
    the chapters: when it executes the whole book (no chapter named) with a profile other than
    smoke, whose purpose is a check in seconds, not measurements. ``make reproduce`` is
    ``repro reproduce`` (``repro.cli``), which applies this rule."""
    return not list(names) and check_profile(profile) != "smoke"


def run_benchmarks(scripts=BENCHMARKS) -> int:
    """Run ``benchmarks/<script>`` for each of ``scripts`` in turn with this Python, from the
    repository root; stop at the first that fails and return its exit status (0 when all pass)."""
    for script in scripts:
        path = REPO / "benchmarks" / script
        if not path.exists():
            raise FileNotFoundError(f"benchmark script {path} does not exist")
        print(f"running benchmarks/{script} ...", flush=True)
        code = subprocess.call([sys.executable, str(path)], cwd=REPO)
        if code:
            print(f"error: benchmarks/{script} failed with exit status {code}", file=sys.stderr)
            return code
    return 0


def _computing_run(record: dict) -> dict:
    """The execution of a chapter record that computed its results (:func:`execute`); a record
    without one is its own."""
    return record.get("computed", record)


def _stored_results(profile: str) -> dict[str, str]:
    """Every result file of ``profile`` (not the executed notebooks) → the SHA-256 of its bytes (so
    that a result rewritten unchanged does not count as computed)."""
    root = results_root() / profile
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] != "notebooks"}


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s"


def _tag_for_the_book(cell) -> None:
    """In the rendered book the prose and the figures come first: every code cell is collapsed
    (``hide-input``: one click shows the code; the notebooks in ``notebooks/`` are the same code),
    and the notebook's default ``parameters`` cell is removed, since papermill's
    ``injected-parameters`` cell after it holds the profile the page was executed with."""
    if cell.cell_type != "code":
        return
    tags = list(cell.metadata.get("tags", []))
    extra = "remove-cell" if "parameters" in tags else "hide-input"
    if extra not in tags:
        cell.metadata["tags"] = tags + [extra]


def stage(name: str, profile: str) -> Path:
    """Copy the executed ``name`` of ``profile`` into ``book/chapters/`` with a provenance note,
    its code cells tagged for the book (:func:`_tag_for_the_book`)."""
    src = executed_path(name, profile)
    if not src.exists():
        raise FileNotFoundError(
            f"{src} does not exist: execute the chapter first with "
            f"`python -m repro.chapters execute --profile {profile} {name}` (or `make reproduce PROFILE={profile}`)"
        )
    record = load_json(src.with_suffix(".json"))
    computed = _computing_run(record)
    reused = "" if computed["date"] == record["date"] else (
        f" That execution reused the models and runs already stored in `results/{record['profile']}/`; the "
        f"execution that computed them took {_duration(computed['seconds'])} ({computed['date']}).")
    return _write_staged(name, src, f"This page was executed with profile **{record['profile']}** in "
                         f"{_duration(record['seconds'])} on {record['machine']} ({record['date']}, commit "
                         f"{record.get('commit', 'not recorded')}).{reused}")


def stage_stored(name: str) -> Path:
    """Stage the smoke outputs stored in ``notebooks/<name>.ipynb`` (written by ``make
    notebooks-refresh``, compared by nbval in ``make test``) instead of an execution: a book of
    every chapter built without executing them, as the rendered-book test builds it."""
    src = NOTEBOOKS / f"{_check_names([name])[0]}.ipynb"
    return _write_staged(name, src, "This page shows the **smoke** outputs stored with the notebook "
                         "(`make notebooks-refresh` writes them; `make test` checks them with nbval).")


def _write_staged(name: str, src: Path, note: str) -> Path:
    notebook = nbformat.read(src, as_version=4)
    for cell in notebook.cells:
        _tag_for_the_book(cell)
    notebook.cells.append(nbformat.v4.new_markdown_cell(f"```{{note}}\n{note}\n```"))
    dest = BOOK_CHAPTERS / f"{name}.ipynb"
    with atomic_path(dest) as tmp:
        nbformat.write(notebook, tmp)
    (BOOK_CHAPTERS / f"{name}.md").unlink(missing_ok=True)  # a placeholder page would be a second source
    return dest


def chapter_title(name: str) -> str:
    """The title of chapter ``name``: the first heading of ``notebooks/<name>.py``."""
    lines = (NOTEBOOKS / f"{_check_names([name])[0]}.py").read_text().splitlines()
    return next(line[4:] for line in lines if line.startswith("# # "))


def stage_placeholder(name: str, profile: str) -> Path:
    """A page for chapter ``name`` that was not executed with ``profile`` on this checkout,
    saying how to execute it, in place of any page staged before (which may hold another
    profile's results): so that the book of a chapter subset still builds, and shows only
    ``profile``'s results."""
    dest = BOOK_CHAPTERS / f"{name}.md"
    with atomic_path(dest) as tmp:
        tmp.write_text(
            f"# {chapter_title(name)}\n\n```{{warning}}\nThis chapter has not been executed with profile "
            f"**{profile}** on this checkout. `make reproduce PROFILE={profile} CHAPTERS={name}` executes it "
            f"and rebuilds the book.\n```\n")
    (BOOK_CHAPTERS / f"{name}.ipynb").unlink(missing_ok=True)
    return dest


PERFORMANCE_INTRO = """# Performance

What the chapters took to execute comes first, from the records that `make reproduce` leaves.
Beyond that, speed is measured by the benchmark scripts of `benchmarks/` (`make bench`, which
`make reproduce` runs after the chapters when it executes the whole book), never by timed
assertions in the tests. Each figure is a ratio against a reference measured in the same run (the
reference is named in each row), or a time where no reference applies. The machine is stated per
benchmark; on a shared machine read every figure as approximate.
"""


def _within(seconds: float, minutes: float) -> str:
    return "yes" if seconds <= 60 * minutes else "**no**"


def chapter_times(profile: str) -> list[str]:
    """The Performance page's table of what each part of the book took to execute with
    ``profile``: per chapter the last execution that computed its results (not a re-run that
    read them from the cache; :func:`execute`), summed per part (:data:`PARTS`), against the
    part's budget where ``profile`` is quick."""
    quick = profile == "quick"
    lines = [f"## Chapter run times (profile `{profile}`)", "",
             "Per chapter, the last execution that computed its results (not a re-run that read them from "
             f"`results/{profile}/`), summed per part of the book. The budgets are the quick profile's, for a "
             "2-core laptop; creating the virtual environment and building the book add a few minutes to "
             "`make reproduce`.", "",
             "| part | chapters | minutes | budget (min) | within | machine | commit | date |",
             "|---|---|---|---|---|---|---|---|"]
    total, missing = 0.0, []
    for title, names, budget in PARTS:
        paths = [executed_path(name, profile).with_suffix(".json") for name in names]
        missing += [name for name, path in zip(names, paths) if not path.exists()]
        runs = [_computing_run(load_json(path)) for path in paths if path.exists()]
        if len(runs) < len(names):
            continue
        seconds = sum(run["seconds"] for run in runs)
        total += seconds
        machines, commits, dates = ("; ".join(sorted({run.get(key, "not recorded") for run in runs}))
                                    for key in ("machine", "commit", "date"))
        lines.append(f"| {title} | {' + '.join(_duration(run['seconds']) for run in runs)} | {seconds / 60:.1f} | "
                     f"{budget if quick else '—'} | {_within(seconds, budget) if quick else '—'} | {machines} | "
                     f"{commits} | {dates} |")
    budget = sum(minutes for _, _, minutes in PARTS)
    complete = quick and not missing
    lines.append(f"| **all parts** | | **{total / 60:.1f}** | {budget if quick else '—'} | "
                 f"{_within(total, budget) if complete else '—'} | | | |")
    if missing:
        lines += ["", f"Not executed with profile `{profile}` on this checkout: {', '.join(missing)}."]
    return lines + [""]


def stage_performance(profile: str = "quick") -> Path:
    """Write ``book/chapters/performance.md``: the chapter run times of ``profile``
    (:func:`chapter_times`) and the records of ``make bench`` (``results/bench/``)."""
    records = sorted((results_root() / "bench").glob("*.json"))
    lines = [PERFORMANCE_INTRO, *chapter_times(profile)]
    if not records:
        lines.append("```{note}\nNo benchmark has been run on this checkout yet: run `make bench`, then `make book`.\n```\n")
    for path in records:
        record = load_json(path)
        lines += [f"## Benchmark `{record['benchmark']}` (`make bench`)", "",
                  f"Measured on {record['machine']} ({record['date']}); {record['conditions']}", "",
                  "| part | measure | measured | target | met |", "|---|---|---|---|---|"]
        for row in record["rows"]:
            met = {True: "yes", False: "**no**", None: "—"}[row["met"]]
            value = f"{row['value']:.3g}" if isinstance(row["value"], (int, float)) else str(row["value"])
            lines.append(f"| {row['part']} | {row['measure']} | {value} | {row['target']} | {met} |")
        lines.append("")
    dest = BOOK_CHAPTERS / "performance.md"
    with atomic_path(dest) as tmp:
        tmp.write_text("\n".join(lines))
    return dest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repro.chapters", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("execute", "stage", "bench"))
    parser.add_argument("names", nargs="*", help=f"chapters (default: all of {list(CHAPTERS)}); none for bench")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="execute the paper profile of GPU chapters even without CUDA (days to years)")
    args = parser.parse_intermixed_args(argv)
    try:
        check_profile(args.profile)
        if args.action == "execute":
            check_device(args.profile, args.names, args.allow_cpu)
        if args.action == "bench":
            if args.names:
                raise ValueError(f"bench runs every benchmark and takes no chapter names, got {args.names}")
            return run_benchmarks()
        for name in _check_names(args.names):
            if args.action == "execute":
                print(f"[{args.profile}] executing {name} ...", flush=True)
                path = execute(name, args.profile)
                print(f"[{args.profile}] {name}: {load_json(path.with_suffix('.json'))['seconds']} s -> {path}")
            else:
                print(f"staged {stage(name, args.profile)}")
        if args.action == "stage":
            for name in [n for n in CHAPTERS if n not in _check_names(args.names)]:
                # the rest of the book: this profile's executed pages, or pages saying how to execute them
                executed = executed_path(name, args.profile).exists()
                print(f"staged {stage(name, args.profile) if executed else stage_placeholder(name, args.profile)}")
            print(f"staged {stage_performance(args.profile)}")
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # papermill's PapermillExecutionError names the failing cell
        if type(err).__name__ != "PapermillExecutionError":
            raise
        print(f"error: a cell failed; the previous result (if any) is kept.\n{err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
