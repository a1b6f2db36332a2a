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

    def to_type_hint(self):
        return pa.RecordBatch


def register() -> None:
    beam.coders.registry.register_coder(pa.RecordBatch, RecordBatchCoder)
