"""The layers of transforms/ hold, and no module reaches for a name another does not define."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for folder in ("transforms", "pipelines") for p in (REPO / folder).rglob("*.py"))
BEAM_FREE = [p for p in SOURCES if p.parts[-2] in ("formats", "checks") or (p.parent.name == "transforms")]
PROJECT = ("transforms", "pipelines")


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


@pytest.mark.parametrize("path", BEAM_FREE, ids=lambda p: str(p.relative_to(REPO)))
def test_beam_free_layer_imports_neither_beam_nor_stages(path):
    imported = set(_imports(ast.parse(path.read_text())))
    assert not {m for m in imported if m.startswith(("apache_beam", "transforms.stages", "pipelines"))}


def _project_aliases(tree: ast.AST) -> dict:
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PROJECT:
            for alias in node.names:
                try:
                    aliases[alias.asname or alias.name] = importlib.import_module(f"{node.module}.{alias.name}")
                except ImportError:
                    pass
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PROJECT and alias.asname:
                    aliases[alias.asname] = importlib.import_module(alias.name)
    return aliases


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_module_attribute_used_exists(path):
    """`module.NAME` of a project module that has no NAME fails only when that line runs."""
    tree = ast.parse(path.read_text())
    aliases = _project_aliases(tree)
    missing = [
        (node.lineno, f"{node.value.id}.{node.attr}") for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in aliases and not hasattr(aliases[node.value.id], node.attr)
    ]
    assert missing == []
