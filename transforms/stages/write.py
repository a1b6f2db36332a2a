"""WriteRecords (Parquet), WriteManifests (any format) and WriteDeadLetters, counted as they land.

Every writer works the same way, as Beam's own file sinks do: each bundle streams its elements
into one temporary file per partition under `<root>/.labelbeam-tmp/` (nothing is held in memory
beyond the open writers), and one finalize step renames the temporary files of each partition to
`<partition>/part-NNNNN-of-MMMMM<ext>`. A file is never visible under its final name before it is
complete; readers of the dataset skip dot-folders, so the temporaries never show. A bundle that
fails and is retried leaves its temporaries unnamed: only the names a committed bundle emitted
are published, so a retry never duplicates rows.

What landed is counted from the files themselves: the finalize step reads each published file's
Parquet footer (records/) or counts its elements (manifests/, errors/, refused/), and reports the counts to
the ledger next to what the writers were given and refused (transforms/stages/accounting.py),
with each file's size and sha256 (`file_record`), which the driver checks again before it
publishes (pipelines/report.py `check_files`). Partitions with nothing in them get no file.

A "document" format (COCO) publishes one file per partition instead of one per bundle: its
bundles write parts, and the finalize step streams the parts of each partition into the one
document the format names (`assemble_documents`), counting the records from the document.
A "folder" format (YOLO) is assembled the same way into the files it names as it writes them
(`open_output(partition, name)`), each counted by the format from its lines (`file_counts`:
records, objects).
COCO numbers its categories there, from the class names its parts carry, so it writes from the
record path like every other format.

The sagemaker writer, which puts class ids into every line, needs every class name of the output
before its first line when no class list is given, so ids are equal in every file. In the job
it writes from records/ once they have landed (`RereadRecords`): the records writer collects
the class names of each bundle it writes, its finalize step publishes their sorted union with
the list of files, and those files are read back, spread over the workers, into the sagemaker
writer (the columns kept in partition folders decoded from the folder names,
transforms/partitions.partition_values). Nothing on the record path waits for the class names,
so no runner holds the records for them (tests/test_graph.py); the cost is one more read of
records/. Pinning the list (`--sagemaker_classes`) makes it write from the record path
directly. WriteManifests used alone, without the names, collects them from its input first (a
side input that waits for every record).

Image and mask references are rewritten on the way into every manifest (`--uri_map`,
`--relative_output`: transforms/uri_map.References); records/ keep them as read. With
`--copy_images` each bundle copies its images beside the labels first (transforms/image_copies.py).
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from typing import Any, Callable

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.transforms.window import GlobalWindows

from transforms import errors, image_copies, partitions, storage
from transforms.checks.masks import MaskPolicy
from transforms.formats._mask_pixels import MaskReader
from transforms.formats.base import get_format
from transforms.output_files import (  # noqa: F401  (re-exported: the driver and reports name them here)
    BESIDE_TEMP,
    CLASSES,
    DOCUMENT_LAYOUTS,
    ERRORS_OUTPUT,
    RECORDS_OUTPUT,
    REFUSED_FOLDER,
    WRITE_STAGE,
    BundleFiles,
    _JsonLinesFile,
    _ManifestFile,
    _ParquetFile,
    class_names,
    count_elements,
    count_objects,
    file_record,
    manifests_output,
    publish_files_beside,
    refused_output,
)
from transforms.partitions import RECORDS_DEFAULT, partition_batch, partition_values, stored_in_folders
from transforms.schema import file_schema
from transforms.stages.accounting import LEDGER, Ledger, emit
from transforms.uri_map import References

TMP_DIR = ".labelbeam-tmp"
WRITTEN = "written"
# A finalize step's one element: {"root", "files": [(partition, url)], "classes": sorted names or None}
PUBLISHED = "published"


class _UnionFn(beam.CombineFn):
    """Sets of class names -> their sorted union (a small list: one entry per class)."""

    def create_accumulator(self):
        return set()

    def add_input(self, accumulator, names):
        accumulator |= names
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = set()
        for names in accumulators:
            merged |= names
        return merged

    def extract_output(self, accumulator):
        return sorted(accumulator)


class _WriteBundleFilesFn(beam.DoFn):
    """Streams each bundle's elements into one temporary file per partition, and counts them."""

    def __init__(self, output: str, root: str, open_file: Callable, split_element: Callable, store: storage.Storage):
        self._output = output
        self._root = root
        self._open_file = open_file
        self._split_element = split_element
        self._storage = store

    def start_bundle(self):
        self._open: dict[str, tuple[Any, Any, str]] = {}
        self._ledger = Ledger()
        self._side: dict = {}

    def process(self, element, classes=None):
        if classes is not None:  # the output's class names (a side input), for the file writers
            self._side = {"classes": classes}
        given = element.num_rows if isinstance(element, pa.RecordBatch) else 1
        self._ledger.output(self._output, {"in": given})
        for partition, piece in self._split_element(element):
            entry = self._open.get(partition)
            if entry is None:
                entry = self._open[partition] = self._new_file()
            for letter in entry[1].write(piece):
                # a refused object leaves its row written: counted apart from refused rows
                self._ledger.output(self._output, {"refused_objects" if letter.get("object_index") is not None else "refused": 1})
                yield letter

    def _new_file(self):
        temp = storage.join(self._root, TMP_DIR, uuid.uuid4().hex)
        fs, path = self._storage.fs(temp)
        fs.makedirs(storage.parent(path), exist_ok=True)
        handle = fs.open(path, "wb")
        return handle, self._open_file(handle, **self._side), temp

    def finish_bundle(self):
        for partition, (handle, writer, temp) in self._open.items():
            writer.close()
            handle.close()
            self._ledger.output(self._output, {"written": writer.count})
            if getattr(writer, "objects_given", None) is not None:
                self._ledger.output(self._output, {"objects": writer.objects_given, "objects_written": writer.objects_written, "objects_other_jobs": writer.objects_other_jobs})
            summary = getattr(writer, "summary", None) or {}
            yield beam.pvalue.TaggedOutput(WRITTEN, GlobalWindows.windowed_value((partition, temp, writer.extension, writer.count, summary)))
        self._open = {}
        yield from emit(self._ledger)


