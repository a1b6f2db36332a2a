"""JoinDocuments: the parts of documents a format reads in parts (COCO) -> joined raw records.

A COCO file's annotations name their image by id, anywhere in the file, and its parts are read
by different workers: each part's elements are keyed (the format's `key_elements`: images and
annotations by image id, categories by category id) and spilled to one file per bucket of the
key (transforms/spill.py); a GroupByKey of the file names (small) gives each bucket its files,
and the format's `join` runs per key of one bucket at a time, so a worker holds one bucket,
never the input. Categories are resolved once per id (`resolve_side`, a small shuffle) and
reach the join as a side input. Joined objects are batched into RawBatches for NormalizeRecords;
other formats' batches go around the join. Memory: docs/architecture.md ("Reading COCO")."""

from __future__ import annotations

import collections
import dataclasses

import apache_beam as beam

from transforms import errors, spill, storage
from transforms.formats.base import get_format
from transforms.normalizer import RecordNormalizer
from transforms.schema import RawBatch
from transforms.stages.accounting import LEDGER, merge_into

BATCHES, _SIDE = "batches", "side"

def _joins(batch: RawBatch) -> bool:
    return bool(batch.format) and get_format(batch.format).joins_documents


def _tagged(dead: list, counts: dict):  # dead letters and per-file counts, to their outputs
    yield from (beam.pvalue.TaggedOutput(errors.DEAD_LETTERS, letter) for letter in dead)
    yield from (beam.pvalue.TaggedOutput(LEDGER, (uri, entry)) for uri, entry in counts.items())


class _KeyElementsFn(beam.DoFn):
    """A part's RawBatch -> ((format, bucket), spill file) per bucket its keyed entries fall in;
    side entries, dead letters and counts tagged."""

    def __init__(self, store: storage.Storage, folder: str, buckets: int):
        self._storage = store
        self._folder = folder
        self._buckets = buckets

    def process(self, batch: RawBatch):
        if not _joins(batch):  # an unreadable file (no format) in a job of documents: dead letters
            _, dead, counts = RecordNormalizer().normalize_with_plugin(dataclasses.replace(batch, format=None))
            yield from _tagged(dead, {batch.uri: counts})
            return
        keyed, side, dead, counts = get_format(batch.format).key_elements(batch)
        fs, folder = self._storage.fs(self._folder)
        fs.makedirs(folder, exist_ok=True)  # a local folder must exist first
        for bucket, url in spill.write_buckets(self._storage.open, self._folder, keyed, self._buckets):
            yield (batch.format, bucket), url
        for key, element in side:
            yield beam.pvalue.TaggedOutput(_SIDE, ((batch.format, key), element))
        yield from _tagged(dead, counts)


class _ResolveSideFn(beam.DoFn):
    """Every entry of one side key (a category id) -> its one value; conflicts are dead letters."""

    def process(self, item):
        (name, key), elements = item
        value, dead, counts = get_format(name).resolve_side(key, list(elements))
        yield name, key, value
        yield from _tagged(dead, counts)


class _JoinFn(beam.DoFn):
    """One bucket's spill files -> (format, uri, line, offset, joined raw) per joined object,
    joining its keys one after another; its dead letters, and its counts once."""

    def __init__(self, store: storage.Storage):
        self._storage = store

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
        (name, _), urls = item
        fmt, table, totals = get_format(name), self._table(name, side), {}
        for key, entries in spill.read_bucket(self._storage.open, sorted(urls)).items():
            joined, dead, counts = fmt.join(key, entries, table)
            for where, raw in joined:
                yield name, where.uri, where.line, where.offset, raw
            yield from _tagged(dead, {})
            for uri, entry in counts.items():
                merge_into(totals.setdefault(uri, {}), entry)
        yield from _tagged([], totals)


def _raw_batches(joined: list):  # a batch of joined objects -> one RawBatch per (format, file)
    by_file: dict = {}
    for name, uri, line, offset, raw in joined:
        batch = by_file.setdefault((name, uri), RawBatch(uri, name, 0))
        batch.lines.append(line)
        batch.offsets.append(offset)
        batch.raws.append(raw)
    yield from by_file.values()


class JoinDocuments(beam.PTransform):
    """RawBatch -> {batches: RawBatch (joined, and the others as they were), dead_letters, ledger}.

    `every_batch`: every input is a document (no Partition, no Flatten before the normalizer);
    `folder`: the spill files' (in the run's staging folder); `buckets`: spill.bucket_count."""

    def __init__(self, batch_lines: int, folder: str, store: storage.Storage, buckets: int = 64, every_batch: bool = False):
        super().__init__()
        self._batch_lines = max(int(batch_lines), 1)
        self._folder = folder
        self._storage = store
        self._buckets = max(int(buckets), 1)
        self._every_batch = every_batch

    def expand(self, batches):
        if self._every_batch:
            parts, others = batches, None
        else:
            parts, others = batches | "DocumentParts" >> beam.Partition(lambda batch, _: 0 if _joins(batch) else 1, 2)
        keyed = parts | "KeyElements" >> beam.ParDo(_KeyElementsFn(self._storage, self._folder, self._buckets)).with_outputs(_SIDE, errors.DEAD_LETTERS, LEDGER, main="keyed")
        side = (
            keyed[_SIDE]
            | "GroupSideEntries" >> beam.GroupByKey()
            | "ResolveSide" >> beam.ParDo(_ResolveSideFn()).with_outputs(errors.DEAD_LETTERS, LEDGER, main="values")
        )
        joined = (
            keyed.keyed
            | "GroupByBucket" >> beam.GroupByKey()
            | "Join" >> beam.ParDo(_JoinFn(self._storage), beam.pvalue.AsList(side.values)).with_outputs(errors.DEAD_LETTERS, LEDGER, main="joined")
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
