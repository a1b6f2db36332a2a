"""JoinDocuments: the parts of documents a format reads in parts (COCO) -> joined raw records.

A COCO file's annotations name their image by id, anywhere in the file, and its parts are read
by different workers: each part's elements are keyed (the format's `key_elements`: images and
annotations by image id, categories by category id), categories are resolved once per id
(`resolve_side`, a small shuffle) and become a side input, and a GroupByKey by image id brings
each image and its annotations together for the format's `join`. Joined objects are batched
into RawBatches that NormalizeRecords parses like any other record. Batches of formats that
read records go around the join unchanged. What crosses the shuffle, and what it costs in
memory, is in docs/architecture.md ("Reading COCO").
"""

from __future__ import annotations

import collections

import apache_beam as beam

from transforms import errors
from transforms.formats.base import get_format
from transforms.schema import RawBatch
from transforms.stages.accounting import LEDGER

BATCHES = "batches"
_SIDE = "side"


def _joins(batch: RawBatch) -> bool:
    return bool(batch.format) and get_format(batch.format).joins_documents


class _KeyElementsFn(beam.DoFn):
    """A part's RawBatch -> ((format, image key), element); side entries and dead letters tagged."""

    def process(self, batch: RawBatch):
        keyed, side, dead, counts = get_format(batch.format).key_elements(batch)
        for key, element in keyed:
            yield (batch.format, key), element
        for key, element in side:
            yield beam.pvalue.TaggedOutput(_SIDE, ((batch.format, key), element))
        for letter in dead:
            yield beam.pvalue.TaggedOutput(errors.DEAD_LETTERS, letter)
        for uri, entry in counts.items():
            yield beam.pvalue.TaggedOutput(LEDGER, (uri, entry))


class _ResolveSideFn(beam.DoFn):
    """Every entry of one side key (a category id) -> its one value; conflicts are dead letters."""

    def process(self, item):
        (name, key), elements = item
        value, dead, counts = get_format(name).resolve_side(key, list(elements))
        yield name, key, value
        for letter in dead:
            yield beam.pvalue.TaggedOutput(errors.DEAD_LETTERS, letter)
        for uri, entry in counts.items():
            yield beam.pvalue.TaggedOutput(LEDGER, (uri, entry))


class _JoinFn(beam.DoFn):
    """One image key's elements -> (format, uri, line, offset, joined raw) per joined object."""

    def setup(self):
        self._tables: tuple[int, dict] | None = None

    def _table(self, name: str, side: list) -> dict:
        if self._tables is None or self._tables[0] != id(side):  # one dict per side input, per worker
            tables: dict = collections.defaultdict(dict)
            for format_name, key, value in side:
                tables[format_name][key] = value
            self._tables = (id(side), tables)
        return self._tables[1][name]

    def process(self, item, side):
        (name, key), elements = item
        joined, dead, counts = get_format(name).join(key, list(elements), self._table(name, side))
        for where, raw in joined:
            yield name, where.uri, where.line, where.offset, raw
        for letter in dead:
            yield beam.pvalue.TaggedOutput(errors.DEAD_LETTERS, letter)
        for uri, entry in counts.items():
            yield beam.pvalue.TaggedOutput(LEDGER, (uri, entry))


def _raw_batches(joined: list):
    """A batch of joined objects -> one RawBatch per (format, file)."""
    by_file: dict = {}
    for name, uri, line, offset, raw in joined:
        batch = by_file.get((name, uri))
        if batch is None:
            batch = by_file[(name, uri)] = RawBatch(uri, name, 0)
        batch.lines.append(line)
        batch.offsets.append(offset)
        batch.raws.append(raw)
    yield from by_file.values()


class JoinDocuments(beam.PTransform):
    """RawBatch -> {batches: RawBatch (joined, and the others as they were), dead_letters, ledger}.

    `every_batch`: the job's --format joins documents, so every batch is a part (no split of
    the input and no Flatten before the normalizer)."""

    def __init__(self, batch_lines: int, every_batch: bool = False):
        super().__init__()
        self._batch_lines = max(int(batch_lines), 1)
        self._every_batch = every_batch

    def expand(self, batches):
        if self._every_batch:
            parts, others = batches, None
        else:
            parts, others = batches | "DocumentParts" >> beam.Partition(lambda batch, _: 0 if _joins(batch) else 1, 2)
        keyed = parts | "KeyElements" >> beam.ParDo(_KeyElementsFn()).with_outputs(_SIDE, errors.DEAD_LETTERS, LEDGER, main="keyed")
        side = (
            keyed[_SIDE]
            | "GroupSideEntries" >> beam.GroupByKey()
            | "ResolveSide" >> beam.ParDo(_ResolveSideFn()).with_outputs(errors.DEAD_LETTERS, LEDGER, main="values")
        )
        joined = (
            keyed.keyed
            | "GroupByImage" >> beam.GroupByKey()
            | "Join" >> beam.ParDo(_JoinFn(), beam.pvalue.AsList(side.values)).with_outputs(errors.DEAD_LETTERS, LEDGER, main="joined")
        )
        rebatched = (
            joined.joined
            | "BatchJoined" >> beam.BatchElements(min_batch_size=min(self._batch_lines, 256), max_batch_size=self._batch_lines)
            | "JoinedBatches" >> beam.FlatMap(_raw_batches)
        )
        out = rebatched if others is None else (rebatched, others) | "AllBatches" >> beam.Flatten()
        letters = (keyed[errors.DEAD_LETTERS], side[errors.DEAD_LETTERS], joined[errors.DEAD_LETTERS]) | "JoinLetters" >> beam.Flatten()
        ledger = (keyed[LEDGER], side[LEDGER], joined[LEDGER]) | "JoinCounts" >> beam.Flatten()
        return {BATCHES: out, errors.DEAD_LETTERS: letters, LEDGER: ledger}
