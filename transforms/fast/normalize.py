"""Splits a RawBatch between a format's columnar fast path and its plugin, and merges the results.

The plugin part is the ordinary plugin normalize run on a RawBatch of just the lines the fast
path declined, so its rows, dead letters (in their order) and counters are those of the plugin
path; fast rows carry no dead letters and no issues. Rows are merged back by input position.
"""

from __future__ import annotations

import gc
from typing import Callable

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from transforms.checks import numbers
from transforms.fast import sagemaker_arrow
from transforms.fast.sagemaker import SageMakerColumns
from transforms.schema import SCHEMA, RawBatch

_BOM = b"\xef\xbb\xbf"
_DICTIONARY_COLUMNS = [name for name in SCHEMA.names if pa.types.is_dictionary(SCHEMA.field(name).type)]

# format name -> column builder class (ctx, layouts cache, dates cache)
FAST_PATHS = {"sagemaker": SageMakerColumns}
# format name -> whole-batch reader (batch, ctx, dates cache) -> ArrowPart or None; tried first
BLOCK_PATHS = {"sagemaker": sagemaker_arrow.normalize_block}


class FastNormalizer:
    """Per-worker caches of one fast path (key layouts, dates) and the split/merge around it."""

    def __init__(self, context: Callable, plugin_normalize: Callable):
        self._context = context  # (uri, format) -> ParseContext
        self._plugin_normalize = plugin_normalize  # RawBatch -> (batch, dead, counts)
        self._caches: dict[str, tuple[dict, dict]] = {}
        self.fast_lines = 0  # lines the fast path built itself (the rest went to the plugin)
        self.block_lines = 0  # of those, lines read a batch at a time by Arrow (BLOCK_PATHS)
        self._block_dates: dict = {}

    def normalize(self, batch: RawBatch):
        """(batch, dead letters, counts) as the plugin path gives them, or None without a fast path."""
        builder_cls = FAST_PATHS.get(batch.format) if batch.format else None
        if builder_cls is None:
            return None
        block = BLOCK_PATHS.get(batch.format)
        part = block(batch, self._context(batch.uri, batch.format), self._block_dates) if block else None
        if part is None:
            return self._normalize_lines(batch, builder_cls)
        self.fast_lines += part.batch.num_rows
        self.block_lines += part.batch.num_rows
        if not part.declined:
            counts = {"ok": part.batch.num_rows, "dead_letters": 0, "blank": batch.blank, "records": part.batch.num_rows,
                      "skipped": {}, "dead_letter_codes": {}}
            return part.batch, [], counts
        rest, dead, counts = self._normalize_lines(_subset(batch, part.declined), builder_cls)
        merged = _merge(batch, part.batch, part.taken, rest)
        if merged is None:
            return self._normalize_lines(batch, builder_cls)
        counts = dict(counts, ok=counts["ok"] + part.batch.num_rows, blank=batch.blank, records=merged.num_rows)
        return merged, dead, counts

    def _normalize_lines(self, batch: RawBatch, builder_cls):
        """The per-line fast path for what it understands, the plugin for the rest."""
        layouts, dates = self._caches.setdefault(batch.format, ({}, {}))
        columns = builder_cls(self._context(batch.uri, batch.format), layouts, dates)
        collecting = gc.isenabled()
        gc.disable()  # the batch's many small tuples would trigger full collections for nothing
        try:
            slow = self._gather(batch, columns)
        finally:
            if collecting:
                gc.enable()
        if not len(columns):
            return self._plugin_normalize(batch)
        try:
            fast = columns.build(batch.uri, batch.format, batch.lines, batch.offsets)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            return self._plugin_normalize(batch)  # a value Arrow refuses: the plugin path says which line
        self.fast_lines += fast.num_rows
        if not slow:
            counts = {"ok": fast.num_rows, "dead_letters": 0, "blank": batch.blank, "records": fast.num_rows,
                      "skipped": {}, "dead_letter_codes": {}}
            return fast, [], counts
        rest, dead, counts = self._plugin_normalize(_subset(batch, slow))
        merged = _merge(batch, fast, columns.index, rest)
        if merged is None:
            return self._plugin_normalize(batch)
        counts = dict(counts, ok=counts["ok"] + fast.num_rows, blank=batch.blank, records=merged.num_rows)
        return merged, dead, counts

    @staticmethod
    def _gather(batch: RawBatch, columns) -> list[int]:
        """Feeds the decodable object lines to `columns`; returns the indices it declined."""
        failed = {index for index, _, _ in batch.failures}
        slow: list[int] = []
        loads = orjson.loads
        # a 20-digit run (maybe an integer beyond 64 bits: INTEGER_TOO_LARGE) is rare: one search
        # over the batch, and a search per line only when the batch has one
        suspect = numbers.any_might_be_inexact(batch.raws)
        for index, raw in enumerate(batch.raws):
            # a BOM, or a 20-digit run: the plugin path
            if index in failed or raw.startswith(_BOM) or (suspect and numbers.might_be_inexact(raw)):
                slow.append(index)
                continue
            try:
                obj = loads(raw)
            except orjson.JSONDecodeError:
                slow.append(index)
                continue
            if type(obj) is not dict or not columns.add(index, obj):
                slow.append(index)
        return slow


def _subset(batch: RawBatch, indices: list[int]) -> RawBatch:
    """The RawBatch of just `indices` (reader failures re-indexed), blank lines left out."""
    position = {old: new for new, old in enumerate(indices)}
    return RawBatch(
        uri=batch.uri,
        format=batch.format,
        shard=batch.shard,
        lines=[batch.lines[i] for i in indices],
        offsets=[batch.offsets[i] for i in indices],
        raws=[batch.raws[i] for i in indices],
        failures=[(position[i], code, message) for i, code, message in batch.failures if i in position],
        blank=0,
    )


def _merge(batch: RawBatch, fast: pa.RecordBatch, fast_index: list[int], rest: pa.RecordBatch):
    """Fast and plugin rows in input order; dictionaries re-encoded in first-seen order."""
    if not rest.num_rows:
        return fast
    by_offset = {offset: index for index, offset in enumerate(batch.offsets)}
    if len(by_offset) != len(batch.offsets):
        return None  # offsets do not identify records: let the plugin do the whole batch
    rest_offsets = pc.struct_field(rest.column("source"), "offset").to_pylist()
    positions = pa.array(fast_index + [by_offset[o] for o in rest_offsets], pa.int64())
    table = pa.Table.from_batches([fast, rest], schema=SCHEMA)
    table = table.take(pc.sort_indices(positions)).combine_chunks()
    for name in _DICTIONARY_COLUMNS:
        i = table.schema.get_field_index(name)
        column = pc.dictionary_encode(pc.cast(table.column(name), pa.string()))
        table = table.set_column(i, SCHEMA.field(i), column)
    return table.combine_chunks().to_batches()[0]