class _FinalizeFilesFn(beam.DoFn):
    """All temporary files -> part-NNNNN-of-MMMMM per partition (a document format: one document
    per partition, assembled from its parts), counted from the files."""

    def __init__(self, output: str, root: str, store: storage.Storage, layout: str, side_files: Callable | None = None, format_name: str | None = None, document: tuple[str, Any] | None = None):
        self._output = output
        self._root = root
        self._storage = store
        self._layout = layout
        self._side_files = side_files
        self._format_name = format_name  # a manifest format: its objects are counted too
        self._document = document  # (format name, options): its parts are assembled into one document per partition

    def process(self, written: list[tuple[str, str, str, int, dict]], classes=None):
        by_partition: dict[str, list[tuple[str, str]]] = {}
        fs, _ = self._storage.fs(self._root)
        if self._side_files is not None:  # e.g. the labeling config beside label_studio tasks
            for name, content in self._side_files([w[4] for w in written if w[4]], classes).items():
                self._storage.write_atomically(storage.join(self._root, name), content)
        for partition, temp, extension, count, _ in written:
            if count == 0:  # an empty partition of a bundle: no file
                fs.rm(self._storage.fs(temp)[1])
                continue
            by_partition.setdefault(partition, []).append((temp, extension))
        landed = files = size = 0
        objects_landed: int | None = None
        published: dict[str, dict] = {}
        if self._document is not None:  # one document per partition, streamed from its parts
            landed, files, size, objects_landed = self._assemble_documents(fs, written, published)
            by_partition = {}
        for partition, temps in sorted(by_partition.items()):
            temps.sort()
            folder = storage.join(self._root, partition) if partition else self._root
            fs.makedirs(self._storage.fs(folder)[1], exist_ok=True)
            for index, (temp, extension) in enumerate(temps):
                final = storage.join(folder, f"part-{index:05d}-of-{len(temps):05d}{extension}")
                temp_path, final_path = self._storage.fs(temp)[1], self._storage.fs(final)[1]
                if fs.exists(temp_path):
                    fs.mv(temp_path, final_path)
                elif not fs.exists(final_path):  # a retried finalize finds its renames done
                    raise FileNotFoundError(f"temporary file {temp} is gone and {final} was never written")
                record = file_record(fs, final_path, extension, self._layout)  # rows, bytes, sha256
                published[storage.relative_to(final, self._root)] = record
                landed += record["rows"]
                if self._format_name is not None:
                    objects = count_objects(fs, final_path, self._layout, self._format_name)
                    if objects is not None:
                        objects_landed = (objects_landed or 0) + objects
                files += 1
                size += record["bytes"]
        beside = [(w[4], self._storage.fs(w[4][BESIDE_TEMP])[1]) for w in written if w[4].get(BESIDE_TEMP)]  # e.g. mask PNGs
        files, size = (a + b for a, b in zip((files, size), publish_files_beside(fs, self._storage.fs(self._root)[1], beside, published)))
        tmp = self._storage.fs(storage.join(self._root, TMP_DIR))[1]
        if fs.exists(tmp):
            fs.rm(tmp, recursive=True)
        ledger = Ledger()
        ledger.output(self._output, {"landed": landed, "files": files, "bytes": size, "published": published, **image_copies.landed([s for s, _ in beside], published)})
        if objects_landed is not None:
            ledger.output(self._output, {"objects_landed": objects_landed})
        yield from emit(ledger, windowed=False)
        summaries = [w[4] for w in written if CLASSES in w[4]]
        classes = sorted(set().union(*(s[CLASSES] for s in summaries))) if summaries else None
        files_by_partition = [(storage.parent(name), storage.join(self._root, name)) for name in sorted(published)]
        yield beam.pvalue.TaggedOutput(PUBLISHED, {"root": self._root, "files": files_by_partition, CLASSES: classes})

    def _assemble_documents(self, fs, written: list, published: dict[str, dict]) -> tuple[int, int, int, int | None]:
        """The parts of each partition -> its one document (the format names and writes it), or
        the folder of files a "folder" format names as it writes them, counted from the files.
        A retried finalize that finds the parts gone and the files in place counts them again
        (a folder format: every file under the folders its partitions wrote)."""
        fmt = get_format(self._document[0])
        folder = self._layout == "folder"
        parts: dict[str, list[tuple[str, dict]]] = {}
        representative: dict[str, str] = {}  # document name -> a partition of it
        for partition, temp, _, count, summary in written:
            if count:  # partitions whose documents share a name (no origin, ground truth) share it
                name = fmt.document_name(partition)
                representative.setdefault(name, partition)
                parts.setdefault(representative[name], []).append((temp, summary))
        documents, finals = [], {}
        for partition, items in sorted(parts.items()):
            items.sort(key=lambda item: item[0])
            if not folder:
                finals[fmt.document_name(partition)] = storage.join(self._root, fmt.document_name(partition))
            openers = [(functools.partial(fs.open, self._storage.fs(temp)[1], "rb"), summary) for temp, summary in items]
            documents.append((partition, openers))
        if any(not fs.exists(self._storage.fs(temp)[1]) for items in parts.values() for temp, _ in items):
            if folder:
                root = self._storage.fs(self._root)[1].rstrip("/")
                finals = {path[len(root) + 1:]: storage.join(self._root, path[len(root) + 1:]) for path in sorted(fs.find(root)) if f"/{TMP_DIR}/" not in path and f"/{image_copies.IMAGES_FOLDER}/" not in path[len(root):]}
            missing = [final for final in finals.values() if not fs.exists(self._storage.fs(final)[1])]
            if missing or not finals:
                raise FileNotFoundError(f"the parts of {(missing or [self._root])[0]} are gone and it was never written")
        else:

            @contextlib.contextmanager
            def open_output(partition: str | None, name: str | None = None):
                name = name or fmt.document_name(partition)
                final = finals[name] = storage.join(self._root, name)
                temp = self._storage.fs(storage.join(self._root, TMP_DIR, f"document-{uuid.uuid4().hex}"))[1]
                with fs.open(temp, "wb") as handle:
                    yield handle
                final = self._storage.fs(final)[1]
                fs.makedirs(storage.parent(final), exist_ok=True)
                fs.mv(temp, final)

            fmt.assemble_documents(documents, self._document[1], open_output)
        landed = size = 0
        objects_landed: int | None = None
        for name, final in sorted(finals.items()):
            path = self._storage.fs(final)[1]
            if folder:  # the format counts what each of its files holds, from its lines
                record = file_record(fs, path, fmt.extension, "jsonl")  # rows = lines, bytes, sha256
                record["rows"], objects = fmt.file_counts(name, record["rows"])
            else:
                record = file_record(fs, path, fmt.extension, self._layout)  # rows, bytes, sha256
                objects = count_objects(fs, path, self._layout, fmt.name)
            published[storage.relative_to(final, self._root)] = record
            landed += record["rows"]
            size += record["bytes"]
            if objects is not None:
                objects_landed = (objects_landed or 0) + objects
        return landed, len(finals), size, objects_landed


