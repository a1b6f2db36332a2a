"""ComputeStatistics: what a dataset holds, as small Parquet tables under stats/.

One CombineFn over RecordBatches. Each batch is summarised with Arrow group-bys (no Python loop
per record) into partial tables; merging concatenates partials and groups again, so the
accumulator stays as small as the number of distinct keys, whatever the input size.

Tables (one row per key):
- summary: split, task, origin -> records, labels, objects, issues, masks, images_with_size,
  min/max width and height
- classes: split, task, origin, kind ("label" or "object"), name -> count, scored, score_sum
  (mean score = score_sum / scored)
- issues: split, code, severity -> count
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms import storage

SUMMARY_KEYS = ("split", "task", "origin")
CLASS_KEYS = ("split", "task", "origin", "kind", "name")
ISSUE_KEYS = ("split", "code", "severity")

# How each measure of a partial table merges with another partial's.
_MERGE = {
    "summary": {
        "records": "sum", "labels": "sum", "objects": "sum", "issues": "sum", "masks": "sum",
        "images_with_size": "sum", "min_width": "min", "max_width": "max",
        "min_height": "min", "max_height": "max",
    },
    "classes": {"count": "sum", "scored": "sum", "score_sum": "sum"},
    "issues": {"count": "sum"},
}
_KEYS = {"summary": SUMMARY_KEYS, "classes": CLASS_KEYS, "issues": ISSUE_KEYS}


def _text(array) -> pa.Array:
    return pc.cast(array, pa.string()).fill_null("")


def _regroup(name: str, table: pa.Table) -> pa.Table:
    """Groups a (concatenated) partial table by its keys again, merging the measures."""
    measures = _MERGE[name]
    grouped = table.group_by(list(_KEYS[name]), use_threads=False).aggregate(
        [(column, how) for column, how in measures.items()]
    )
    renamed = {f"{column}_{how}": column for column, how in measures.items()}
    return grouped.rename_columns([renamed.get(c, c) for c in grouped.column_names]).sort_by(
        [(key, "ascending") for key in _KEYS[name]]
    )


def summarise(batch: pa.RecordBatch) -> dict[str, pa.Table]:
    """One batch of canonical rows -> its partial tables."""
    keys = {key: _text(batch.column(key)) for key in SUMMARY_KEYS}
    image = batch.column("image")
    width, height = pc.struct_field(image, "width"), pc.struct_field(image, "height")
    per_row = pa.table(
        {
            **keys,
            "records": pa.array([1] * batch.num_rows, pa.int64()),
            "labels": pc.list_value_length(batch.column("labels")).fill_null(0).cast(pa.int64()),
            "objects": pc.list_value_length(batch.column("objects")).fill_null(0).cast(pa.int64()),
            "issues": pc.list_value_length(batch.column("issues")).fill_null(0).cast(pa.int64()),
            "masks": pc.is_valid(pc.struct_field(batch.column("mask"), "uri")).cast(pa.int64()),
            "images_with_size": pc.and_(pc.is_valid(width), pc.is_valid(height)).cast(pa.int64()),
            "min_width": width, "max_width": width, "min_height": height, "max_height": height,
        }
    )
    return {
        "summary": _regroup("summary", per_row),
        "classes": _regroup("classes", pa.concat_tables([_classes(batch, keys, "labels", "name", "label"), _classes(batch, keys, "objects", "label", "object")])),
        "issues": _regroup("issues", _issues(batch, keys["split"])),
    }


def _classes(batch, keys, column, name_field, kind) -> pa.Table:
    lists = batch.column(column)
    flat = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists)
    score = pc.struct_field(flat, "score")
    return pa.table(
        {
            **{key: pc.take(keys[key], parents) for key in SUMMARY_KEYS},
            "kind": pa.array([kind] * len(flat), pa.string()),
            "name": _text(pc.struct_field(flat, name_field)),
            "count": pa.array([1] * len(flat), pa.int64()),
            "scored": pc.is_valid(score).cast(pa.int64()),
            "score_sum": score.cast(pa.float64()).fill_null(0.0),
        }
    )


def _issues(batch, split) -> pa.Table:
    lists = batch.column("issues")
    flat = pc.list_flatten(lists)
    return pa.table(
        {
            "split": pc.take(split, pc.list_parent_indices(lists)),
            "code": _text(pc.struct_field(flat, "code")),
            "severity": _text(pc.struct_field(flat, "severity")),
            "count": pa.array([1] * len(flat), pa.int64()),
        }
    )


def merge(partials: list[dict[str, pa.Table]]) -> dict[str, pa.Table]:
    partials = [p for p in partials if p]
    if not partials:
        return {}
    return {
        name: _regroup(name, pa.concat_tables([p[name] for p in partials]))
        for name in _MERGE
    }


class StatisticsCombineFn(beam.CombineFn):
    """RecordBatches -> {table name: pa.Table}; the accumulator is a list of partials."""

    _COMPACT_AT = 16

    def create_accumulator(self):
        return []

    def add_input(self, accumulator, batch):
        if batch.num_rows:
            accumulator.append(summarise(batch))
        if len(accumulator) >= self._COMPACT_AT:
            accumulator[:] = [merge(accumulator)]
        return accumulator

    def merge_accumulators(self, accumulators):
        return [merge([p for accumulator in accumulators for p in accumulator])]

    def compact(self, accumulator):
        return [merge(accumulator)] if len(accumulator) > 1 else accumulator

    def extract_output(self, accumulator):
        return merge(accumulator)


class _WriteStatisticsFn(beam.DoFn):
    def __init__(self, root, store: storage.Storage):
        self._root = root
        self._storage = store

    def process(self, tables: dict[str, pa.Table]):
        for name, table in sorted(tables.items()):
            url = storage.join(self._root, f"{name}.parquet")
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            self._storage.write_atomically(url, sink.getvalue().to_pybytes())
            yield url


@beam.typehints.with_input_types(pa.RecordBatch)
class ComputeStatistics(beam.PTransform):
    """Canonical batches -> stats/summary.parquet, classes.parquet, issues.parquet under `root`."""

    def __init__(self, root: str, store: storage.Storage):
        super().__init__()
        self._root = root
        self._storage = store

    def expand(self, batches):
        return (
            batches
            | "Summarise" >> beam.CombineGlobally(StatisticsCombineFn()).without_defaults()
            | "WriteStatistics" >> beam.ParDo(_WriteStatisticsFn(self._root, self._storage))
        )
