"""NormalizeRecords: batches of raw records -> canonical RecordBatches and dead-letter rows.

The work is transforms/normalizer.RecordNormalizer (Beam-free): one call per batch, one Arrow
RecordBatch out. This module only wires it: dead letters to their tagged output, the per-file
line counts to the ledger (transforms/stages/accounting.py).
"""

from __future__ import annotations

import apache_beam as beam

from transforms import errors
from transforms.normalizer import RecordNormalizer
from transforms.schema import RawBatch
from transforms.stages.accounting import LEDGER
from transforms.stages.coders import of_record_batches

RECORDS = "records"


class _NormalizeFn(beam.DoFn):
    def __init__(self, format_options, relative_to):
        self._format_options = format_options
        self._relative_to = relative_to

    def setup(self):
        self._normalizer = RecordNormalizer(self._format_options, self._relative_to)

    def finish_bundle(self):
        self._normalizer.failures.flush()

    def process(self, batch: RawBatch):
        built, dead, counts = self._normalizer.normalize(batch)
        if built.num_rows:
            yield built
        for letter in dead:
            yield beam.pvalue.TaggedOutput(errors.DEAD_LETTERS, letter)
        yield beam.pvalue.TaggedOutput(LEDGER, (batch.uri, counts))


@beam.typehints.with_input_types(RawBatch)
class NormalizeRecords(beam.PTransform):
    """RawBatch -> {records: RecordBatch, dead_letters: dict, ledger: (uri, counts)}."""

    def __init__(self, format_options: dict | None = None, relative_to: str | None = None):
        super().__init__()
        self._format_options = format_options
        self._relative_to = relative_to

    def expand(self, batches):
        outputs = batches | "Normalize" >> beam.ParDo(
            _NormalizeFn(self._format_options, self._relative_to)
        ).with_outputs(errors.DEAD_LETTERS, LEDGER, main=RECORDS)
        of_record_batches(outputs[RECORDS])
        return outputs