class _WriteFiles(beam.PTransform):
    """Shared mechanics: bundle files, then one finalize. -> {dead_letters, ledger}."""

    def __init__(self, output: str, root: str, open_file, split_element, store: storage.Storage, layout: str = "jsonl", classes: bool = False, side_files: Callable | None = None, class_names=None, format_name: str | None = None, document: tuple[str, Any] | None = None):
        super().__init__()
        self._format_name = format_name
        self._document = document
        self._classes = classes
        self._class_names = class_names  # a PCollection of one sorted list, when already known
        self._side_files = side_files
        self._output = output
        self._root = root.rstrip("/")
        self._open_file = open_file
        self._split_element = split_element
        self._storage = store
        self._layout = layout

    def expand(self, pcolls):
        pcolls = pcolls if isinstance(pcolls, (list, tuple)) else [pcolls]
        written, ledgers, letters = [], [], []
        side = {}
        if self._classes and self._class_names is not None:
            side = {"classes": beam.pvalue.AsSingleton(self._class_names)}
        elif self._classes:  # a first pass: every class name of the input, before any file is written
            names = (
                tuple(pcolls)
                | "AllForClasses" >> beam.Flatten()
                | "ClassNames" >> beam.Map(class_names)
                | "UnionClassNames" >> beam.CombineGlobally(_UnionFn())
            )
            side = {"classes": beam.pvalue.AsSingleton(names)}
        for i, pcoll in enumerate(pcolls):
            out = pcoll | f"WriteBundleFiles{i or ''}" >> beam.ParDo(
                _WriteBundleFilesFn(self._output, self._root, self._open_file, self._split_element, self._storage), **side
            ).with_outputs(WRITTEN, LEDGER, main=errors.DEAD_LETTERS)
            written.append(out[WRITTEN])
            ledgers.append(out[LEDGER])
            letters.append(out[errors.DEAD_LETTERS])
        finalized = (
            tuple(written)
            | "AllTempFiles" >> beam.Flatten()
            | "CollectTempFiles" >> beam.combiners.ToList()
            | "Finalize" >> beam.ParDo(_FinalizeFilesFn(self._output, self._root, self._storage, self._layout, self._side_files, self._format_name, self._document), **side).with_outputs(LEDGER, PUBLISHED, main="unused")
        )
        ledgers.append(finalized[LEDGER])
        return {errors.DEAD_LETTERS: letters, LEDGER: ledgers, PUBLISHED: finalized[PUBLISHED]}


