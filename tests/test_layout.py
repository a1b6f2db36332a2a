"""The layers of transforms/ hold, and no module reaches for a name another does not define."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for folder in ("transforms", "pipelines") for p in (REPO / folder).rglob("*.py"))
BEAM_FREE = [p for p in SOURCES if p.relative_to(REPO).parts[:2] in (("transforms", "formats"), ("transforms", "checks"))
             or p.parent.name == "transforms"]
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


STAGES = sorted((REPO / "transforms" / "stages").glob("*.py"))


def test_the_normalizer_is_beam_free_and_its_stage_only_wires_it():
    assert REPO / "transforms" / "normalizer.py" in BEAM_FREE
    stage = (REPO / "transforms" / "stages" / "normalize.py").read_text()
    tree = ast.parse(stage)
    defined = {node.name for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))}
    assert defined == {"_NormalizeFn", "NormalizeRecords"}  # the core lives in transforms/normalizer.py
    assert "transforms.normalizer" in set(_imports(tree))


def test_fast_paths_are_declared_by_their_format_and_use_no_private_names():
    """No module chooses a format's fast path by name, and none reaches into another format
    module's private names (`module._name`)."""
    assert not (REPO / "transforms" / "fast").exists()
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("transforms.formats"):
                here = ".".join(path.relative_to(REPO).with_suffix("").parts)
                same_package = here.rsplit(".", 1)[0] == node.module.rsplit(".", 1)[0] or here.startswith(node.module + ".")
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                assert same_package or not private or node.module.rsplit(".", 1)[1].startswith("_"), (path, private)
        aliases = _project_aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                module = aliases[node.value.id].__name__
                if module.startswith("transforms.formats.") and node.attr.startswith("_") and not node.attr.startswith("__"):
                    assert path.parent == Path(aliases[node.value.id].__file__).parent, (path, node.lineno, node.attr)
