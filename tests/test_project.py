"""Project-level checks: pinned versions agree, notebooks are paired, chapters execute."""

import ast
import copy
import json
import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import torch

from repro import chapters, stored_outputs

REPO = Path(__file__).resolve().parents[1]


def _pins(lines):
    return {m.group(1).lower(): m.group(2) for m in (re.match(r"\s*-?\s*([A-Za-z0-9_.\-]+)==(\S+)", l) for l in lines) if m}


def test_environment_yml_pins_equal_requirements():
    requirements = _pins((REPO / "requirements.txt").read_text().splitlines())
    environment = _pins((REPO / "environment.yml").read_text().splitlines())
    assert requirements, "no pins found in requirements.txt"
    assert environment == requirements


def test_installed_versions_match_the_pins():
    from importlib.metadata import version

    for name, pinned in _pins((REPO / "requirements.txt").read_text().splitlines()).items():
        assert version(name).split("+")[0] == pinned, name


@pytest.mark.parametrize("name", chapters.CHAPTERS)
def test_paired_notebook_is_in_sync_with_its_script_outputs_included(name):
    """The ``.ipynb`` has the script's cells and stores the outputs of one complete smoke execution
    (every code cell executed, in order), which nbval compares; images are not stored."""
    script = jupytext.read(REPO / "notebooks" / f"{name}.py")
    paired = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    assert [(c.cell_type, c.source, c.metadata.get("tags")) for c in script.cells] == [
        (c.cell_type, c.source, c.metadata.get("tags")) for c in paired.cells], (
        f"run `jupytext --sync notebooks/{name}.py`, then `make notebooks-refresh CHAPTERS={name}`")
    refresh = f"the stored outputs are incomplete: run `make notebooks-refresh CHAPTERS={name}`"
    assert not stored_outputs.unexecuted_cells(paired), refresh
    counts = [c.execution_count for c in paired.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), refresh
    assert any(c.get("outputs") for c in paired.cells), refresh
    assert stored_outputs.clean(copy.deepcopy(paired)) == paired, "store notebooks through `make notebooks-refresh`"
    first_code = next(c for c in script.cells if c.cell_type == "code")
    assert "parameters" in first_code.metadata.get("tags", []) and "profile" in first_code.source


