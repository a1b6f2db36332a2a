"""WriteRecords (Parquet), WriteManifests (any format) and WriteDeadLetters, counted as they land.

Each writer is an OutputPlan (transforms/writing.py): every bundle streams its elements into one
temporary file per partition (`BundleWriter`), and one finalize step publishes them, counted from
the files themselves (transforms/finalize.py), to the ledger (transforms/stages/accounting.py).
Writers that number classes with no class list given read records/ back (stages/reread.py).
References are rewritten on the way into every manifest (transforms/uri_map.py).
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindows

from transforms import errors, storage, writing
from transforms.finalize import finalize
from transforms.output_files import (  # noqa: F401  (re-exported: the driver and reports name them here)
    CLASSES,
    ERRORS_OUTPUT,
    RECORDS_OUTPUT,
    REFUSED_FOLDER,
    class_names,
    file_record,
    manifests_output,
    refused_output,
)
from transforms.partitions import RECORDS_DEFAULT
from transforms.stages.accounting import LEDGER, emit
from transforms.stages.reread import RereadRecords  # noqa: F401  (re-exported: the driver names it here)
from transforms.writing import TMP_DIR, OutputPlan, ensure_records_dataset  # noqa: F401

WRITTEN = "written"
# A finalize step's one element: {"root", "files": [(partition, url)], "classes": sorted names or None}
PUBLISHED = "published"


def _union(names) -> list[str]:
    """Sets of class names -> their sorted union (a small list: one entry per class)."""
    return sorted(set().union(*names))


class _WriteBundleFilesFn(beam.DoFn):
    """Streams each bundle's elements into one temporary file per partition, and counts them."""

    def __init__(self, plan: OutputPlan):
        self._plan = plan

    def start_bundle(self):
        self._files = writing.BundleWriter(self._plan)

    def process(self, element, classes=None):
        yield from self._files.write(element, classes)

    def finish_bundle(self):
        for entry in self._files.close():
            yield beam.pvalue.TaggedOutput(WRITTEN, GlobalWindows.windowed_value(entry))
        yield from emit(self._files.ledger)


class _FinalizeFilesFn(beam.DoFn):
    """All temporary files -> published files, counted from the files (transforms/finalize.py)."""

    def __init__(self, plan: OutputPlan):
        self._plan = plan

    def process(self, written, classes=None):
        ledger, published = finalize(self._plan, written, classes)
        yield from emit(ledger, windowed=False)
        yield beam.pvalue.TaggedOutput(PUBLISHED, published)


class _WriteFiles(beam.PTransform):
    """One plan's bundle files, then one finalize. -> {dead_letters, ledger, published}.
    `class_names`: a PCollection of one sorted list, when already known."""

    def __init__(self, plan: OutputPlan, class_names=None):
        super().__init__()
        self._plan = dataclasses.replace(plan, root=plan.root.rstrip("/"))
        self._class_names = class_names

    def expand(self, pcolls):
        pcolls = pcolls if isinstance(pcolls, (list, tuple)) else [pcolls]
        written, ledgers, letters, side = [], [], [], {}
        if self._plan.classes and self._class_names is not None:
            side = {"classes": beam.pvalue.AsSingleton(self._class_names)}
        elif self._plan.classes:  # a first pass: every class name of the input, before any file is written
            names = tuple(pcolls) | "AllForClasses" >> beam.Flatten() | "ClassNames" >> beam.Map(class_names) | "UnionClassNames" >> beam.CombineGlobally(_union)
            side = {"classes": beam.pvalue.AsSingleton(names)}
        for i, pcoll in enumerate(pcolls):
            out = pcoll | f"WriteBundleFiles{i or ''}" >> beam.ParDo(_WriteBundleFilesFn(self._plan), **side).with_outputs(WRITTEN, LEDGER, main=errors.DEAD_LETTERS)
            written.append(out[WRITTEN])
            ledgers.append(out[LEDGER])
            letters.append(out[errors.DEAD_LETTERS])
        finalized = (
            tuple(written)
            | "AllTempFiles" >> beam.Flatten()
            | "CollectTempFiles" >> beam.combiners.ToList()
            | "Finalize" >> beam.ParDo(_FinalizeFilesFn(self._plan), **side).with_outputs(LEDGER, PUBLISHED, main="unused")
        )
        ledgers.append(finalized[LEDGER])
        return {errors.DEAD_LETTERS: letters, LEDGER: ledgers, PUBLISHED: finalized[PUBLISHED]}


@beam.typehints.with_input_types(pa.RecordBatch)
class WriteRecords(beam.PTransform):
    """Canonical batches -> a Parquet dataset partitioned by `columns` (writing.records_plan).
    -> {dead_letters, ledger, published}; with `collect_classes`, `published` also carries the
    sorted class names of everything written (for RereadRecords)."""

    def __init__(self, root: str, store: storage.Storage, columns: tuple[str, ...] = RECORDS_DEFAULT, collect_classes: bool = False):
        super().__init__()
        self._plan = writing.records_plan(root, store, columns, collect_classes)

    def expand(self, batches):
        return batches | _WriteFiles(self._plan)


@beam.typehints.with_input_types(pa.RecordBatch)
class WriteManifests(beam.PTransform):
    """Canonical batches -> manifests of one format (writing.manifests_plan, whose `settings`:
    mask_policy, label_attributes, references, published_root, copies); `class_names`:
    RereadRecords' classes, else collected from the input when the format needs them."""

    def __init__(self, root: str, format_name: str, options=None, store=None, partition_by=None, class_names=None, **settings):
        super().__init__()
        self._plan = writing.manifests_plan(root, format_name, options, store, partition_by, **settings)
        self._class_names = class_names

    def expand(self, batches):
        return batches | _WriteFiles(self._plan, self._class_names)


@beam.typehints.with_input_types(dict)
class WriteDeadLetters(beam.PTransform):
    """Dead-letter dicts (one or several PCollections) -> JSON lines under <root>/part-*.jsonl,
    counted as `output` (errors, or refused/<format> for one writer's refusals)."""

    def __init__(self, root: str, store: storage.Storage, output: str = ERRORS_OUTPUT):
        super().__init__()
        self._plan = writing.dead_letters_plan(root, store, output)

    def expand(self, letters):
        return letters | _WriteFiles(self._plan)
