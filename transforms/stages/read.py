"""ReadManifests: file patterns -> byte-range shards -> batches of raw records with provenance.

The step wires two Beam-free cores: transforms/shards.py plans each file's shards (layout,
format, byte ranges, the line starts each owns) and transforms/shard_reader.py reads a shard
into RawBatches. Shards of a split file count their line starts in parallel; a GroupByKey of
those small counts per file gives each shard its first line number, so the reader emits exact
numbers and nothing waits on a side input. (Beam 2.77's FnApiRunner drops elements of a large
main input read with a side input when it runs more than one worker; this design needs none.)
"""

from __future__ import annotations

import apache_beam as beam

from transforms import storage
from transforms.shard_reader import DEFAULT_BATCH_LINES, ShardReader
from transforms.shards import (
    DEFAULT_MAX_LINE_BYTES,
    DEFAULT_SHARD_SIZE,
    NO_FILE_CHECKS,
    FileChecks,
    Shard,
    ShardPlanner,
    count_shard_lines,
    with_line_bases,
)
from transforms.stages.accounting import LEDGER

# Tags of ReadManifests' outputs.
BATCHES = "batches"
_SPLIT_SHARDS = "split_shards"


class _PlanShardsFn(beam.DoFn):
    """(uri, size) -> the shards of that file (split ones tagged to be counted first), and on
    LEDGER its layout and format."""

    def __init__(self, format_name, shard_size, store, max_line_bytes=DEFAULT_MAX_LINE_BYTES, checks=NO_FILE_CHECKS):
        self._planner = ShardPlanner(format_name, shard_size, store, max_line_bytes, checks)

    def process(self, file_info):
        uri, size = file_info
        plan = self._planner.plan(uri, size)
        if plan.counts is not None:
            yield beam.pvalue.TaggedOutput(LEDGER, (uri, plan.counts))
        for shard in plan.shards:
            yield beam.pvalue.TaggedOutput(_SPLIT_SHARDS, shard) if plan.split else shard


class _CountShardLinesFn(beam.DoFn):
    """A shard of a split file -> (uri, (shard, lines it owns)); see shards.count_shard_lines."""

    def __init__(self, store: storage.Storage):
        self._storage = store

    def process(self, shard: Shard):
        shard, lines = count_shard_lines(shard, self._storage)
        yield shard.uri, (shard, lines)


class _ReadShardFn(beam.DoFn):
    """A shard -> RawBatches, and on LEDGER the lines it owns (and the pre-count's figure)."""

    def __init__(self, store: storage.Storage, batch_lines: int, max_line_bytes: int):
        self._storage = store
        self._batch_lines = batch_lines
        self._max_line_bytes = max_line_bytes

    def process(self, shard: Shard):
        reader = ShardReader(shard, self._batch_lines, self._max_line_bytes)
        yield from reader.read(self._storage)
        yield beam.pvalue.TaggedOutput(LEDGER, (shard.uri, reader.counts()))


def _match(pattern: str, store: storage.Storage):
    matched = store.expand(pattern)
    if not matched:
        raise FileNotFoundError(f"no file matches {storage.redact_url(pattern)!r}")
    yield from matched


class ReadManifests(beam.PTransform):
    """Glob patterns -> {batches: RawBatch, ledger: (uri, counts)}."""

    def __init__(
        self,
        patterns: list[str],
        format_name: str | None = None,
        shard_size: int = DEFAULT_SHARD_SIZE,
        store: storage.Storage | None = None,
        batch_lines: int = DEFAULT_BATCH_LINES,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        checks: FileChecks = NO_FILE_CHECKS,
        files: tuple[tuple[str, int], ...] | None = None,
    ):
        """`files`: the patterns already listed ((url, size) per file, at launch): read as
        given, not listed again."""
        super().__init__()
        self._patterns = list(patterns)
        self._files = None if files is None else sorted(set(files))
        self._format_name = format_name
        self._shard_size = max(int(shard_size), 1)
        self._storage = store or storage.Storage()
        self._batch_lines = batch_lines
        self._max_line_bytes = max_line_bytes
        self._checks = checks

    def expand(self, pbegin):
        if self._files is not None:
            files = pbegin | "ListedFiles" >> beam.Create(self._files)
        else:
            files = (
                pbegin
                | "Patterns" >> beam.Create(self._patterns)
                | "MatchFiles" >> beam.FlatMap(_match, self._storage)
                | "Deduplicate" >> beam.Distinct()
            )
        planned = files | "PlanShards" >> beam.ParDo(
            _PlanShardsFn(self._format_name, self._shard_size, self._storage, self._max_line_bytes, self._checks)
        ).with_outputs(LEDGER, _SPLIT_SHARDS, main="whole_files")
        numbered = (
            planned[_SPLIT_SHARDS]
            | "SpreadCounting" >> beam.Reshuffle()
            | "CountShardLines" >> beam.ParDo(_CountShardLinesFn(self._storage))
            | "ShardsPerFile" >> beam.GroupByKey()
            | "AssignLineBases" >> beam.FlatMap(with_line_bases)
        )
        read = (
            (planned.whole_files, numbered)
            | "AllShards" >> beam.Flatten()
            | "SpreadShards" >> beam.Reshuffle()
            | "ReadShards"
            >> beam.ParDo(_ReadShardFn(self._storage, self._batch_lines, self._max_line_bytes)).with_outputs(LEDGER, main=BATCHES)
        )
        ledger = (planned[LEDGER], read[LEDGER]) | "ReadCounts" >> beam.Flatten()
        return {BATCHES: read[BATCHES], LEDGER: ledger}
