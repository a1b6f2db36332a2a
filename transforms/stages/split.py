"""AssignSplit: a deterministic train / validation / test split from a hash of the image URI.

The same image always lands in the same split, in every run and on every worker; the rules
(the image key, groups, splits given in the input) are transforms/split_rules.py's, applied to
a batch by transforms/split_assigner.SplitAssigner. Every rule is a function of the record
alone: no shuffle, the record path stays fused.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa

from transforms.split_assigner import SplitAssigner
from transforms.split_rules import BY_IMAGE, DEFAULT_RATIOS, GROUP_FOLDER, parse_ratios, split_key, split_keys
from transforms.stages.accounting import Accounted

STAGE = "split"

# split_key, parse_ratios and DEFAULT_RATIOS are imported from here by the other stages too
__all__ = ["AssignSplit", "SplitAssigner", "DEFAULT_RATIOS", "parse_ratios", "split_key", "split_keys"]


class _AssignSplitFn(beam.DoFn):
    def __init__(self, ratios, salt, rules):
        self._ratios = ratios
        self._salt = salt
        self._rules = rules

    def setup(self):
        self._assigner = SplitAssigner(self._ratios, self._salt, **self._rules)

    def process(self, batch: pa.RecordBatch):
        yield self._assigner.assign_batch(batch)


@beam.typehints.with_input_types(pa.RecordBatch)
class AssignSplit(beam.PTransform):
    """RecordBatches -> {main: the same batches with `split` set, dead_letters (none), ledger}."""

    def __init__(self, ratios: dict[str, float] | None = None, salt: str = "", by: str = BY_IMAGE, group: str = GROUP_FOLDER, keep_input: bool = False):
        super().__init__()
        self._ratios = dict(ratios or DEFAULT_RATIOS)
        self._salt = salt
        self._rules = {"by": by, "group": group, "keep_input": keep_input}

    def expand(self, batches):
        return batches | Accounted(STAGE, _AssignSplitFn(self._ratios, self._salt, self._rules), count_warnings=True)