def _shows(node, showing_functions, in_loop=False) -> list[bool]:
    """For each ``plt.show()`` that ``node`` runs, directly or through a call of one of
    ``showing_functions`` (not inside a function it only defines, such as an Explore section's
    plotting function): whether it runs in a loop."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
        return []
    shows = isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Attribute) and node.func.attr == "show"
         and isinstance(node.func.value, ast.Name) and node.func.value.id == "plt")
        or (isinstance(node.func, ast.Name) and node.func.id in showing_functions))
    loop = in_loop or isinstance(node, (ast.For, ast.While, ast.comprehension))
    return [in_loop] * shows + [f for child in ast.iter_child_nodes(node) for f in _shows(child, showing_functions, loop)]


@pytest.mark.parametrize("name", chapters.CHAPTERS)
def test_every_figure_has_a_caption_of_its_own(name):
    """MyST-NB captions every display output of a cell with the cell's ``mystnb.figure.caption``:
    each cell that shows a figure has one, and shows that one figure (one statement that reaches
    a ``plt.show()``, an if/else at most, no loop) and displays nothing else."""
    showing_functions: set[str] = set()
    for cell in jupytext.read(REPO / "notebooks" / f"{name}.py").cells:
        if cell.cell_type != "code":
            continue
        module = ast.parse(cell.source)
        statements = module.body
        for node in ast.walk(module):
            if isinstance(node, ast.FunctionDef) and any(_shows(s, showing_functions) for s in node.body):
                showing_functions.add(node.name)
        showing = [s for s in statements if _shows(s, showing_functions)]
        caption = cell.metadata.get("mystnb", {}).get("figure", {}).get("caption", "")
        first = cell.source.strip().splitlines()[0]
        if showing:
            assert caption.strip(), f"{name}: the figure of the cell starting `{first}` has no caption"
        if caption:
            assert len(showing) == 1 and not any(_shows(showing[0], showing_functions)), (
                f"{name}: the cell starting `{first}` shows no figure or several under one caption")
            assert "display(" not in cell.source, f"{name}: the cell starting `{first}` displays more than its figure"


def test_papermill_smoke_run_and_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path))
    monkeypatch.setattr(chapters, "BOOK_CHAPTERS", tmp_path / "book")
    out = chapters.execute("toy1d", "smoke", progress=False)
    executed = nbformat.read(out, as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "profile = \"smoke\"" in injected[0].source
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["profile"] == "smoke" and record["seconds"] > 0
    chapters.stage_placeholder("toy1d", "smoke")
    staged = nbformat.read(chapters.stage("toy1d", "smoke"), as_version=4)
    assert "profile **smoke**" in staged.cells[-1].source
    assert not (tmp_path / "book" / "toy1d.md").exists()  # the placeholder page is gone with it
    code = [c for c in staged.cells if c.cell_type == "code"]
    default = [c for c in code if "parameters" in c.metadata["tags"]]
    assert len(default) == 1 and "remove-cell" in default[0].metadata["tags"]  # the injected one says the profile
    assert all("hide-input" in c.metadata["tags"] for c in code if c not in default)
    assert not any({"hide-input", "remove-cell"} & set(c.metadata.get("tags", []))
                   for c in staged.cells if c.cell_type == "markdown")
    assert record["computed"]["seconds"] == record["seconds"] and "computed them" not in staged.cells[-1].source

    # a re-run that writes no result (toy1d stores none) keeps the computing execution on record,
    # and the page names it
    slow = {**record, "seconds": 4000.0, "computed": {**record["computed"], "seconds": 4000.0, "date": "2026-01-02"}}
    out.with_suffix(".json").write_text(json.dumps(slow))
    chapters.execute("toy1d", "smoke", progress=False)
    rerun = json.loads(out.with_suffix(".json").read_text())
    assert rerun["seconds"] < 4000 and rerun["computed"]["seconds"] == 4000.0
    note = nbformat.read(chapters.stage("toy1d", "smoke"), as_version=4).cells[-1].source
    assert "the execution that computed them took 66 min 40 s (2026-01-02)" in note


def test_an_execution_that_writes_a_result_replaces_the_computing_record(tmp_path, monkeypatch):
    """A slower earlier execution (say with other settings) is not kept once a run has computed
    new results; a result rewritten with the same bytes does not count as computing."""
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path))
    result = tmp_path / "smoke" / "toy" / "table.json"
    result.parent.mkdir(parents=True)
    result.write_text("old")
    before = chapters._stored_results("smoke")
    result.write_text("old")
    assert chapters._stored_results("smoke") == before
    result.write_text("new")
    assert chapters._stored_results("smoke") != before
    (tmp_path / "smoke" / "notebooks").mkdir()
    (tmp_path / "smoke" / "notebooks" / "toy1d.json").write_text("{}")  # an execution record is not a result
    assert set(chapters._stored_results("smoke")) == {"toy/table.json"}


def test_chapter_cli_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path))
    assert chapters.main(["execute", "--profile", "smoke", "nope"]) == 2
    assert "unknown chapter" in capsys.readouterr().err
    assert chapters.main(["stage", "--profile", "paper", "toy1d"]) == 2
    assert "execute the chapter first" in capsys.readouterr().err
    assert chapters.main(["stage", "--profile", "fast"]) == 2


def test_the_paper_profile_of_gpu_chapters_is_refused_without_cuda(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path))
    executed = []
    monkeypatch.setattr(chapters, "execute", lambda name, profile: executed.append(name) or tmp_path / "x.ipynb")
    monkeypatch.setattr(chapters, "load_json", lambda path: {"seconds": 1.0})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert chapters.main(["execute", "--profile", "paper", "d3_collapse", "benchmark"]) == 2 and executed == []
    assert "the paper profile of ['benchmark'] needs a CUDA GPU" in capsys.readouterr().err
    assert chapters.main(["execute", "--profile", "paper", "toy1d", "d3_collapse"]) == 0
    assert chapters.main(["execute", "--profile", "paper", "--allow-cpu", "benchmark"]) == 0
    assert chapters.main(["execute", "--profile", "quick", "benchmark"]) == 0
    assert executed == ["toy1d", "d3_collapse", "benchmark", "benchmark"]
    with pytest.raises(ValueError, match="unknown chapter"):
        chapters.check_device("paper", ["nope"], cuda_available=False)
    chapters.check_device("paper", [], cuda_available=True)  # a GPU may run everything
    assert set(chapters.CPU_AFFORDABLE_AT_PAPER) < set(chapters.CHAPTERS)


def test_bench_action_runs_every_benchmark_script_in_order_and_stops_at_a_failure(monkeypatch, capsys):
    assert sorted(chapters.BENCHMARKS) == sorted(p.name for p in (REPO / "benchmarks").glob("bench_*.py"))
    calls = []
    monkeypatch.setattr(chapters.subprocess, "call", lambda argv, cwd: calls.append(Path(argv[1]).name) or 0)
    assert chapters.main(["bench"]) == 0 and calls == list(chapters.BENCHMARKS)
    calls.clear()
    monkeypatch.setattr(chapters.subprocess, "call",
                        lambda argv, cwd: calls.append(Path(argv[1]).name) or (5 if len(calls) == 2 else 0))
    assert chapters.main(["bench"]) == 5 and calls == list(chapters.BENCHMARKS[:2])
    assert f"benchmarks/{chapters.BENCHMARKS[1]} failed with exit status 5" in capsys.readouterr().err
    assert chapters.main(["bench", "toy1d"]) == 2
    assert "takes no chapter names" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="does not exist"):
        chapters.run_benchmarks(("bench_nothing.py",))


@pytest.mark.parametrize("variables, command", [
    ((), "repro reproduce --profile quick"),
    (("PROFILE=paper",), "repro reproduce --profile paper"),
    (("CHAPTERS=toy1d d3_collapse",), "repro reproduce --profile quick --only toy1d d3_collapse"),
    (("PROFILE=smoke", "CHAPTERS=toy1d"), "repro reproduce --profile smoke --only toy1d")])
def test_make_reproduce_is_repro_reproduce(variables, command):
    """`make -n` prints the recipe without running it: `make reproduce` is `repro reproduce` with
    the same profile and chapters, so the two cannot disagree (tests/test_cli.py tests its steps,
    the benchmark rule included)."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    recipe = subprocess.run(["make", "-n", "--no-print-directory", "reproduce", *variables], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
    commands = [line.strip() for line in recipe.splitlines() if "reproduce" in line]  # (install lines aside)
    assert len(commands) == 1 and commands[0].split("/")[-1] == command


