"""ResolveDuplicates: the records of one image, from any file or format, grouped and resolved by
the --on_duplicate policy (transforms/dedupe.py says what each policy does).

Only built when the user names a policy: grouping by image is a GroupByKey of whole records, a
fusion break on the record path. The local runners hold every record that reaches it in memory
until the group is complete (roughly the records' Arrow size, several times over as Python
objects); Dataflow and Flink spill the shuffle to disk. Without a policy the record path stays
one fused chain (tests/test_graph.py).

Counting (the ledger, transforms/stages/accounting.py), per input file under the stage `dedupe`:
`in` before the shuffle; after it `out` (records passed on), `refused` (CONFLICTING_LABELS dead
letters under `error`), and `superseded` / `merged` (records a kept record stands for), so that
in == out + refused + superseded + merged per file.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindows

from transforms import dedupe, errors
from transforms.schema import rows_to_batch
from transforms.stages.accounting import LEDGER, Ledger, emit
from transforms.stages.coders import of_record_batches
from transforms.stages.split import split_key

STAGE = errors.DEDUPE


def image_key(row: dict) -> str:
    """The image a record is about: the split key of its URI (the record id when it has none)."""
    uri = (row.get("image") or {}).get("uri")
    return split_key(uri) if uri else row["record_id"]


class _KeyByImageFn(beam.DoFn):
    """RecordBatch -> (image key, row) per record; counts the stage's rows in."""

    def start_bundle(self):
        self._ledger = Ledger()

    def process(self, batch: pa.RecordBatch):
        self._ledger.rows_in(STAGE, batch)
        for row in batch.to_pylist():
            yield image_key(row), row

    def finish_bundle(self):
        yield from emit(self._ledger)


class _ResolveFn(beam.DoFn):
    """(image key, rows) -> RecordBatches of the kept rows, dead letters, and the ledger."""

    def __init__(self, policy: str, batch_rows: int):
        self._policy = policy
        self._batch_rows = batch_rows

    def start_bundle(self):
        self._ledger = Ledger()
        self._pending: list[dict] = []

    def process(self, group):
        _, rows = group
        resolution = dedupe.resolve(list(rows), self._policy)
        for row, message in resolution.refused:
            letter = errors.row_dead_letter(row, STAGE, errors.CONFLICTING_LABELS, message)
            self._ledger.refused(STAGE, letter)
            yield beam.pvalue.TaggedOutput(errors.DEAD_LETTERS, letter)
        for row, outcome in resolution.removed:
            self._ledger.add(row["source"]["uri"] or "", {"stages": {STAGE: {outcome: 1}}})
        self._pending += resolution.kept
        if len(self._pending) >= self._batch_rows:
            yield self._flush()

    def finish_bundle(self):
        if self._pending:
            yield GlobalWindows.windowed_value(self._flush())
        yield from emit(self._ledger)

    def _flush(self) -> pa.RecordBatch:
        batch = rows_to_batch(self._pending)
        self._pending = []
        self._ledger.rows_out(STAGE, batch)
        return batch


@beam.typehints.with_input_types(pa.RecordBatch)
class ResolveDuplicates(beam.PTransform):
    """RecordBatches -> {main: RecordBatches, one record per image and origin under first / merge,
    dead_letters, ledger}."""

    def __init__(self, policy: str, batch_rows: int = 1000):
        super().__init__()
        if policy not in dedupe.POLICIES:
            raise ValueError(f"unknown duplicate policy {policy!r}; known: {', '.join(dedupe.POLICIES)}")
        self._policy = policy
        self._batch_rows = batch_rows

    def expand(self, batches):
        keyed = batches | "KeyByImage" >> beam.ParDo(_KeyByImageFn()).with_outputs(LEDGER, main="main")
        resolved = (
            keyed["main"]
            | "GroupByImage" >> beam.GroupByKey()
            | "Resolve" >> beam.ParDo(_ResolveFn(self._policy, self._batch_rows)).with_outputs(errors.DEAD_LETTERS, LEDGER, main="main")
        )
        ledger = (keyed[LEDGER], resolved[LEDGER]) | "DedupeLedger" >> beam.Flatten()
        return {"main": of_record_batches(resolved["main"]), errors.DEAD_LETTERS: resolved[errors.DEAD_LETTERS], LEDGER: ledger}