def ensure_records_dataset(root: str, store: storage.Storage, columns: tuple[str, ...] = RECORDS_DEFAULT) -> None:
    """A run that kept no record still leaves a readable (empty) Parquet dataset at `root`,
    without the columns its partition folders would have held."""
    fs, path = store.fs(root)
    if fs.exists(path) and fs.find(path):
        return
    sink = pa.BufferOutputStream()
    pq.write_table(file_schema(stored_in_folders(columns)).empty_table(), sink)
    store.write_atomically(storage.join(root, "part-00000-of-00001.parquet"), sink.getvalue().to_pybytes())


@beam.typehints.with_input_types(pa.RecordBatch)
class WriteRecords(beam.PTransform):
    """Canonical batches -> a Parquet dataset, hive-partitioned by `columns` (split and task
    unless --partition_by says otherwise; transforms/partitions.py).
    -> {dead_letters, ledger, published}; with `collect_classes`, `published` also carries the
    sorted class names of everything written (for RereadRecords)."""

    def __init__(self, root: str, store: storage.Storage, columns: tuple[str, ...] = RECORDS_DEFAULT, collect_classes: bool = False):
        super().__init__()
        self._root = root
        self._storage = store
        self._columns = tuple(columns)
        self._collect_classes = collect_classes

    def expand(self, batches):
        return batches | _WriteFiles(
            RECORDS_OUTPUT,
            self._root,
            functools.partial(_ParquetFile, columns=self._columns, collect_classes=self._collect_classes),
            functools.partial(partition_batch, columns=self._columns),
            self._storage,
        )


class _ReadRecordsFileFn(beam.DoFn):
    """(partition, url) of a published records/ file -> canonical batches, one row group at a time.

    `columns` are the dataset's partition columns (WriteRecords'): the folder names must be
    those, in order; the ones kept out of the files (stored_in_folders: split, task, origin)
    are decoded from the folder names (transforms/partitions.partition_values), the nested ones
    (source_format, label_job) are read from the file like any other field."""

    def __init__(self, store: storage.Storage, batch_rows: int, columns: tuple[str, ...] = RECORDS_DEFAULT):
        self._storage = store
        self._batch_rows = batch_rows
        self._columns = tuple(columns)
        self._in_folders = stored_in_folders(self._columns)

    def process(self, item):
        partition, url = item
        values = partition_values(partition)
        if tuple(values) != self._columns:
            raise ValueError(f"records/ file {url} is in folders {partition!r}, not partitioned by {','.join(self._columns) or 'none'}")
        in_folders = {name: values[name] for name in self._in_folders}
        fs, path = self._storage.fs(url)
        with fs.open(path, "rb") as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=self._batch_rows):
                yield partitions.with_partition_columns(batch, in_folders)


