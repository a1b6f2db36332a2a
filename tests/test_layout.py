"""The layers of transforms/ hold, and no module reaches for a name another does not define.

The layers (docs/architecture.md, "The layers"): every module under transforms/ outside stages/
is Beam-free (formats, checks, fast paths, file checks, judging, statistics, settings, ...) and
tested without a pipeline; transforms/stages/ only wires them into Beam, so its modules are
short and define nothing but PTransforms, DoFns, CombineFns and coders; pipelines/ may import
both. The formats are the bottom of the Beam-free layer: apart from each other, below the cores
that call them, and named by no stage (docs/architecture.md, "The layers").
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for folder in ("transforms", "pipelines") for p in (REPO / folder).rglob("*.py"))
STAGES = REPO / "transforms" / "stages"
BEAM_FREE = [p for p in SOURCES if p.is_relative_to(REPO / "transforms") and not p.is_relative_to(STAGES)]
STAGE_MODULES = sorted(STAGES.glob("*.py"))
# A stage module wires one step: its PTransform's expand(), thin DoFns / CombineFns that call a
# Beam-free core, counters and tags. 150 lines holds that with its docstring (check_files.py 65,
# validate.py 49, stats.py 89, dedupe.py 108); a module past it is doing a core's work.
STAGE_MODULE_LINES = 150
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


def test_the_beam_free_layer_covers_every_module_outside_stages():
    names = {str(p.relative_to(REPO)) for p in BEAM_FREE}
    assert {"transforms/file_checks.py", "transforms/judging.py", "transforms/statistics.py"} <= names
    assert not any(name.startswith("transforms/stages/") for name in names)
    assert any(name.startswith("transforms/formats/sagemaker/") for name in names)
    assert {"transforms/normalizer.py", "transforms/output_files.py", "transforms/ledger.py", "transforms/split_assigner.py"} <= names
    assert {"transforms/writing.py", "transforms/finalize.py"} <= names
    assert {"transforms/shards.py", "transforms/shard_reader.py", "transforms/read_layout.py"} <= names


@pytest.mark.parametrize("path", STAGE_MODULES, ids=lambda p: p.name)
def test_stage_modules_only_wire(path):
    """Short, and no class but Beam's kinds: a core found here belongs beside formats/ and checks/."""
    import inspect

    import apache_beam as beam

    lines = len(path.read_text().splitlines())
    assert lines <= STAGE_MODULE_LINES, f"{path.name}: {lines} lines, more than {STAGE_MODULE_LINES}: move its core out of stages/"
    module = importlib.import_module(f"transforms.stages.{path.stem}")
    wiring = (beam.PTransform, beam.DoFn, beam.CombineFn, beam.coders.Coder)
    cores = {
        name for name, obj in vars(module).items()
        if inspect.isclass(obj) and obj.__module__ == module.__name__ and not issubclass(obj, wiring)
    }
    assert not cores, f"{path.name} defines {sorted(cores)}: a Beam-free core, move it under transforms/"


def test_pipelines_may_import_both_layers():
    """The job module is where the layers meet: it builds the graph from stages/ and the
    settings from the Beam-free modules."""
    imported = set(_imports(ast.parse((REPO / "pipelines" / "normalize_manifests.py").read_text())))
    assert any(m.startswith("transforms.stages") for m in imported)
    assert any(m in ("transforms.file_checks", "transforms") for m in imported)


# ---- the formats: one package (or module) each, below the cores, apart from each other -------

FORMATS = REPO / "transforms" / "formats"
# what every format may share: the plugin contract and the helpers of several writers
SHARED_FORMAT_MODULES = ("transforms.formats.base", "transforms.formats.values", "transforms.formats._mask_pixels", "transforms.formats.fast_columns")
# the Beam-free cores that call the formats (parse, write, judge, count): a format never reaches up
ABOVE_THE_FORMATS = (
    "transforms.normalizer", "transforms.output_files", "transforms.file_checks", "transforms.judging",
    "transforms.statistics", "transforms.dedupe", "transforms.split_rules", "transforms.split_assigner",
    "transforms.ledger", "transforms.writing", "transforms.finalize", "transforms.logs",
    "transforms.shards",
)
FORMAT_SOURCES = sorted(p for p in FORMATS.rglob("*.py") if p.name != "__init__.py" or p.parent != FORMATS)


def _format_of(path: Path) -> str:
    """transforms/formats/coco/read.py -> 'transforms.formats.coco'; yolo.py -> '...yolo'."""
    first = path.relative_to(FORMATS).parts[0]
    return f"transforms.formats.{first.removesuffix('.py')}"


@pytest.mark.parametrize("path", FORMAT_SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_a_format_imports_no_other_format_and_no_core_above_it(path):
    """Formats meet only in canonical rows: a format imports its own package, the shared
    helpers and the modules below (schema, errors, checks, settings, storage, json_array, ...)."""
    own = _format_of(path)
    imported = set(_imports(ast.parse(path.read_text())))
    other_formats = {
        m for m in imported
        if m.startswith("transforms.formats") and m != "transforms.formats"
        and not (m == own or m.startswith(own + ".")) and m not in SHARED_FORMAT_MODULES
    }
    assert not other_formats, f"{path.name} imports another format: {sorted(other_formats)}"
    assert not {m for m in imported if m.startswith(ABOVE_THE_FORMATS)}


@pytest.mark.parametrize("path", sorted(list(STAGES.glob("*.py")) + list((REPO / "pipelines").rglob("*.py"))), ids=lambda p: str(p.relative_to(REPO)))
def test_stages_and_the_driver_ask_the_registry_not_a_format(path):
    """The read, normalize and write stages and the driver name no format: they ask
    `get_format(name)` what it declares, so a new format changes none of them."""
    imported = set(_imports(ast.parse(path.read_text())))
    named = {m for m in imported if m.startswith("transforms.formats.") and m not in SHARED_FORMAT_MODULES}
    assert not named, f"{path.name} imports a format by name: {sorted(named)}"


@pytest.mark.parametrize("package", sorted(p.parent for p in FORMATS.glob("*/__init__.py")), ids=lambda p: p.name)
def test_a_format_package_registers_its_format_and_names_what_it_exports(package):
    """A package is one format: importing it registers the format whose module is inside it,
    and its __init__ says which names other modules and tests may use (__all__)."""
    from transforms.formats.base import format_names, get_format

    module = importlib.import_module(f"transforms.formats.{package.name}")
    registered = [name for name in format_names() if type(get_format(name)).__module__.startswith(module.__name__ + ".")]
    assert len(registered) == 1, registered
    assert module.__all__ and all(hasattr(module, name) for name in module.__all__)


def test_the_walk_through_a_new_format_names_files_that_exist():
    """docs/architecture.md "Where a new thing goes": every path the walk names is there."""
    import re

    text = (REPO / "docs" / "architecture.md").read_text()
    walk = text[text.index("## Where a new thing goes"):]
    walk = walk[: walk.index("- **A faster way to read a format**")]
    named = set(re.findall(r"\b((?:transforms|tests|docs|configs|samples|pipelines)/[\w./-]*\w/?)", walk))
    assert {"transforms/formats/yolo.py", "tests/test_format_yolo.py", "tests/test_format_contract.py"} <= named
    assert [path for path in sorted(named) if not (REPO / path).exists()] == []
