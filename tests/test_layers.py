"""The library's packages depend one way: a layer imports only from the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

from support import LAYERS, REPO_ROOT

SUPPORT = REPO_ROOT / "support"


def _type_only(tree: ast.Module) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:``: names for annotations, never imported when the code runs."""
    return {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for stmt in block.body
        for n in ast.walk(stmt)
    }


def _imports(path: Path) -> set[str]:
    """Every ``support.X...`` module a file imports when it runs, at any depth of the file (lazy imports too)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    skip = _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("support."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("support."))
    return found


def test_every_module_belongs_to_a_layer():
    strays = [str(p.relative_to(REPO_ROOT)) for p in SUPPORT.glob("*.py") if p.name != "__init__.py"]
    unknown = [p.name for p in SUPPORT.iterdir() if p.is_dir() and p.name not in LAYERS and p.name != "__pycache__"]
    assert not strays and not unknown, f"modules outside the layers: {strays + unknown}"


def test_no_layer_imports_a_higher_one():
    rank = {name: i for i, name in enumerate(LAYERS)}
    wrong = []
    for path in sorted(SUPPORT.rglob("*.py")):
        parts = path.relative_to(SUPPORT).parts
        if len(parts) < 2:
            continue
        here = rank[parts[0]]
        for module in _imports(path):
            there = rank[module.split(".")[1]]
            if there > here:
                wrong.append(f"{path.relative_to(REPO_ROOT)} imports {module}")
    assert not wrong, "lower layers import higher ones:\n" + "\n".join(wrong)


def test_every_package_says_what_lives_there():
    silent = [
        str(p.relative_to(REPO_ROOT))
        for p in SUPPORT.rglob("__init__.py")
        if not ast.get_docstring(ast.parse(p.read_text()))
    ]
    assert not silent, f"packages without a docstring: {silent}"