def test_staging_a_chapter_subset_stages_the_rest_of_the_book_or_placeholders(tmp_path, monkeypatch, capsys):
    """`make reproduce CHAPTERS=toy1d` on a fresh checkout: the other chapters get pages saying how
    to execute them (so the book builds); an executed chapter's page replaces its placeholder, and
    a placeholder replaces a page staged before with another profile."""
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path))
    book = tmp_path / "book"
    monkeypatch.setattr(chapters, "BOOK_CHAPTERS", book)
    book.mkdir()
    (book / "benchmark.ipynb").write_text("{}")  # staged before, from another profile
    executed = chapters.executed_path("toy1d", "smoke")
    executed.parent.mkdir(parents=True)
    executed.write_text("{}")  # chapters.stage is replaced below: only whether it exists matters here
    real_stage = chapters.stage

    def fake_stage(name, profile):  # the real one's check, then what it does to the folder
        if not chapters.executed_path(name, profile).exists():
            return real_stage(name, profile)
        (book / f"{name}.md").unlink(missing_ok=True)
        return book / f"{name}.ipynb"

    monkeypatch.setattr(chapters, "stage", fake_stage)
    monkeypatch.setattr(chapters, "stage_performance", lambda profile: book / "performance.md")
    assert chapters.main(["stage", "--profile", "smoke", "d3_collapse", "toy1d"]) == 2  # a named chapter must exist
    assert "execute the chapter first" in capsys.readouterr().err
    assert chapters.main(["stage", "--profile", "smoke", "toy1d"]) == 0
    staged = capsys.readouterr().out.split()
    placeholders = sorted(p.stem for p in book.glob("*.md"))
    assert placeholders == sorted(set(chapters.CHAPTERS) - {"toy1d"})
    assert not (book / "benchmark.ipynb").exists() and str(book / "toy1d.ipynb") in staged
    page = (book / "kerneldiff_sampling.md").read_text()
    assert page.startswith("# Kernel-Diff sampling\n")
    assert "`make reproduce PROFILE=smoke CHAPTERS=kerneldiff_sampling`" in page
    with pytest.raises(ValueError, match="unknown chapter"):
        chapters.chapter_title("nope")
