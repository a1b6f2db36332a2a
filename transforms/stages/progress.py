"""CountProgress: how far a running job is, as Beam metrics and, on local runners, small files.

A pass-through count on a branch of the graph (it is fused with its producer, so it sees each
batch as it is made): one counter increment per batch, never per record. Every runner shows the
counters (namespace `labelbeam`) in its own UI. On the local runners, whose workers share the
driver's disk, each DoFn instance also writes its running total to a file in a local folder at
most every `FLUSH_SECONDS`, which `pipelines/progress.py` reads to print progress. Totals are
what the workers have seen so far: a retried bundle counts twice here (the ledger, not this,
is what run.json reconciles). For raw batches it also counts the bytes of the input they cover
(`<what>_bytes`: per shard, from its first record's offset to its last record's end), from which
the driver prints a percentage of the input size.
"""

from __future__ import annotations

import os
import time
import uuid

import apache_beam as beam
import orjson
import pyarrow as pa

from transforms import storage
from transforms.schema import RawBatch

NAMESPACE = "labelbeam"
FLUSH_SECONDS = 1.0


def span_of(item) -> tuple[int, int] | None:
    """(first byte, end byte) of the records of a RawBatch in its file; None for anything else."""
    if not isinstance(item, RawBatch) or not item.offsets:
        return None
    return min(item.offsets), max(offset + len(raw) for offset, raw in zip(item.offsets, item.raws))


def size_of(item) -> tuple[int, tuple[str, int] | None]:
    """(count, shard) of one element: lines of a RawBatch, rows of a RecordBatch, else 1."""
    if isinstance(item, RawBatch):
        return item.size() + item.blank, (item.uri, item.shard)
    if isinstance(item, pa.RecordBatch):
        return item.num_rows, None
    return 1, None


class _CountFn(beam.DoFn):
    def __init__(self, what: str, folder: str | None):
        self._what = what
        self._folder = folder

    def setup(self):
        self._counter = beam.metrics.Metrics.counter(NAMESPACE, self._what)
        self._shard_counter = beam.metrics.Metrics.counter(NAMESPACE, f"{self._what}_shards")
        self._file = os.path.join(self._folder, f"{uuid.uuid4().hex}.json") if self._folder else None
        self._total, self._shards, self._flushed = 0, set(), 0.0
        self._spans: dict[tuple[str, int], tuple[int, int]] = {}  # shard -> bytes covered so far

    def process(self, item):
        n, shard = size_of(item)
        self._counter.inc(n)
        self._total += n
        if shard is not None and shard not in self._shards:
            self._shards.add(shard)
            self._shard_counter.inc()
        span = span_of(item)
        if span is not None:
            seen = self._spans.get(shard, span)
            self._spans[shard] = (min(seen[0], span[0]), max(seen[1], span[1]))
        if self._file and time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self._flush()

    def finish_bundle(self):
        if self._file:
            self._flush()

    def _flush(self):
        counts = {self._what: self._total, f"{self._what}_shards": len(self._shards)}
        if self._spans:
            counts[f"{self._what}_bytes"] = sum(end - start for start, end in self._spans.values())
        storage.write_atomically(self._file, orjson.dumps(counts))
        self._flushed = time.monotonic()


class CountProgress(beam.PTransform):
    """Counts the elements of a PCollection as `what` (see the module docstring); emits nothing."""

    def __init__(self, what: str, folder: str | None = None):
        super().__init__()
        self._what = what
        self._folder = folder

    def expand(self, pcoll):
        return pcoll | beam.ParDo(_CountFn(self._what, self._folder))
