"""The layers import only downward: the library never imports presentation or the CLI,
presentation never imports the CLI, nothing outside the CLI imports it, and no module imports
another's private (underscored) name. Read from the source, so nothing needs to run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRESENTATION = sorted((ROOT / "compare" / "present").glob("*.py"))
CLI = sorted((ROOT / "compare" / "cli").glob("*.py"))
LIBRARY = sorted(
    path
    for path in (ROOT / "compare").glob("*.py")
    if path.name not in ("__main__.py", "matrix.py")  # front ends: the command, the pytest matrix
)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import in ``path`` (relative imports made absolute)."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def _modules(path: Path) -> set[str]:
    names = set()
    for module, imported in _imports(path):
        names.add(module)
        names.update(f"{module}.{name}" for name in imported)
    return names


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", LIBRARY, ids=_name)
def test_the_library_imports_no_presentation_and_no_cli(path):
    bad = {m for m in _modules(path) if m.startswith(("compare.present", "compare.cli"))}
    assert not bad, f"{_name(path)} imports {sorted(bad)}"
    assert not {"rich", "argparse", "matplotlib"} & {m.split(".")[0] for m in _modules(path)}


@pytest.mark.parametrize("path", PRESENTATION, ids=_name)
def test_presentation_imports_no_cli_and_no_argparse(path):
    bad = {m for m in _modules(path) if m.startswith("compare.cli") or m == "argparse"}
    assert not bad, f"{_name(path)} imports {sorted(bad)}"


def test_nothing_outside_the_cli_imports_it():
    everything = [*(ROOT / "compare").rglob("*.py"), *(ROOT / "implementations").rglob("*.py")]
    for path in everything:
        if path.parent.name == "cli" or path.name == "__main__.py":
            continue
        bad = {m for m in _modules(path) if m.startswith("compare.cli")}
        assert not bad, f"{_name(path)} imports the CLI: {sorted(bad)}"


@pytest.mark.parametrize("path", [*PRESENTATION, *CLI], ids=_name)
def test_no_private_name_is_imported_across_modules(path):
    for module, names in _imports(path):
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{_name(path)} imports {private} from {module}"
    source = path.read_text()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id not in ("self", "cls"):
                assert node.attr.startswith("__"), (
                    f"{_name(path)}:{node.lineno} uses {owner.id}.{node.attr}"
                )
