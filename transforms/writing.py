"""How an output is written so that a file is never seen half done, and what each writer is.

Every writer works the same way, as Beam's own file sinks do: each bundle streams its elements
into one temporary file per partition under `<root>/.labelbeam-tmp/` (`BundleWriter`: nothing
is held in memory beyond the open writers), and one finalize step (transforms/finalize.py)
renames the temporary files of each partition to `<partition>/part-NNNNN-of-MMMMM<ext>`. A
bundle that fails and is retried leaves its temporaries unnamed: only the names a committed
bundle emitted are published, so a retry never duplicates rows.

An `OutputPlan` is one writer: the ledger name of its output, its root, how it opens a file
(transforms/output_files.py) and how an element splits into partitions; `records_plan`,
`manifests_plan` and `dead_letters_plan` build the three the job has. Beam-free:
transforms/stages/write.py wires a plan into a bundle step and a finalize step.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from transforms import image_copies, partitions, storage
from transforms.checks.masks import MaskPolicy
from transforms.formats._mask_pixels import MaskReader
from transforms.formats.base import get_format
from transforms.ledger import Ledger
from transforms.output_files import (
    DOCUMENT_LAYOUTS,
    ERRORS_OUTPUT,
    RECORDS_OUTPUT,
    BundleFiles,
    _JsonLinesFile,
    _ManifestFile,
    _ParquetFile,
    manifests_output,
)
from transforms.partitions import RECORDS_DEFAULT, partition_batch, partition_values, stored_in_folders
from transforms.schema import file_schema
from transforms.uri_map import References

TMP_DIR = ".labelbeam-tmp"


@dataclasses.dataclass(frozen=True)
class OutputPlan:
    """One writer. `open_file(handle, **side)` opens a file writer on a temporary file,
    `split_element(element)` gives (partition, piece) pairs; `classes`: the writer needs every
    class name of the output first; `document`: (format name, options) of a format whose parts
    are assembled at finalize (DOCUMENT_LAYOUTS)."""

    output: str
    root: str
    store: storage.Storage
    open_file: Callable | None = None
    split_element: Callable | None = None
    layout: str = "jsonl"
    classes: bool = False
    side_files: Callable | None = None
    format_name: str | None = None  # a manifest format: its objects are counted too
    document: tuple[str, Any] | None = None


def records_plan(root: str, store: storage.Storage, columns: tuple[str, ...] = RECORDS_DEFAULT, collect_classes: bool = False) -> OutputPlan:
    """records/: a Parquet dataset hive-partitioned by `columns` (transforms/partitions.py)."""
    return OutputPlan(
        RECORDS_OUTPUT,
        root,
        store,
        functools.partial(_ParquetFile, columns=tuple(columns), collect_classes=collect_classes),
        functools.partial(partition_batch, columns=tuple(columns)),
    )


def manifests_plan(
    root: str,
    format_name: str,
    options: Any = None,
    store: storage.Storage | None = None,
    partition_by: tuple[str, ...] | None = None,
    mask_policy: Any = None,
    label_attributes: tuple[str, ...] = (),
    references: References | None = None,
    published_root: str | None = None,
    copies: image_copies.ImageCopies | None = None,
) -> OutputPlan:
    """Manifests of one format under <root>/split=<split>/[task=<task>/], or under the folders
    of `partition_by` (plus the columns the format cannot mix in one file)."""
    fmt = get_format(format_name)
    store = store or storage.Storage()
    options = fmt.options(options)
    # --copy_images: each image copied beside the labels, referenced as the format reads copies
    written_references = (references or References()).for_copies(copies.folder, fmt.copied_image_reference) if copies else references
    # files beside the manifests (mask PNGs) refer to where `root` is published (a staged run: under --output)
    files = functools.partial(BundleFiles, root, storage.join(root, TMP_DIR), store, published_root=published_root or root, references=references)
    columns = fmt.manifest_partitions(partition_by)
    # writers that write a mask's pixels open it with the job's storage and mask policy
    masks = MaskReader(mask_policy or MaskPolicy(), store)
    open_file = functools.partial(
        _ManifestFile, format_name=format_name, options=options, masks=masks, label_attributes=tuple(label_attributes),
        references=written_references, files=files, copies=copies.per_split("split" in columns, fmt.copy_folders(options)) if copies else None,
    )
    return OutputPlan(
        manifests_output(format_name),
        root,
        store,
        open_file,
        functools.partial(_partition_as_written, columns=columns, format_name=format_name, options=options),
        fmt.file_layout,
        classes=fmt.needs_class_names(options),
        side_files=fmt.side_files,
        format_name=format_name,
        document=(format_name, options) if fmt.file_layout in DOCUMENT_LAYOUTS else None,
    )


def dead_letters_plan(root: str, store: storage.Storage, output: str = ERRORS_OUTPUT) -> OutputPlan:
    """Dead letters as JSON lines under <root>/part-*.jsonl, counted as `output`."""
    return OutputPlan(output, root, store, _JsonLinesFile, _dead_letters_in_one_partition)


def _partition_as_written(batch: pa.RecordBatch, columns, format_name: str, options: Any):
    """The format's view of a batch (ManifestFormat.output_view), split into its partitions."""
    return partition_batch(get_format(format_name).output_view(batch, options), columns)


