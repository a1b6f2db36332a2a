"""RereadRecords: records/ read back once they have landed, with every class name they hold.

The sagemaker writer, which puts class ids into every line, needs every class name of the output
before its first line when no class list is given, so ids are equal in every file. In the job
it writes from records/ once they have landed (`RereadRecords`): the records writer collects
the class names of each bundle it writes, its finalize step publishes their sorted union with
the list of files, and those files are read back, spread over the workers, into the sagemaker
writer. Nothing on the record path waits for the class names, so no runner holds the records
for them (tests/test_graph.py); the cost is one more read of records/. Pinning the list
(`--sagemaker_classes`) makes it write from the record path directly. WriteManifests used
alone, without the names, collects them from its input first (a side input that waits for
every record).
The columns kept in partition folders are decoded from the folder names
(transforms/writing.read_records_file).
"""

from __future__ import annotations

import apache_beam as beam

from transforms import storage, writing
from transforms.output_files import CLASSES
from transforms.partitions import RECORDS_DEFAULT


class _ReadRecordsFileFn(beam.DoFn):
    """(partition, url) of a published records/ file -> canonical batches (writing.read_records_file)."""

    def __init__(self, store: storage.Storage, batch_rows: int, columns: tuple[str, ...] = RECORDS_DEFAULT):
        self._storage, self._batch_rows, self._columns = store, batch_rows, tuple(columns)

    def process(self, item):
        yield from writing.read_records_file(self._storage, item, self._batch_rows, self._columns)


class RereadRecords(beam.PTransform):
    """WriteRecords' `published` element -> {records: the canonical batches its files hold, read
    back spread over the workers; classes: one sorted list of their class names}."""

    def __init__(self, store: storage.Storage, batch_rows: int = 1000, columns: tuple[str, ...] = RECORDS_DEFAULT):
        super().__init__()
        self._read = _ReadRecordsFileFn(store, batch_rows, columns)  # WriteRecords' partition columns

    def expand(self, published):
        files = published | "PublishedFiles" >> beam.FlatMap(lambda p: p["files"]) | "SpreadFiles" >> beam.Reshuffle()
        classes = published | "PublishedClasses" >> beam.Map(lambda p: p[CLASSES] or [])
        return {"records": files | "ReadRecordsFiles" >> beam.ParDo(self._read), CLASSES: classes}
