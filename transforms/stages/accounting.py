"""The ledger's wiring: every stage reports what it read, kept and refused on the LEDGER tag.

Counts are kept per input file (its URI) and per stage in a bundle-scoped `Ledger`
(transforms/ledger.py, which also holds the driver's checks: `file_entries`, `stage_flow`), and
leave each bundle once (finish_bundle, `emit`) on the LEDGER tag as (uri, counts) pairs.
`MergeCounters` sums them per file; `WriteCounters` writes the merged table, which the driver
reads once the job is done and reconciles.

Record stages do not count by hand: `Accounted(stage, fn)` wraps a DoFn and counts the rows of
every RecordBatch that goes in and comes out, and every dead letter it emits.
"""

from __future__ import annotations

from typing import Iterable

import apache_beam as beam
import orjson
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindows

from transforms import errors, storage
from transforms.ledger import (  # noqa: F401  (re-exported: the driver, the report and the stages name them here)
    COUNTERS_FILE,
    OUTPUTS,
    Ledger,
    file_entries,
    merge_into,
)
from transforms.stages.coders import of_record_batches

LEDGER = "ledger"


def emit(ledger: Ledger, windowed: bool = True) -> Iterable:
    """A ledger's (uri, counts) pairs on the LEDGER tag, once; windowed for finish_bundle."""
    for value in ledger.drain():
        yield beam.pvalue.TaggedOutput(LEDGER, GlobalWindows.windowed_value(value) if windowed else value)


class _AccountedFn(beam.DoFn):
    """Runs `inner` and counts, per file, the rows it was given, emitted and refused."""

    def __init__(self, stage: str, inner: beam.DoFn, count_warnings: bool = False):
        self._stage = stage
        self._inner = inner
        self._count_warnings = count_warnings

    def setup(self):
        self._inner.setup()

    def start_bundle(self):
        self._ledger = Ledger()
        self._inner.start_bundle()

    def process(self, batch):
        self._ledger.rows_in(self._stage, batch)
        yield from self._count(self._inner.process(batch))

    def finish_bundle(self):
        yield from self._count(self._inner.finish_bundle())
        yield from emit(self._ledger)

    def teardown(self):
        self._inner.teardown()

    def _count(self, outputs):
        for output in outputs or ():
            value = output.value if isinstance(output, beam.pvalue.TaggedOutput) else output
            value = getattr(value, "value", value)  # finish_bundle outputs are WindowedValues
            if isinstance(output, beam.pvalue.TaggedOutput):
                if output.tag == errors.DEAD_LETTERS:
                    self._ledger.refused(self._stage, value)
                elif output.tag == LEDGER:
                    pass
            elif isinstance(value, pa.RecordBatch):
                self._ledger.rows_out(self._stage, value)
                if self._count_warnings:
                    self._ledger.warnings(value)
            yield output


class Accounted(beam.PTransform):
    """ParDo(fn) whose rows are counted per file under `stage`:
    -> {main: RecordBatches, dead_letters: dicts, ledger: (uri, counts)} (+ `extra_tags`).
    The last record stage also counts the warnings on the rows it passes on (count_warnings)."""

    def __init__(self, stage: str, fn: beam.DoFn, extra_tags: tuple[str, ...] = (), count_warnings: bool = False):
        super().__init__()
        self._stage = stage
        self._fn = fn
        self._extra_tags = extra_tags
        self._count_warnings = count_warnings

    def expand(self, batches):
        fn = _AccountedFn(self._stage, self._fn, self._count_warnings)
        outputs = batches | self._stage >> beam.ParDo(fn).with_outputs(
            errors.DEAD_LETTERS, LEDGER, *self._extra_tags, main="main"
        )
        of_record_batches(outputs["main"])
        return outputs


class MergeCounters(beam.CombineFn):
    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, counters):
        return merge_into(accumulator, counters)

    def merge_accumulators(self, accumulators):
        merged: dict = {}
        for accumulator in accumulators:
            merge_into(merged, accumulator)
        return merged

    def extract_output(self, accumulator):
        return accumulator


class _WriteJsonFn(beam.DoFn):
    def __init__(self, url: str, storage_config: storage.Storage):
        self._url = url
        self._storage = storage_config

    def process(self, items):
        self._storage.write_atomically(self._url, orjson.dumps(dict(items), option=orjson.OPT_SORT_KEYS))
        yield self._url


class WriteCounters(beam.PTransform):
    """Ledger PCollections -> one JSON object {uri: counts} at `url`, merged per file."""

    def __init__(self, url: str, storage_config: storage.Storage):
        super().__init__()
        self._url = url
        self._storage = storage_config

    def expand(self, ledgers):
        return (
            ledgers
            | "AllCounts" >> beam.Flatten()
            # Records carry their file's URL without userinfo; the reader's counts join them there.
            | "RedactKeys" >> beam.Map(lambda item: (storage.redact_url(item[0]), item[1]))
            | "MergePerFile" >> beam.CombinePerKey(MergeCounters())
            | "CollectCounters" >> beam.combiners.ToList()
            | "WriteCountersFile" >> beam.ParDo(_WriteJsonFn(self._url, self._storage))
        )
