"""Imports run downwards only (README, Architecture): every import of every product module,
lazy ones inside functions included, names a layer at or below the importing module's own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from persona.core.settings import PROJECT_ROOT

# Highest first; a module may import its own layer and any below it.
LAYERS = [
    ("persona.cli",),
    ("persona.jobs",),
    ("serving",),
    ("training",),
    ("persona.featurestore", "persona.profiling", "persona.recommend"),
    ("feature_repo", "persona.data", "persona.synthetic_shop", "persona.synthetic_cohort"),
    ("expectations",),
    ("persona.core", "persona"),
]
RANK = {prefix: len(LAYERS) - i for i, prefixes in enumerate(LAYERS) for prefix in prefixes}


def rank(module: str) -> int | None:
    """The layer of a project module (longest matching prefix); None for outside modules."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in RANK:
            return RANK[".".join(parts[:n])]
    return None


def modules() -> list[tuple[str, Path]]:
    found = []
    for package in ("persona", "feature_repo", "expectations", "training", "serving"):
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
            found.append((name.removesuffix(".__init__"), path))
    return found


def imported(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


@pytest.mark.parametrize("module, path", modules(), ids=[m for m, _ in modules()])
def test_imports_run_downwards(module: str, path: Path) -> None:
    own = rank(module)
    upward = [name for name in imported(path)
              if (theirs := rank(name)) is not None and theirs > own]
    assert not upward, f"{module} (layer {own}) imports from above: {upward}"


def test_every_product_module_has_a_docstring() -> None:
    missing = [m for m, path in modules()
               if path.stat().st_size and ast.get_docstring(ast.parse(path.read_text())) is None]
    assert not missing, missing
