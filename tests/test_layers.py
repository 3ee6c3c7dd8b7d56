"""The package's layers: the science modules never reach the experiments or the result store,
and imports sit at the top of a module unless a comment on the line says why not."""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "repro"

SCIENCE = ("ops", "kernels", "metrics", "data", "nonblind", "toy1d", "dil", "selfdeblur", "selfdeblur_nets", "kerneldiff",
           "alternating", "synth")
HELPERS = ("_checks", "_io", "_threads", "_schedule", "_distributed")
"""Modules below the science: they may import only each other."""
ABOVE_SCIENCE = ("experiments", "profiles", "store", "chapters", "stored_outputs", "methods", "cli", "timing",
                 "interactive", "studies", "claims")
"""What the science and the helpers must never import."""


def _imports(path: Path) -> list[tuple[str, ast.stmt, bool]]:
    """(absolute module inside repro, node, at module level) of every import of ``path``."""
    tree = ast.parse(path.read_text())
    # module level: the body, and the imports for type annotations only (`if TYPE_CHECKING:`)
    top = {id(node) for node in tree.body}
    top |= {id(node) for block in tree.body if isinstance(block, ast.If) and isinstance(block.test, ast.Name)
            and block.test.id == "TYPE_CHECKING" for node in block.body}
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            targets = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
            found += [(t, node, id(node) in top) for t in targets]
        elif isinstance(node, ast.Import):
            found += [(a.name, node, id(node) in top) for a in node.names]
    return found


def _first_part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "repro" and len(parts) > 1 else None


@pytest.mark.parametrize("name", SCIENCE + HELPERS)
def test_science_and_helpers_never_import_the_experiments_or_the_store(name):
    path = PACKAGE / f"{name}.py"
    assert path.exists(), f"{path} is listed as a science or helper module but does not exist"
    reached = sorted({m for m, _, _ in _imports(path) if _first_part(m) in ABOVE_SCIENCE})
    assert reached == [], f"repro.{name} imports {reached}: the science takes plain values and does no result I/O"
    if name in HELPERS:
        science = sorted({m for m, _, _ in _imports(path) if _first_part(m) in SCIENCE})
        assert science == [], f"the helper repro.{name} imports the science modules {science}"


def test_every_module_is_in_a_layer():
    """A new module must be placed: science, helper, or above the science."""
    names = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if p.is_dir()
                                                       and (p / "__init__.py").exists()}
    unplaced = sorted(names - set(SCIENCE + HELPERS + ABOVE_SCIENCE) - {"__init__", "__main__"})
    assert unplaced == [], f"modules in no layer of tests/test_layers.py: {unplaced}"


def test_imports_inside_functions_say_why():
    """An import inside a function (a slow or optional dependency, a command-line start-up) has a
    comment on its line; the ``repro`` command's module says why once, in its docstring."""
    silent = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "cli.py":
            continue
        lines = path.read_text().splitlines()
        for _, node, at_top in _imports(path):
            if not at_top and "#" not in lines[node.lineno - 1]:
                silent.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert silent == [], "imports inside functions without a reason:\n" + "\n".join(sorted(set(silent)))


def test_the_layer_check_finds_a_forbidden_import(tmp_path, monkeypatch):
    """The check itself: a science module that imported the store would be reported."""
    fake = tmp_path / "repro"
    fake.mkdir()
    (fake / "ops.py").write_text("import torch\n\n\ndef f():\n    from .store import Store\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    found = [(m, top) for m, _, top in _imports(fake / "ops.py")]
    assert found == [("torch", True), ("repro.store", False)]
