"""The finalize step of a writer: its bundles' temporary files published, counted from the files.

`finalize` renames the temporary files of each partition to `<partition>/part-NNNNN-of-MMMMM<ext>`
(transforms/writing.py has how they were written). A file is never visible under its final name
before it is complete; readers of the dataset skip dot-folders, so the temporaries never show.
Partitions with nothing in them get no file.

What landed is counted from the files themselves: each published file's Parquet footer
(records/) or its elements (manifests/, errors/, refused/), reported to the ledger next to what
the writers were given and refused, with each file's size and sha256 (`file_record`), which the
driver checks again before it publishes (pipelines/report.py `check_files`).

A "document" format (COCO) publishes one file per partition instead of one per bundle: its
bundles write parts, and `finalize` streams the parts of each partition into the one document
the format names (`assemble_documents`), counting the records from the document; its size and
sha256 are taken as it is written (`_HashingWriter`), not by reading it back. A "folder"
format (YOLO) is assembled the same way into the files it names as it writes them
(`open_output(partition, name)`), each counted by the format from its lines (`file_counts`:
records, objects). Beam-free: transforms/stages/write.py runs it once per writer.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import uuid

from transforms import image_copies, storage
from transforms.formats.base import get_format
from transforms.ledger import Ledger
from transforms.output_files import (
    BESIDE_TEMP,
    CLASSES,
    count_elements,
    count_objects,
    file_record,
    publish_files_beside,
)
from transforms.writing import TMP_DIR, OutputPlan


def finalize(plan: OutputPlan, written: list[tuple[str, str, str, int, dict]], classes=None) -> tuple[Ledger, dict]:
    """Every bundle's temporary files (BundleWriter.close()) -> the published files, and
    (the ledger's counts of what landed, {"root", "files": [(partition, url)], "classes": sorted
    names of the records' summaries or None})."""
    store, root, layout = plan.store, plan.root, plan.layout
    by_partition: dict[str, list[tuple[str, str]]] = {}
    fs, _ = store.fs(root)
    if plan.side_files is not None:  # e.g. the labeling config beside label_studio tasks
        for name, content in plan.side_files([w[4] for w in written if w[4]], classes).items():
            store.write_atomically(storage.join(root, name), content)
    for partition, temp, extension, count, _ in written:
        if count == 0:  # an empty partition of a bundle: no file
            fs.rm(store.fs(temp)[1])
            continue
        by_partition.setdefault(partition, []).append((temp, extension))
    landed = files = size = 0
    objects_landed: int | None = None
    published: dict[str, dict] = {}
    if plan.document is not None:  # one document per partition, streamed from its parts
        landed, files, size, objects_landed = _assemble_documents(plan, fs, written, published)
        by_partition = {}
    for partition, temps in sorted(by_partition.items()):
        temps.sort()
        folder = storage.join(root, partition) if partition else root
        fs.makedirs(store.fs(folder)[1], exist_ok=True)
        for index, (temp, extension) in enumerate(temps):
            final = storage.join(folder, f"part-{index:05d}-of-{len(temps):05d}{extension}")
            temp_path, final_path = store.fs(temp)[1], store.fs(final)[1]
            if fs.exists(temp_path):
                fs.mv(temp_path, final_path)
            elif not fs.exists(final_path):  # a retried finalize finds its renames done
                raise FileNotFoundError(f"temporary file {temp} is gone and {final} was never written")
            record = file_record(fs, final_path, extension, layout)  # rows, bytes, sha256
            published[storage.relative_to(final, root)] = record
            landed += record["rows"]
            if plan.format_name is not None:
                objects = count_objects(fs, final_path, layout, plan.format_name)
                if objects is not None:
                    objects_landed = (objects_landed or 0) + objects
            files += 1
            size += record["bytes"]
    beside = [(w[4], store.fs(w[4][BESIDE_TEMP])[1]) for w in written if w[4].get(BESIDE_TEMP)]  # e.g. mask PNGs
    files, size = (a + b for a, b in zip((files, size), publish_files_beside(fs, store.fs(root)[1], beside, published)))
    tmp = store.fs(storage.join(root, TMP_DIR))[1]
    if fs.exists(tmp):
        fs.rm(tmp, recursive=True)
    ledger = Ledger()
    ledger.output(plan.output, {"landed": landed, "files": files, "bytes": size, "published": published, **image_copies.landed([s for s, _ in beside], published)})
    if objects_landed is not None:
        ledger.output(plan.output, {"objects_landed": objects_landed})
    summaries = [w[4] for w in written if CLASSES in w[4]]
    names = sorted(set().union(*(s[CLASSES] for s in summaries))) if summaries else None
    files_by_partition = [(storage.parent(name), storage.join(root, name)) for name in sorted(published)]
    return ledger, {"root": root, "files": files_by_partition, CLASSES: names}


def _assemble_documents(plan: OutputPlan, fs, written: list, published: dict[str, dict]) -> tuple[int, int, int, int | None]:
    """The parts of each partition -> its one document (the format names and writes it), or
    the folder of files a "folder" format names as it writes them, counted from the files.
    A retried finalize that finds the parts gone and the files in place counts them again
    (a folder format: every file under the folders its partitions wrote)."""
    store, root, layout = plan.store, plan.root, plan.layout
    fmt = get_format(plan.document[0])
    folder = layout == "folder"
    parts: dict[str, list[tuple[str, dict]]] = {}
    representative: dict[str, str] = {}  # document name -> a partition of it
    for partition, temp, _, count, summary in written:
        if count:  # partitions whose documents share a name (no origin, ground truth) share it
            name = fmt.document_name(partition)
            representative.setdefault(name, partition)
            parts.setdefault(representative[name], []).append((temp, summary))
    documents, finals = [], {}
    hashed: dict[str, _HashingWriter] = {}  # document name -> what was written to it
    for partition, items in sorted(parts.items()):
        items.sort(key=lambda item: item[0])
        if not folder:
            finals[fmt.document_name(partition)] = storage.join(root, fmt.document_name(partition))
        openers = [(functools.partial(fs.open, store.fs(temp)[1], "rb"), summary) for temp, summary in items]
        documents.append((partition, openers))
    if any(not fs.exists(store.fs(temp)[1]) for items in parts.values() for temp, _ in items):
        if folder:
            base = store.fs(root)[1].rstrip("/")
            finals = {path[len(base) + 1:]: storage.join(root, path[len(base) + 1:]) for path in sorted(fs.find(base)) if f"/{TMP_DIR}/" not in path and f"/{image_copies.IMAGES_FOLDER}/" not in path[len(base):]}
        missing = [final for final in finals.values() if not fs.exists(store.fs(final)[1])]
        if missing or not finals:
            raise FileNotFoundError(f"the parts of {(missing or [root])[0]} are gone and it was never written")
    else:

        @contextlib.contextmanager
        def open_output(partition: str | None, name: str | None = None):
            name = name or fmt.document_name(partition)
            final = finals[name] = storage.join(root, name)
            temp = store.fs(storage.join(root, TMP_DIR, f"document-{uuid.uuid4().hex}"))[1]
            with fs.open(temp, "wb") as handle:
                if folder:  # each file counted from its lines below
                    yield handle
                else:
                    hashed[name] = _HashingWriter(handle)
                    yield hashed[name]
            final = store.fs(final)[1]
            fs.makedirs(storage.parent(final), exist_ok=True)
            fs.mv(temp, final)

        fmt.assemble_documents(documents, plan.document[1], open_output)
    landed = size = 0
    objects_landed: int | None = None
    for name, final in sorted(finals.items()):
        path = store.fs(final)[1]
        if folder:  # the format counts what each of its files holds, from its lines
            record = file_record(fs, path, fmt.extension, "jsonl")  # rows = lines, bytes, sha256
            record["rows"], objects = fmt.file_counts(name, record["rows"])
        else:
            if name in hashed:  # its size and sha256 as it was written; its rows from its own text
                record = {"rows": count_elements(fs, path, fmt.extension, layout, fmt.name), **hashed[name].record()}
            else:
                record = file_record(fs, path, fmt.extension, layout, fmt.name)  # rows, bytes, sha256
            objects = count_objects(fs, path, layout, fmt.name)
        published[storage.relative_to(final, root)] = record
        landed += record["rows"]
        size += record["bytes"]
        if objects is not None:
            objects_landed = (objects_landed or 0) + objects
    return landed, len(finals), size, objects_landed


class _HashingWriter:
    """A document's handle that keeps the size and sha256 of what is written through it, so the
    document is not read again to know them (file_record's two fields; the driver still reads
    every file before it publishes, pipelines/report.py)."""

    def __init__(self, handle):
        self._handle = handle
        self._digest = hashlib.sha256()
        self._size = 0

    def write(self, data) -> int:
        self._digest.update(data)
        self._size += len(data)
        return self._handle.write(data)

    def record(self) -> dict:
        return {"bytes": self._size, "sha256": self._digest.hexdigest()}
