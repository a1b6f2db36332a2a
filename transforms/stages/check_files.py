"""CheckFiles: the checks that open files (mask PNGs, image headers, brush RLEs), per batch.

Where it sits: ... -> ValidateRecords -> CheckFiles -> AssignSplit -> writers, in the same fused
stage as the reader: there is no shuffle before it, so on a local runner no stage ever holds
the whole dataset. Work spreads over the workers through the shards instead: a manifest whose
records reference files is cut into shards of about FILE_CHECKS_PER_SHARD such records
(transforms/shards.py), and within a batch the files are fetched and decoded concurrently.

The checks themselves are Beam-free (transforms/file_checks.py); this module wires them: one
DoFn per worker that holds the checker, reports its counts as Beam counters (in the bundle's
thread: Beam drops pool-thread increments) and redacts URL userinfo on the way out.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from transforms import errors, storage
from transforms.file_checks import BatchFileChecker, FileCheckConfig, redact_uris
from transforms.stages.accounting import Accounted

STAGE = errors.CHECK_FILES


class _CheckFilesFn(beam.DoFn):
    def __init__(self, config: FileCheckConfig, store: storage.Storage):
        self._config = config
        self._storage = store

    def setup(self):
        self._checks = BatchFileChecker(self._config, self._storage, STAGE)
        self._counters: dict[str, object] = {}

    def finish_bundle(self):
        self._checks.checker.failures.flush()

    def process(self, batch: pa.RecordBatch):
        outcome = self._checks.check(batch)
        for code, count in outcome.counts.items():
            self._counter(code).inc(count)
        for letter in outcome.letters:
            yield beam.pvalue.TaggedOutput(errors.DEAD_LETTERS, letter)
        for piece in outcome.batches:
            yield redact_uris(piece)

    def _counter(self, name: str):
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Metrics.counter("check_files", name)
        return counter


@beam.typehints.with_input_types(pa.RecordBatch)
class CheckFiles(beam.PTransform):
    """RecordBatches -> {main: RecordBatches with mask / image columns filled, dead_letters, ledger}."""

    def __init__(self, config: FileCheckConfig, store: storage.Storage | None = None):
        super().__init__()
        self._config = config
        self._storage = store or storage.Storage()

    def expand(self, batches):
        return batches | Accounted(STAGE, _CheckFilesFn(self._config, self._storage))
