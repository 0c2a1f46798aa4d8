"""Structural guard: the parts that train never import the part that reads target test labels."""
from __future__ import annotations

import ast
from pathlib import Path

import nnunet_glua

PACKAGE = Path(nnunet_glua.__file__).resolve().parent
TRAINING_SIDE = ("training", "style", "alignment", "data")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_training_side_never_imports_evaluation():
    offenders = []
    for part in TRAINING_SIDE:
        for path in (PACKAGE / part).rglob("*.py"):
            bad = sorted(n for n in _imported_modules(path) if n.startswith("nnunet_glua.evaluation"))
            if bad:
                offenders.append(f"{path.relative_to(PACKAGE)}: {bad}")
    assert not offenders, "modules on the training side import evaluation code:\n" + "\n".join(offenders)


def test_guard_sees_every_training_side_package():
    for part in TRAINING_SIDE:
        assert list((PACKAGE / part).rglob("*.py")), part
