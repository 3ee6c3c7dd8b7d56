"""The smoke outputs stored in the paired notebooks, and nbval's comparison of them."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from repro import chapters, stored_outputs

REPO = Path(__file__).resolve().parents[1]


def test_environment_fixes_profile_results_threads_device_and_progress(tmp_path):
    env = stored_outputs.environment(tmp_path)
    assert env == {"REPRO_PROFILE": "smoke", "REPRO_RESULTS": str(tmp_path), "OMP_NUM_THREADS": "2",
                   "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE",
                   "CUDA_VISIBLE_DEVICES": "", "TQDM_DISABLE": "1"}


def test_execution_order_is_pytests_and_unknown_chapters_are_refused():
    assert stored_outputs.execution_order() == sorted(chapters.CHAPTERS)
    assert stored_outputs.execution_order(["toy1d", "benchmark"]) == ["benchmark", "toy1d"]
    with pytest.raises(ValueError, match=r"unknown chapters \['toy'\]"):
        stored_outputs.execution_order(["toy"])
    assert stored_outputs.main(["toy"]) == 2


def test_clean_drops_images_and_timestamps_and_keeps_what_nbval_compares():
    cell = nbformat.v4.new_code_cell("plot()", execution_count=1, metadata={"execution": {"iopub.status.busy": "t"}})
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure size 640x480>"},
                               metadata={"image/png": {"width": 300}}),
        nbformat.v4.new_output("display_data", data={"text/plain": "'21.47'"}, metadata={"scrapbook": {"name": "psnr"}}),
        nbformat.v4.new_output("stream", name="stdout", text="PSNR 21.47\n"),
    ]
    notebook = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell("x = 1")])
    cleaned = stored_outputs.clean(notebook)
    figure, glued, printed = cleaned.cells[0].outputs
    assert figure.data == {"text/plain": "<Figure size 640x480>"} and figure.metadata == {}
    assert glued.data == {"text/plain": "'21.47'"} and glued.metadata == {"scrapbook": {"name": "psnr"}}
    assert printed.text == "PSNR 21.47\n" and "execution" not in cleaned.cells[0].metadata
    assert stored_outputs.unexecuted_cells(cleaned) == [1]


def _notebook(path: Path, stored: list[str]) -> None:
    sources = ["import os\nprint(os.environ['REPRO_PROFILE'], os.environ['OMP_NUM_THREADS'], os.environ['TQDM_DISABLE'])",
               "from repro import toy1d\nprint(f\"{toy1d.observe(toy1d.TRUTH, noise_std=0.01, seed=0).sum():.4f}\")"]
    cells = []
    for i, (source, text) in enumerate(zip(sources, stored), start=1):
        cell = nbformat.v4.new_code_cell(source, execution_count=i)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
        cells.append(cell)
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)


def _nbval(folder: Path, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "--nbval", "-p", "no:cacheprovider", str(folder)],
                          cwd=folder, capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_nbval_under_the_notebooks_conftest_fails_on_a_moved_number_naming_the_cell(tmp_path):
    """The stored-outputs comparison end to end: the kernel runs under the stored outputs'
    environment, a matching notebook passes, and one stored number off in its last digit fails."""
    from repro import toy1d

    (tmp_path / "conftest.py").write_text((REPO / "notebooks" / "conftest.py").read_text())
    value = f"{toy1d.observe(toy1d.TRUTH, noise_std=0.01, seed=0).sum():.4f}"
    moved = value[:-1] + str((int(value[-1]) + 1) % 10)
    _notebook(tmp_path / "matching.ipynb", ["smoke 2 1", value])
    _notebook(tmp_path / "moved.ipynb", ["smoke 2 1", moved])
    result = _nbval(tmp_path)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "1 failed, 3 passed" in result.stdout, result.stdout[-3000:]
    assert "FAILED moved.ipynb::Cell 1" in result.stdout and "Cell outputs differ" in result.stdout
    assert moved in result.stdout and value in result.stdout


def test_nbval_refuses_another_profile_with_a_clear_error():
    result = _nbval(REPO / "notebooks", env={"REPRO_PROFILE": "quick"})
    assert result.returncode == 4
    assert "REPRO_PROFILE=quick: the notebooks store the smoke profile's outputs" in result.stderr


def _sanitize(text: str) -> str:
    import re

    from nbval.plugin import get_sanitize_patterns

    for regex, replace in get_sanitize_patterns(stored_outputs.SANITIZE.read_text()):
        text = re.sub(regex, replace, text)
    return text


def test_sanitizer_masks_wall_times_and_nothing_else():
    from repro import timing

    for varying in (timing.seconds(0.0017), timing.seconds(12.34, ".1f"), timing.seconds(6.68e-05), "1.5×",
                    "The fastest blind method here is DRK (D3)."):
        row = f"| DRK (D3) | 1 × 1 | 26.13 | 0.693 | — | {varying} |"
        assert _sanitize(row) == _sanitize(row.replace(varying, varying.replace("1", "7"))), varying
    kept = ("| blurred input | 1 × 1 | 26.13 ± 0.05 | 0.693 | 0.433 | — |", "9×9 kernels, 32×32 images, downscaled ×0.25",
            "trained 60 steps; 20 reverse steps (η = 1)", "argmax of eq. (12): σ = 1.503", "'-3.15'", "'+0.56'")
    for text in kept:
        assert _sanitize(text) == text


def test_refresh_stores_a_clean_execution_and_keeps_the_old_file_when_a_cell_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(stored_outputs, "NOTEBOOKS", tmp_path)
    monkeypatch.setattr(stored_outputs, "CHAPTERS", ("good", "bad"))
    (tmp_path / "good.py").write_text("# %%\nimport os\nprint(os.environ['REPRO_PROFILE'], 6 * 7)\n\n# %%\nx = 1\n")
    (tmp_path / "bad.py").write_text("# %%\nprint('before')\n\n# %%\nraise RuntimeError('this cell fails')\n")
    (tmp_path / "bad.ipynb").write_text("stored before")
    assert stored_outputs.refresh(["good"], progress=lambda line: None) == [tmp_path / "good.ipynb"]
    stored = nbformat.read(tmp_path / "good.ipynb", as_version=4)
    assert [c.execution_count for c in stored.cells] == [1, 2] and stored_outputs.unexecuted_cells(stored) == []
    assert stored.cells[0].outputs[0].text == "smoke 42\n" and "execution" not in stored.cells[0].metadata
    assert stored_outputs.main(["bad"]) == 1
    assert "RuntimeError: this cell fails" in capsys.readouterr().err
    assert (tmp_path / "bad.ipynb").read_text() == "stored before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ipynb", "bad.py", "good.ipynb", "good.py"]
