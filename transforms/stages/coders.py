"""A Beam coder for pyarrow RecordBatches: Arrow IPC streams, not pickles.

Registered for `pa.RecordBatch` when transforms.stages is imported (on the launcher and on every
worker, which import the stages to run them), so a batch crossing a shuffle or a stage boundary
is written once as Arrow buffers, the format Arrow reads back without copying.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa


class RecordBatchCoder(beam.coders.Coder):
    """pa.RecordBatch <-> one Arrow IPC stream (schema + batch)."""

    def encode(self, batch: pa.RecordBatch) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        return sink.getvalue().to_pybytes()

    def decode(self, encoded: bytes) -> pa.RecordBatch:
        with pa.ipc.open_stream(pa.py_buffer(encoded)) as reader:
            return reader.read_next_batch()

    def is_deterministic(self) -> bool:
        return False

    def estimate_size(self, batch: pa.RecordBatch) -> int:
        """The batch's buffers, not an encoding of it: runners sample element sizes of every
        step's output, and encoding a 4,096-row batch to measure it cost as much as a stage."""
        return batch.nbytes

    def to_type_hint(self):
        return pa.RecordBatch


def register() -> None:
    beam.coders.registry.register_coder(pa.RecordBatch, RecordBatchCoder)


def of_record_batches(pcoll):
    """Marks a PCollection as holding RecordBatches, so the runner codes (and measures) its
    elements with RecordBatchCoder instead of pickling them: a DoFn with tagged outputs leaves
    its main output typed Any."""
    pcoll.element_type = pa.RecordBatch
    return pcoll
