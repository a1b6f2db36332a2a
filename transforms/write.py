"""WriteRecords (Parquet), WriteManifests (any format) and WriteDeadLetters, atomically.

Every writer works the same way, as Beam's own file sinks do: each bundle streams its elements
into one temporary file per partition under `<root>/.labelbeam-tmp/` (nothing is held in memory
beyond the open writers), and one finalize step renames the temporary files of each partition to
`<partition>/part-NNNNN-of-MMMMM<ext>`. A file is never visible under its final name before it is
complete; readers of the dataset skip dot-folders, so the temporaries never show.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any, Callable, Iterator

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.transforms.window import GlobalWindows

from transforms import errors, storage
from transforms.formats.base import WriteContext, get_format
from transforms.schema import PARTITION_COLUMNS, SCHEMA

TMP_DIR = ".labelbeam-tmp"
WRITTEN = "written"
WRITE_STAGE = "write"


def partition_batch(batch: pa.RecordBatch, columns: tuple[str, ...]) -> Iterator[tuple[str, pa.RecordBatch]]:
    """A batch -> (hive path 'a=x/b=y', sub-batch) for each distinct partition value."""
    if batch.num_rows == 0:
        return
    keys = [pc.cast(batch.column(name), pa.string()).fill_null("__null__") for name in columns]
    table = pa.table({f"k{i}": key for i, key in enumerate(keys)}).append_column(
        "row", pa.array(range(batch.num_rows), pa.int64())
    )
    groups = table.group_by([f"k{i}" for i in range(len(columns))], use_threads=False).aggregate(
        [("row", "list")]
    )
    for group in groups.to_pylist():
        path = "/".join(f"{name}={group[f'k{i}']}" for i, name in enumerate(columns))
        yield path, batch.take(pa.array(group["row_list"], pa.int64()))


class _ParquetFile:
    """Record batches -> one Parquet file, partition columns left to the folder names.

    Batches arrive small (a batch's share of one partition); they are buffered into row groups
    of ROW_GROUP_ROWS so the files are fast to write and to scan.
    """

    extension = ".parquet"
    ROW_GROUP_ROWS = 64 * 1024
    ROW_GROUP_BYTES = 16 << 20

    def __init__(self, handle):
        self.handle = handle
        self.schema = file_schema()
        self.writer = pq.ParquetWriter(handle, self.schema, compression="zstd")
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.pending_bytes = 0

    def write(self, batch: pa.RecordBatch) -> list[dict]:
        batch = batch.drop_columns(list(PARTITION_COLUMNS))
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        self.pending_bytes += batch.nbytes
        if self.pending_rows >= self.ROW_GROUP_ROWS or self.pending_bytes >= self.ROW_GROUP_BYTES:
            self._flush()
        return []

    def _flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.Table.from_batches(self.pending, self.schema), row_group_size=self.pending_rows)
        self.pending, self.pending_rows, self.pending_bytes = [], 0, 0

    def close(self) -> None:
        self._flush()
        self.writer.close()


def file_schema() -> pa.Schema:
    """SCHEMA without the hive partition columns: what a records/ Parquet file holds."""
    result = SCHEMA
    for name in PARTITION_COLUMNS:
        result = result.remove(result.get_field_index(name))
    return result


class _ManifestFile:
    """Record batches -> one manifest file of a format; rows it cannot represent -> dead letters."""

    def __init__(self, handle, format_name: str, options: dict):
        self.handle = handle
        self.format = get_format(format_name)
        self.extension = self.format.extension
        self.options = options
        self.array = self.format.file_layout == "json_array"
        self.count = 0
        if self.array:
            handle.write(b"[")

    def write(self, batch: pa.RecordBatch) -> list[dict]:
        ctx = WriteContext(options=self.options)
        for row in batch.to_pylist():
            try:
                elements = list(self.format.write([row], ctx))
            except Exception as exc:  # a writer bug must not stop the job: the row is a dead letter
                ctx.reject(row, errors.INTERNAL_ERROR, f"the writer failed: {exc!r}")
                continue
            for element in elements:
                self._write_element(element)
        return [
            errors.row_dead_letter(row, WRITE_STAGE, code, f"{self.format.name}: {message}")
            for row, code, message in ctx.rejected
        ]

    def _write_element(self, element: bytes) -> None:
        if self.array:
            self.handle.write(b",\n" if self.count else b"\n")
            self.handle.write(element)
        else:
            self.handle.write(element + b"\n")
        self.count += 1

    def close(self) -> None:
        if self.array:
            self.handle.write(b"\n]\n" if self.count else b"]\n")


class _JsonLinesFile:
    """Plain dicts -> JSON lines (dead letters)."""

    extension = ".jsonl"

    def __init__(self, handle):
        self.handle = handle

    def write(self, rows: list[dict]) -> list[dict]:
        self.handle.write(b"".join(orjson.dumps(row) + b"\n" for row in rows))
        return []

    def close(self) -> None:
        pass




class _WriteBundleFilesFn(beam.DoFn):
    """Streams each bundle's elements into one temporary file per partition."""

    def __init__(self, root: str, open_file: Callable, split_element: Callable, storage_options):
        self._root = root
        self._open_file = open_file
        self._split_element = split_element
        self._storage_options = storage_options

    def start_bundle(self):
        self._open: dict[str, tuple[Any, Any, str]] = {}

    def process(self, element):
        for partition, piece in self._split_element(element):
            entry = self._open.get(partition)
            if entry is None:
                entry = self._open[partition] = self._new_file()
            yield from entry[1].write(piece)

    def _new_file(self):
        temp = storage.join(self._root, TMP_DIR, uuid.uuid4().hex)
        fs, path = storage.filesystem(temp, self._storage_options)
        fs.makedirs(storage.parent(path), exist_ok=True)
        handle = fs.open(path, "wb")
        return handle, self._open_file(handle), temp

    def finish_bundle(self):
        for partition, (handle, writer, temp) in self._open.items():
            writer.close()
            handle.close()
            yield beam.pvalue.TaggedOutput(
                WRITTEN, GlobalWindows.windowed_value((partition, temp, writer.extension))
            )
        self._open = {}


class _FinalizeFilesFn(beam.DoFn):
    """All temporary files -> part-NNNNN-of-MMMMM per partition, then the temp folder goes."""

    def __init__(self, root: str, storage_options):
        self._root = root
        self._storage_options = storage_options

    def process(self, written: list[tuple[str, str, str]]):
        by_partition: dict[str, list[tuple[str, str]]] = {}
        for partition, temp, extension in written:
            by_partition.setdefault(partition, []).append((temp, extension))
        fs, _ = storage.filesystem(self._root, self._storage_options)
        for partition, temps in sorted(by_partition.items()):
            temps.sort()
            folder = storage.join(self._root, partition) if partition else self._root
            fs.makedirs(storage.filesystem(folder, self._storage_options)[1], exist_ok=True)
            for index, (temp, extension) in enumerate(temps):
                final = storage.join(folder, f"part-{index:05d}-of-{len(temps):05d}{extension}")
                temp_path = storage.filesystem(temp, self._storage_options)[1]
                final_path = storage.filesystem(final, self._storage_options)[1]
                if fs.exists(temp_path):
                    fs.mv(temp_path, final_path)
                elif not fs.exists(final_path):  # a retried finalize finds its renames done
                    raise FileNotFoundError(f"temporary file {temp} is gone and {final} was never written")
                yield final
        tmp = storage.filesystem(storage.join(self._root, TMP_DIR), self._storage_options)[1]
        if fs.exists(tmp):
            fs.rm(tmp, recursive=True)


class _WriteFiles(beam.PTransform):
    """Shared mechanics: bundle files, then one finalize. Outputs written URLs and dead letters."""

    def __init__(self, root, open_file, split_element, storage_options):
        super().__init__()
        self._root = root.rstrip("/")
        self._open_file = open_file
        self._split_element = split_element
        self._storage_options = storage_options

    def expand(self, pcoll):
        written = pcoll | "WriteBundleFiles" >> beam.ParDo(
            _WriteBundleFilesFn(self._root, self._open_file, self._split_element, self._storage_options)
        ).with_outputs(WRITTEN, main=errors.DEAD_LETTERS)
        files = (
            written[WRITTEN]
            | "CollectTempFiles" >> beam.combiners.ToList()
            | "Finalize" >> beam.ParDo(_FinalizeFilesFn(self._root, self._storage_options))
        )
        return {"files": files, errors.DEAD_LETTERS: written[errors.DEAD_LETTERS]}


def ensure_records_dataset(root: str, storage_options: dict | None = None) -> None:
    """A run that kept no record still leaves a readable (empty) Parquet dataset at `root`."""
    fs, path = storage.filesystem(root, storage_options)
    if fs.exists(path) and fs.find(path):
        return
    sink = pa.BufferOutputStream()
    pq.write_table(file_schema().empty_table(), sink)
    storage.write_atomically(storage.join(root, "part-00000-of-00001.parquet"), sink.getvalue().to_pybytes(), storage_options)


class WriteRecords(beam.PTransform):
    """Canonical batches -> a Parquet dataset, hive-partitioned by split and task."""

    def __init__(self, root: str, storage_options: dict | None = None):
        super().__init__()
        self._root = root
        self._storage_options = storage_options

    def expand(self, batches):
        return batches | _WriteFiles(
            self._root, _ParquetFile, functools.partial(partition_batch, columns=PARTITION_COLUMNS), self._storage_options
        )


class WriteManifests(beam.PTransform):
    """Canonical batches -> manifests of one format under <root>/split=<split>/[task=<task>/]."""

    def __init__(self, root: str, format_name: str, options: dict | None = None, storage_options=None):
        super().__init__()
        self._root = root
        self._format_name = format_name
        self._options = dict(options or {})
        self._storage_options = storage_options
        self._columns = ("split", "task") if get_format(format_name).one_task_per_file else ("split",)

    def expand(self, batches):
        return batches | _WriteFiles(
            self._root,
            functools.partial(_ManifestFile, format_name=self._format_name, options=self._options),
            functools.partial(partition_batch, columns=self._columns),
            self._storage_options,
        )


def _dead_letters_in_one_partition(letter):
    return [("", [letter])]


class WriteDeadLetters(beam.PTransform):
    """Dead-letter dicts -> JSON lines under <root>/part-NNNNN-of-MMMMM.jsonl."""

    def __init__(self, root: str, storage_options: dict | None = None):
        super().__init__()
        self._root = root
        self._storage_options = storage_options

    def expand(self, letters):
        written = letters | _WriteFiles(
            self._root, _JsonLinesFile, _dead_letters_in_one_partition, self._storage_options
        )
        return written["files"]
