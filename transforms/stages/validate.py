"""ValidateRecords: a target profile's limits and error rules, columnar, on every batch.

Where it sits: Read -> Normalize -> ValidateRecords -> CheckFiles -> AssignSplit -> writers.
The rules here need nothing but the columns (image size and format as the manifest gives them,
labels and boxes per image, buckets, the issues found while parsing), so they run on every
batch as Arrow expressions: no threads, no shuffle, no Python dict per row. They run before
CheckFiles so that a record the profile refuses never costs a fetch or a decode; CheckFiles
applies the same size rules again to the images whose size it has just probed.

The rules and the judgement are Beam-free (transforms/judging.py, transforms/checks/); this
module wires them. A finding the profile makes an error sends its record to the dead letters
(stage `validate`); the others are appended to the record's `issues` as warnings.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa

from transforms import errors, judging
from transforms.checks import profiles
from transforms.stages.accounting import Accounted

STAGE = errors.VALIDATE


class _ValidateRecordsFn(beam.DoFn):
    def __init__(self, profile: profiles.Profile):
        self._profile = profile

    def process(self, batch: pa.RecordBatch):
        kept, letters = judging.validate_batch(batch, self._profile, STAGE)
        for letter in letters:
            yield beam.pvalue.TaggedOutput(errors.DEAD_LETTERS, letter)
        if kept.num_rows:
            yield kept


@beam.typehints.with_input_types(pa.RecordBatch)
class ValidateRecords(beam.PTransform):
    """RecordBatches -> {main: kept RecordBatches, dead_letters, ledger} under a target profile
    (resolved once, by the caller: FileCheckConfig.of, or profiles.get_profile)."""

    def __init__(self, profile: profiles.Profile):
        super().__init__()
        self._profile = profile

    def expand(self, batches):
        return batches | Accounted(STAGE, _ValidateRecordsFn(self._profile))
