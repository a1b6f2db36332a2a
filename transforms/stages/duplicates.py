"""FindDuplicates: records of one image from several files, formats or annotations, and whether
their image-level labels agree -> stats/duplicates.parquet.

The image key is the split key (transforms/stages/split.py), so the spellings of one URI meet.
Only a small tuple per record crosses the shuffle (a GroupByKey on the image key), and only the
images with more than one record reach the file. Nothing is dropped: every record stays in
records/ (the report says which to look at; --on_duplicate acts on them, transforms/stages/dedupe.py).
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms import storage
from transforms.dedupe import label_signature
from transforms.stages.split import split_key

AGREE, CONFLICT = "agree", "conflict"

SCHEMA = pa.schema(
    [
        ("image", pa.string()),
        ("records", pa.int64()),
        ("sources", pa.list_(pa.string())),
        ("formats", pa.list_(pa.string())),
        ("status", pa.string()),
        ("label_sets", pa.list_(pa.string())),
    ]
)


def keyed(batch: pa.RecordBatch):
    """A batch -> (image key, (source uri, format, origin, sorted image-level label names))."""
    uris = pc.struct_field(batch.column("image"), "uri").to_pylist()
    sources = pc.struct_field(batch.column("source"), "uri").to_pylist()
    formats = pc.struct_field(batch.column("source"), "format").to_pylist()
    origins = pc.cast(batch.column("origin"), pa.string()).to_pylist()
    labels = batch.column("labels").to_pylist()
    for uri, source, fmt, origin, names in zip(uris, sources, formats, origins, labels):
        if uri:
            yield split_key(uri), (source or "", fmt or "", origin or "", label_signature(names))


def duplicate_row(item) -> list[dict]:
    """(image key, its records' tuples) -> one report row when the image has several records.
    Conflict: ground-truth records that carry image labels disagree on them (predictions and
    records without image labels, e.g. detection, are not compared), the rule of
    transforms/dedupe.conflicting_label_sets."""
    key, entries = item
    entries = list(entries)
    if len(entries) < 2:
        return []
    sets = sorted({signature for _, _, origin, signature in entries if origin == "ground_truth" and signature})
    return [
        {
            "image": key,
            "records": len(entries),
            "sources": sorted({source for source, _, _, _ in entries}),
            "formats": sorted({fmt for _, fmt, _, _ in entries}),
            "status": CONFLICT if len(sets) > 1 else AGREE,
            "label_sets": sets,
        }
    ]


class _WriteTableFn(beam.DoFn):
    def __init__(self, url: str, store: storage.Storage):
        self._url = url
        self._storage = store

    def process(self, rows: list[dict]):
        table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["image"]), schema=SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self._storage.write_atomically(self._url, sink.getvalue().to_pybytes())
        yield table.num_rows


class FindDuplicates(beam.PTransform):
    """Canonical batches -> stats/duplicates.parquet (image, records, sources, formats, status,
    label_sets), written even when empty."""

    def __init__(self, url: str, store: storage.Storage):
        super().__init__()
        self._url = url
        self._storage = store

    def expand(self, batches):
        return (
            batches
            | "KeyByImage" >> beam.FlatMap(keyed)
            | "GroupByImage" >> beam.GroupByKey()
            | "SeveralRecords" >> beam.FlatMap(duplicate_row)
            | "AllDuplicates" >> beam.combiners.ToList()
            | "WriteDuplicates" >> beam.ParDo(_WriteTableFn(self._url, self._storage))
        )