def _dead_letters_in_one_partition(letter):
    return [("", [letter])]


class BundleWriter:
    """One bundle's temporary files, one per partition, and the ledger's counts of what its
    writer was given, refused and wrote. `close()` gives each file as
    (partition, temporary url, extension, rows written, the writer's summary)."""

    def __init__(self, plan: OutputPlan):
        self.plan = plan
        self.ledger = Ledger()
        self._open: dict[str, tuple[Any, Any, str]] = {}
        self._side: dict = {}

    def write(self, element, classes=None) -> Iterator[dict]:
        """Streams one element into its partitions' files; yields the dead letters of what the
        writer refused."""
        if classes is not None:  # the output's class names (a side input), for the file writers
            self._side = {"classes": classes}
        given = element.num_rows if isinstance(element, pa.RecordBatch) else 1
        self.ledger.output(self.plan.output, {"in": given})
        for partition, piece in self.plan.split_element(element):
            entry = self._open.get(partition)
            if entry is None:
                entry = self._open[partition] = self._new_file()
            for letter in entry[1].write(piece):
                # a refused object leaves its row written: counted apart from refused rows
                self.ledger.output(self.plan.output, {"refused_objects" if letter.get("object_index") is not None else "refused": 1})
                yield letter

    def _new_file(self):
        temp = storage.join(self.plan.root, TMP_DIR, uuid.uuid4().hex)
        fs, path = self.plan.store.fs(temp)
        fs.makedirs(storage.parent(path), exist_ok=True)
        handle = fs.open(path, "wb")
        return handle, self.plan.open_file(handle, **self._side), temp

    def close(self) -> list[tuple[str, str, str, int, dict]]:
        written = []
        for partition, (handle, writer, temp) in self._open.items():
            writer.close()
            handle.close()
            self.ledger.output(self.plan.output, {"written": writer.count})
            if getattr(writer, "objects_given", None) is not None:
                self.ledger.output(self.plan.output, {"objects": writer.objects_given, "objects_written": writer.objects_written, "objects_other_jobs": writer.objects_other_jobs})
            summary = getattr(writer, "summary", None) or {}
            written.append((partition, temp, writer.extension, writer.count, summary))
        self._open = {}
        return written


def ensure_records_dataset(root: str, store: storage.Storage, columns: tuple[str, ...] = RECORDS_DEFAULT) -> None:
    """A run that kept no record still leaves a readable (empty) Parquet dataset at `root`,
    without the columns its partition folders would have held."""
    fs, path = store.fs(root)
    if fs.exists(path) and fs.find(path):
        return
    sink = pa.BufferOutputStream()
    pq.write_table(file_schema(stored_in_folders(columns)).empty_table(), sink)
    store.write_atomically(storage.join(root, "part-00000-of-00001.parquet"), sink.getvalue().to_pybytes())


def read_records_file(store: storage.Storage, item: tuple[str, str], batch_rows: int, columns: tuple[str, ...] = RECORDS_DEFAULT) -> Iterator[pa.RecordBatch]:
    """(partition, url) of a published records/ file -> canonical batches, one row group at a time.

    `columns` are the dataset's partition columns (records_plan's): the folder names must be
    those, in order; the ones kept out of the files (stored_in_folders: split, task, origin)
    are decoded from the folder names (transforms/partitions.partition_values), the nested ones
    (source_format, label_job) are read from the file like any other field."""
    partition, url = item
    columns = tuple(columns)
    values = partition_values(partition)
    if tuple(values) != columns:
        raise ValueError(f"records/ file {url} is in folders {partition!r}, not partitioned by {','.join(columns) or 'none'}")
    in_folders = {name: values[name] for name in stored_in_folders(columns)}
    fs, path = store.fs(url)
    with fs.open(path, "rb") as handle:
        # a row group at a time, not iter_batches: pyarrow 25's batch reader keeps the nested
        # `objects` column's buffers until the file ends (146 MB held for a 160 MB file)
        parquet = pq.ParquetFile(handle)
        for group in range(parquet.num_row_groups):
            for batch in parquet.read_row_group(group).to_batches(max_chunksize=batch_rows):
                yield partitions.with_partition_columns(batch, in_folders)
