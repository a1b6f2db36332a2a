"""The error catalogue is the one place codes are defined, and docs/errors.md is its copy."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from transforms import errors

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for folder in ("transforms", "pipelines") for p in (REPO / folder).rglob("*.py"))


def test_docs_errors_md_is_generated_from_the_catalogue():
    assert (REPO / "docs" / "errors.md").read_text() == errors.catalogue_markdown(), (
        "docs/errors.md is stale: python -m transforms.errors > docs/errors.md"
    )


def test_every_code_is_well_formed():
    assert len(errors.CATALOGUE) > 40
    for code, entry in errors.CATALOGUE.items():
        assert code == entry.code and code.isupper() and code.replace("_", "").isalnum()
        assert entry.stage in (*errors.STAGES, errors.ANY_STAGE)
        assert entry.severity in errors.SEVERITIES
        assert entry.group in errors.GROUPS
        assert entry.meaning and "\n" not in entry.meaning and "|" not in entry.meaning


def test_a_code_cannot_be_defined_twice_or_used_uncatalogued():
    with pytest.raises(ValueError, match="defined twice"):
        errors._define(errors.INTERNAL_ERROR, errors.ANY_STAGE, errors.ERROR, "internal", "again")
    with pytest.raises(ValueError, match="uncatalogued"):
        errors.RecordError("NOT_A_CODE", "x")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_code_is_written_as_a_string_outside_the_catalogue(path):
    if path == REPO / "transforms" / "errors.py":
        return
    tree = ast.parse(path.read_text(), filename=str(path))
    literals = [
        (node.lineno, node.value) for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in errors.CATALOGUE
    ]
    assert literals == [], f"use the constants of transforms.errors instead of {literals}"


def test_every_catalogued_code_is_raised_somewhere():
    """A code nobody raises is a stale promise in docs/errors.md."""
    names = set()
    for path in SOURCES:
        if path.name == "errors.py" and path.parent.name == "transforms":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
    assert sorted(code for code in errors.CATALOGUE if code not in names) == []