class RereadRecords(beam.PTransform):
    """WriteRecords' `published` element -> {records: the canonical batches its files hold, read
    back spread over the workers; classes: one sorted list of their class names}. The writers
    that number classes read from here, so the record path never waits for the names."""

    def __init__(self, store: storage.Storage, batch_rows: int = 1000, columns: tuple[str, ...] = RECORDS_DEFAULT):
        super().__init__()
        self._storage = store
        self._batch_rows = batch_rows
        self._columns = tuple(columns)  # WriteRecords' partition columns

    def expand(self, published):
        records = (
            published
            | "PublishedFiles" >> beam.FlatMap(lambda p: p["files"])
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadRecordsFiles" >> beam.ParDo(_ReadRecordsFileFn(self._storage, self._batch_rows, self._columns))
        )
        classes = published | "PublishedClasses" >> beam.Map(lambda p: p[CLASSES] or [])
        return {"records": records, CLASSES: classes}


@beam.typehints.with_input_types(pa.RecordBatch)
class WriteManifests(beam.PTransform):
    """Canonical batches -> manifests of one format under <root>/split=<split>/[task=<task>/],
    or under the folders of `partition_by` (plus the columns the format cannot mix in one file)."""

    def __init__(
        self,
        root: str,
        format_name: str,
        options: Any = None,
        store: storage.Storage | None = None,
        partition_by: tuple[str, ...] | None = None,
        class_names=None,
        mask_policy: Any = None,
        label_attributes: tuple[str, ...] = (),
        references: References | None = None,
        published_root: str | None = None,
        copies: image_copies.ImageCopies | None = None,
    ):
        super().__init__()
        fmt = get_format(format_name)
        self._label_attributes = tuple(label_attributes)
        # --copy_images: each image copied beside the labels, referenced as the format reads copies
        self._references = (references or References()).for_copies(copies.folder, fmt.copied_image_reference) if copies else references
        self._class_names = class_names  # RereadRecords' classes, else collected from the input
        self._root = root
        self._format_name = format_name
        self._options = fmt.options(options)
        self._storage = store or storage.Storage()
        # files beside the manifests (mask PNGs) refer to where `root` is published (a staged run: under --output)
        self._files = functools.partial(BundleFiles, root, storage.join(root, TMP_DIR), self._storage, published_root=published_root or root, references=references)
        self._columns = fmt.manifest_partitions(partition_by)
        self._copies = copies.per_split("split" in self._columns) if copies else None
        self._layout = fmt.file_layout
        self._classes = fmt.needs_class_names(self._options)
        # writers that write a mask's pixels open it with the job's storage and mask policy
        self._masks = MaskReader(mask_policy or MaskPolicy(), self._storage)

    def expand(self, batches):
        fmt = get_format(self._format_name)
        return batches | _WriteFiles(
            manifests_output(self._format_name),
            self._root,
            functools.partial(_ManifestFile, format_name=self._format_name, options=self._options, masks=self._masks, label_attributes=self._label_attributes, references=self._references, files=self._files, copies=self._copies),
            functools.partial(_partition_as_written, columns=self._columns, format_name=self._format_name, options=self._options),
            self._storage,
            self._layout,
            classes=self._classes,
            side_files=fmt.side_files,
            class_names=self._class_names,
            format_name=self._format_name,
            document=(self._format_name, self._options) if self._layout in DOCUMENT_LAYOUTS else None,
        )


def _partition_as_written(batch: pa.RecordBatch, columns, format_name: str, options: Any):
    """The format's view of a batch (ManifestFormat.output_view), split into its partitions."""
    return partition_batch(get_format(format_name).output_view(batch, options), columns)


def _dead_letters_in_one_partition(letter):
    return [("", [letter])]


@beam.typehints.with_input_types(dict)
class WriteDeadLetters(beam.PTransform):
    """Dead-letter dicts (one or several PCollections) -> JSON lines under <root>/part-*.jsonl,
    counted as `output` (errors, or refused/<format> for one writer's refusals)."""

    def __init__(self, root: str, store: storage.Storage, output: str = ERRORS_OUTPUT):
        super().__init__()
        self._root = root
        self._storage = store
        self._output = output

    def expand(self, letters):
        return letters | _WriteFiles(self._output, self._root, _JsonLinesFile, _dead_letters_in_one_partition, self._storage)

