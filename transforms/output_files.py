"""The files one writer bundle streams rows into, and how a published file is counted.

Beam-free: transforms/writing.BundleWriter opens one of these per partition of a bundle, closes it
at the bundle's end and renames it at finalize. `_ParquetFile` writes records/ (row groups
bounded in bytes), `_ManifestFile` a manifest of one format (its layout: lines, a JSON array,
or a document part the finalize step assembles), `_JsonLinesFile` dead letters. What landed is
counted from the files themselves: `count_elements` (Parquet footers, manifest elements, dead-
letter lines), `count_objects` (a manifest's objects in its format's units) and `file_record`
(rows, bytes and sha256 of one published file, checked again before publishing).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms import errors, schema, storage
from transforms.checks.masks import BACKGROUND
from transforms.formats.base import WriteContext, get_format
from transforms.label_jobs import select_label_jobs
from transforms.partitions import RECORDS_DEFAULT, stored_in_folders
from transforms.schema import file_schema
from transforms.uri_map import References

CLASSES = "classes"
WRITE_STAGE = errors.WRITE
# layouts assembled from parts at finalize: one document per partition (COCO), or a folder of
# files the format names as it writes them (YOLO: a label file per record, a list, data.yaml)
DOCUMENT_LAYOUTS = ("document", "folder")

RECORDS_OUTPUT = "records"
ERRORS_OUTPUT = "errors"
REFUSED_FOLDER = "refused"


def manifests_output(format_name: str) -> str:
    return f"manifests/{format_name}"


def refused_output(format_name: str) -> str:
    """Where the rows the writer of `format_name` refused land: apart from true dead letters,
    because the record itself was kept (records/ and the other outputs have it)."""
    return f"{REFUSED_FOLDER}/{format_name}"



# Parquet dictionary pages only for the columns with few distinct values (file, format, class
# and job names): on ids, URIs, dates and coordinates they cost a third of the write time and
# zstd makes the file as small without them (docs/benchmarks.md).
_DICTIONARY_PATHS = (
    "source.uri", "source.format", "source.attribute", "image.format", "origin",
    "labels.list.element.name", "objects.list.element.label", "annotation.job_name",
    "annotation.annotator", "annotation.model_version",
    "mask.color_map.list.element.class_name", "mask.color_map.list.element.hex_color",
    "mask.class_pixels.list.element.class_name",
)


class _ParquetFile:
    """Record batches -> one Parquet file, partition columns left to the folder names.

    Batches arrive small (a batch's share of one partition); they are buffered into row groups
    so the files are fast to write and to scan. A bundle keeps one file open per partition
    (split x task), each holding its pending row group twice (Arrow, then encoded), so the bound
    is in bytes: 4 MB row groups kept a worker's peak 100 MB lower than 16 MB ones on the
    1M-line benchmark, with scans as fast (docs/benchmarks.md).
    """

    extension = ".parquet"
    ROW_GROUP_ROWS = 32 * 1024
    ROW_GROUP_BYTES = 4 << 20

    def __init__(self, handle, columns: tuple[str, ...] = RECORDS_DEFAULT, collect_classes: bool = False):
        self.handle = handle
        self.dropped = list(stored_in_folders(columns))
        self.schema = file_schema(tuple(self.dropped))
        dictionary = [path for path in _DICTIONARY_PATHS if path.split(".")[0] in self.schema.names]
        self.writer = pq.ParquetWriter(handle, self.schema, compression="zstd", use_dictionary=dictionary)
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.pending_bytes = 0
        self.count = 0
        # the class names this file holds, for the writers that number classes (RereadRecords)
        self.summary = {CLASSES: set()} if collect_classes else {}

    def write(self, batch: pa.RecordBatch) -> list[dict]:
        if CLASSES in self.summary:
            self.summary[CLASSES] |= class_names(batch)
        batch = _compact(batch.drop_columns(self.dropped))
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        self.pending_bytes += batch.nbytes
        self.count += batch.num_rows
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


def _compact(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch`, copied when it is a small slice of larger buffers.

    A partition's rows arrive as zero-copy slices of each sorted batch, and a pending slice
    keeps its whole parent alive: a small partition (a test split of a rare task) waits for a
    row group through hundreds of batches, each pinned whole. A copy of the slice costs its own
    bytes only (1,000,000-line run in process: Arrow's peak allocation 128 -> 59 MiB, peak RSS
    485 -> 414 MiB). Larger slices fill their row group within a few batches: not copied."""
    if batch.get_total_buffer_size() > 8 * batch.nbytes + 4096:
        return batch.take(pa.array(np.arange(batch.num_rows)))
    return batch


def class_names(batch: pa.RecordBatch) -> set[str]:
    """The class names a batch uses: image labels, object labels and mask classes."""
    names: set[str] = set()
    for column, field in (("labels", "name"), ("objects", "label")):
        values = pc.struct_field(pc.list_flatten(batch.column(column)), field)
        names.update(name for name in pc.unique(values).to_pylist() if name is not None)
    # the classes of semantic masks (written as COCO categories, brush labels, polygons)
    colours = pc.list_flatten(pc.struct_field(batch.column("mask"), "color_map"))
    mask_names = pc.unique(pc.struct_field(colours, "class_name")).to_pylist()
    names.update(n for n in mask_names if n is not None and n.strip().casefold() != BACKGROUND)
    return names


# a file summary's keys: the temporary folder of the files its writer put beside the manifests,
# and the top folders (under the manifests' root) they are published in
BESIDE_TEMP = "files_beside"
BESIDE_FOLDERS = "files_beside_folders"


class BundleFiles:
    """Files a writer puts beside its manifests (the sagemaker writer's mask PNGs), written from
    the bundle into a temporary folder of its own and moved to their names by the finalize step,
    as the manifests are: a retried bundle's files are never published, and every published
    one is counted (rows 0, bytes, sha256: `publish_files_beside`, called by the finalize step).
    `published_root` is where the manifests' root is published (the URL a line refers to)."""

    def __init__(self, root: str, temp_root: str, store: storage.Storage, summary: dict, published_root: str | None = None, references: Any = None):
        self.temp = storage.join(temp_root, f"beside-{uuid.uuid4().hex}")
        self.store = store
        self.summary = summary
        self.published_root = (published_root or root).rstrip("/")
        self.references = references

    def write(self, name: str, content: bytes) -> str:
        fs, path = self.target(name)
        with fs.open(path, "wb") as handle:
            handle.write(content)
        url = storage.join(self.published_root, name)
        return self.references.rewrite(url) if self.references is not None else url

    def target(self, name: str) -> tuple[Any, str]:
        """(filesystem, path) the file published as `name` is written to now (e.g. streamed
        there by transforms/image_copies.py); its top folder is published with the manifests."""
        fs, path = self.store.fs(storage.join(self.temp, name))
        fs.makedirs(storage.parent(path), exist_ok=True)
        self.summary[BESIDE_TEMP] = self.temp
        folders = self.summary.setdefault(BESIDE_FOLDERS, [])
        if name.split("/", 1)[0] not in folders:
            folders.append(name.split("/", 1)[0])
        return fs, path


def publish_files_beside(fs, root: str, beside: list[tuple[dict, str]], published: dict[str, dict]) -> tuple[int, int]:
    """The finalize step's part for BundleFiles: each committed bundle's files (`beside`: its
    file summary and the path of its temporary folder) moved to their names under `root` (a
    path of `fs`), then every file under their folders counted into `published` (rows 0: they
    hold no record; bytes and sha256 checked again before publishing) -> (files, bytes). A
    retried finalize finds them moved and counts them the same."""
    root = root.rstrip("/")
    folders: set[str] = set()
    for summary, temp in beside:
        folders.update(summary.get(BESIDE_FOLDERS) or ())
        temp = temp.rstrip("/")
        for path in sorted(fs.find(temp)) if fs.exists(temp) else ():
            final = root + "/" + path[len(temp) + 1:]
            fs.makedirs(storage.parent(final), exist_ok=True)
            fs.mv(path, final)
    count = size = 0
    for folder in sorted(folders):
        base = root + "/" + folder
        for path in sorted(fs.find(base)) if fs.exists(base) else ():
            record = file_record(fs, path, "." + path.rsplit(".", 1)[-1], "jsonl")
            record["rows"] = 0  # a mask file: its record is counted in its manifest
            published[path[len(root) + 1:]] = record
            count += 1
            size += record["bytes"]
    return count, size


class _ManifestFile:
    """Record batches -> one manifest file of a format; rows it cannot represent -> dead letters."""

    def __init__(self, handle, format_name: str, options: Any, classes: list[str] | None = None, masks: Any = None, label_attributes: tuple[str, ...] = (), references: References | None = None, files: Any = None, copies: Any = None):
        self.handle = handle
        self.copies = copies  # --copy_images: transforms/image_copies.ImageCopies
        self._files_factory = files  # (summary) -> BundleFiles, for writers that write files beside
        self._files = None
        self.masks = masks
        self.label_attributes = tuple(label_attributes)  # --label_attribute (transforms/label_jobs.py)
        self.objects_other_jobs = 0  # objects of label jobs a writer does not take
        self.references = references if references else None  # --uri_map / --relative_output
        self.format = get_format(format_name)
        self.extension = self.format.extension
        self.options = options
        self.classes = classes
        self.summary: dict = {}
        self.array = self.format.file_layout == "json_array"
        self.document = None
        self.count = 0
        self.objects_refused = 0  # objects refused from rows written without them
        self.objects_given = 0  # objects of the rows given to the writer
        self.objects_written = 0  # in the format's units (WriteContext.objects_written)
        if self.array:
            handle.write(b"[")
        if self.format.file_layout in DOCUMENT_LAYOUTS:  # the format streams its parts of a document itself
            self.document = self.format.open_document(handle, options, classes, self.summary)

    def write(self, batch: pa.RecordBatch) -> list[dict]:
        self._pending: dict[int, tuple[dict, list[int]]] = {}
        if getattr(self.document, "write_batch", None) is not None and self.copies is None and self.references is None:
            # the document takes the batch: rows of the common shapes built from its columns,
            # the others asked for as dicts (the same rows this method would give it)
            ctx = WriteContext(options=self.options, classes=self.classes, summary=self.summary, masks=self.masks, files=self._beside())
            self.objects_given += pc.sum(pc.list_value_length(batch.column("objects"))).as_py() or 0
            self.document.write_batch(batch, ctx, self._document_rows)
            self.count = self.document.count
            self.objects_written = self.document.annotations_written
            return self._letters(ctx)
        write_batch = getattr(self.format, "write_batch", None)
        if write_batch is not None and self.document is None and self.copies is None and self.references is None:
            # the format takes the batch: lines of the common shapes built from its columns,
            # the other rows asked for as dicts (the same rows this method would give it)
            ctx = WriteContext(options=self.options, classes=self.classes, summary=self.summary, masks=self.masks, files=self._beside())
            counted = self.objects_given, self.objects_other_jobs  # restored if the row path takes over
            self.objects_given += pc.sum(pc.list_value_length(batch.column("objects"))).as_py() or 0
            try:
                elements = write_batch(batch, ctx, self._document_rows)
            except Exception:  # noqa: BLE001 - the row path below finds the row that broke it
                (self.objects_given, self.objects_other_jobs), self._pending = counted, {}
            else:
                for element in elements:
                    self._write_element(element)
                self.objects_written += ctx.objects_written
                return self._letters(ctx)
        rows = self._one_job_each(schema.batch_rows(batch))
        self.objects_given += sum(len(row.get("objects") or ()) for row in rows)
        not_copied = []
        if self.copies is not None:  # each image streamed beside the labels, the row pointed at its copy
            not_copied = self.copies.copy(rows, self._beside())
            refused_ids = {id(row) for row, _, _ in not_copied}
            rows = [row for row in rows if id(row) not in refused_ids]
        masks = self.masks
        if self.references is not None:  # written references rewritten; masks read where the checks read them
            masks = masks.with_sources(rows) if masks is not None else None
            self.references.apply(rows)
        ctx = WriteContext(options=self.options, classes=self.classes, summary=self.summary, masks=masks, files=self._beside(), rejected=list(not_copied))
        if self.document is not None:
            self.document.write(rows, ctx)  # refuses what it cannot write, row by row
            self.count = self.document.count
            self.objects_written = self.document.annotations_written
            return self._letters(ctx)
        try:
            elements = list(self.format.write(rows, ctx))  # one call per batch
        except Exception:  # noqa: BLE001 - find the row that broke the writer: it alone is refused
            ctx, elements = WriteContext(options=self.options, classes=self.classes, summary=self.summary, masks=self.masks, files=self._beside(), rejected=list(not_copied)), []
            for row in rows:
                try:
                    elements.extend(self.format.write([row], ctx))
                except Exception as exc:  # noqa: BLE001 - a writer bug must not stop the job
                    ctx.reject(row, errors.INTERNAL_ERROR, f"the writer failed: {exc!r}")
        for element in elements:
            self._write_element(element)
        self.objects_written += ctx.objects_written
        return self._letters(ctx)

    def _document_rows(self, batch: pa.RecordBatch) -> list[dict]:
        """The rows of `batch` as `write` gives them to a document (each with its label jobs)."""
        rows = schema.batch_rows(batch)
        given = sum(len(row.get("objects") or ()) for row in rows)
        rows = self._one_job_each(rows)
        self.objects_given -= given - sum(len(row.get("objects") or ()) for row in rows)
        return rows

    def _beside(self):
        if self._files is None and self._files_factory is not None:
            self._files = self._files_factory(self.summary)
        return self._files

    def _one_job_each(self, rows: list[dict]) -> list[dict]:
        """Each row with the label jobs the writer takes (label_jobs.select_label_jobs); the
        rows it changed are remembered, so a refused object is named in its record as read."""
        if not self.format.one_label_job:
            return rows
        chosen = []
        for row in rows:
            selected, kept = select_label_jobs(row, self.label_attributes)
            if selected is not row:
                self.objects_other_jobs += len(row.get("objects") or ()) - len(kept)
                self._pending[id(selected)] = (row, kept)
            chosen.append(selected)
        return chosen

    def _letters(self, ctx: WriteContext) -> list[dict]:
        """The rows and the objects this file refused, as refusals of its output (refused/<format>/)."""
        output = manifests_output(self.format.name)
        if self.copies is not None:  # a refused row's image copy is taken back
            self.copies.withdraw([row for row, _, _ in ctx.rejected], self._beside())
            self.copies.forget()
        letters = [
            errors.row_dead_letter(row, WRITE_STAGE, code, f"{self.format.name}: {message}", output=output)
            for row, code, message in ctx.rejected
        ]
        self.objects_refused += len(ctx.rejected_objects)
        for row, index, code, message in ctx.rejected_objects:
            source, kept = self._pending.get(id(row), (row, None))
            if kept is not None:  # its index in the record (past the objects: a mask, say)
                index = kept[index] if index < len(kept) else index - len(kept) + len(source.get("objects") or ())
            letters.append(errors.object_dead_letter(source, index, WRITE_STAGE, code, f"{self.format.name}: object {index}: {message}", output=output))
        self._pending = {}
        return letters

    def _write_element(self, element: bytes) -> None:
        if self.array:
            self.handle.write(b",\n" if self.count else b"\n")
            self.handle.write(element)
        else:
            self.handle.write(element + b"\n")
        self.count += 1

    def close(self) -> None:
        if self.copies is not None and self._files is not None:
            self.copies.forget(self._files)
        if self.document is not None:
            self.document.close()  # notes in the summary what the finalize step's assembly needs
        if self.array:
            self.handle.write(b"\n]\n" if self.count else b"]\n")


class _JsonLinesFile:
    """Plain dicts -> JSON lines (dead letters)."""

    extension = ".jsonl"

    def __init__(self, handle):
        self.handle = handle
        self.count = 0

    def write(self, rows: list[dict]) -> list[dict]:
        self.handle.write(b"".join(orjson.dumps(row) + b"\n" for row in rows))
        self.count += len(rows)
        return []

    def close(self) -> None:
        pass


def count_objects(fs, path: str, layout: str, format_name: str) -> int | None:
    """Objects a published manifest holds, read from the file in the format's units (a
    document: ManifestFormat.objects_in_file; else each element through objects_in); None if
    not counted."""
    fmt = get_format(format_name)
    if layout == "document":
        with fs.open(path, "rb") as handle:
            return fmt.objects_in_file(handle)
    if fmt.objects_in({}) is None:
        return None
    found = 0
    with fs.open(path, "rb") as handle:
        for line in handle:  # one element per line in both layouts (see _ManifestFile)
            line = line.strip().rstrip(b",")
            if line and line not in (b"[", b"]"):
                found += fmt.objects_in(orjson.loads(line))
    return found


def count_elements(fs, path: str, extension: str, layout: str, format_name: str | None = None) -> int:
    """Rows a published file holds, read from the file: a Parquet footer, its elements, or what
    a document of format `format_name` says it holds."""
    if extension == ".parquet":
        with fs.open(path, "rb") as handle:
            return pq.ParquetFile(handle).metadata.num_rows
    if layout == "document":  # the format's document says how many records it holds
        with fs.open(path, "rb") as handle:
            return get_format(format_name).records_in_file(handle, fs.size(path))
    newlines = 0
    with fs.open(path, "rb") as handle:
        while True:
            chunk = handle.read(8 << 20)
            if not chunk:
                break
            newlines += chunk.count(b"\n")
    if layout == "json_array":  # '[' + one element per line + ']' (see _ManifestFile)
        return max(newlines - 2, 0)
    return newlines


def file_record(fs, path: str, extension: str, layout: str, format_name: str | None = None) -> dict:
    """What a published file holds, read from it: its rows (count_elements), size and sha256.
    run.json keeps these per file; the driver reads every file again before publishing and
    compares (pipelines/report.py), so a file damaged after it was counted is never published."""
    digest, size, newlines = hashlib.sha256(), 0, 0
    with fs.open(path, "rb") as handle:
        while True:
            chunk = handle.read(8 << 20)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
            newlines += chunk.count(b"\n")
    if extension == ".parquet" or layout == "document":
        rows = count_elements(fs, path, extension, layout, format_name)
    else:
        rows = max(newlines - 2, 0) if layout == "json_array" else newlines
    return {"rows": rows, "bytes": size, "sha256": digest.hexdigest()}
