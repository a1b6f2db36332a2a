"""Images copied beside the labels (`--copy_images`): the copies, their names, what landed.

Beam-free. A manifest writer's bundle (transforms/output_files._ManifestFile) hands each batch
of rows to `ImageCopies.copy` before the format writes them: every row's image is streamed,
in a bounded thread pool, from wherever it is (any fsspec store) into the bundle's own
temporary folder (`BundleFiles`, as the sagemaker writer's mask PNGs are), and the row's image
reference becomes the URL the copy is published at, which the format then writes (rewritten
the way it reads copies: transforms/uri_map.References.for_copies). The finalize step moves
the committed bundles' copies to their names and counts them like every published file (size
and sha256, read again by the driver before it publishes); `landed` compares them with what
the bundles copied.

Names: `images/<split>/<stem>__<10 hex of blake2b(source URL)><ext>` (`images/<stem>__...`
when the format's files are not per split, so a reference relative to the folder of its
document's images stays unambiguous). The hash makes two
images of one file name (`day1/cam.jpg`, `day2/cam.jpg`) two files, decided by each row alone
(bundles copy in parallel, none sees the others' names) and the same on every run; records of
one image share its copy. The stem is what a YOLO label file is named after, so label and
image pair up (transforms/file_names.image_stem).
A format may name the folder under images/ itself (`OutputFormat.copy_folders`: YOLO classify's
`<split>/<class>`); a row it names none for is not copied, and the format refuses it.

A reference its format keeps relative (Label Studio's) is read against read.relative_to, else
its manifest's folder, as the other formats resolve theirs when they parse.

What is not copied: a reference the file checks would not open either (outside the allowed
roots, invalid: `file_checks.not_to_open`) is IMAGE_COPY_REFUSED; a file that cannot be read
to its listed size is IMAGE_COPY_FAILED. Either refuses the record in that output
(refused/<format>/), as its labels would point at no image; a storage failure of the output
itself raises (the bundle is retried). A copy whose record the format then refuses for its
labels is taken back (`withdraw`): YOLO reads an image without a label file as background.
"""

from __future__ import annotations

import concurrent.futures
import copy
import hashlib
import posixpath
import re
from typing import Any, Callable

from transforms import errors, storage
from transforms.file_checks import not_to_open
from transforms.file_names import image_stem
from transforms.formats.base import resolve_reference
from transforms.partitions import folder_value
from transforms.uri_map import output_base

IMAGES_FOLDER = "images"
CHUNK_BYTES = 1 << 20  # streamed: a copy holds one chunk, whatever the image's size
COPIED = "images_copied"  # a file summary's key: {name under the format's folder: bytes copied}
_EXTENSION = re.compile(r"^\.[A-Za-z0-9]{1,10}$")


def copy_file_name(uri: str) -> str:
    """A copy's file name, whatever its folder: <stem>__<hash><ext>."""
    name = posixpath.basename(uri.split("?", 1)[0].replace("\\", "/").rstrip("/"))
    extension = "." + name.rsplit(".", 1)[1] if "." in name[1:] else ""
    digest = hashlib.blake2b(uri.encode(), digest_size=5).hexdigest()
    return f"{image_stem(uri)}__{digest}{extension if _EXTENSION.match(extension) else ''}"


def copy_name(uri: str, split: Any, by_split: bool = True, folder: str | None = None) -> str:
    """Where an image is copied under the format's folder: images/<split>/<stem>__<hash><ext>
    (images/<stem>__<hash><ext> when the format's files are not per split; images/<folder>/...
    when the format names the folder itself, e.g. YOLO classify's <split>/<class>)."""
    if folder is None:
        folder = folder_value(split) if by_split else None
    return f"{IMAGES_FOLDER}/{folder + '/' if folder else ''}{copy_file_name(uri)}"


class _NotCopied(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class ImageCopies:
    """Copies the images of the rows one manifest file is given (held per worker: picklable)."""

    def __init__(self, store: storage.Storage, published_root: str, allowed_roots: tuple[str, ...] | None, concurrency: int = 16, relative_to: str | None = None):
        self.store = store
        self.relative_to = relative_to  # what a relative reference (kept so by its format) is read against
        self.allowed_roots = allowed_roots
        self.concurrency = max(1, int(concurrency))
        # where the copies are published, spelled as references are (a local folder absolute)
        self.folder = f"{output_base(published_root)}/{IMAGES_FOLDER}"
        self._copy_of: dict[int, tuple[str, dict]] = {}  # id(row) -> (its copy's name, its image as read)
        self._users: dict[tuple[int, str], int] = {}  # (id of a file's BundleFiles, name) -> its rows that point at it
        self.by_split = True  # images/<split>/: the format's files are per split
        self.folder_of: Callable[[dict], str | None] | None = None  # the format's own folders

    def per_split(self, by_split: bool, folder_of: Callable[[dict], str | None] | None = None) -> "ImageCopies":
        """This copier for a format whose files are (or, with --manifest_partition_by
        leaving split out, are not) one per split: images/<split>/ or one images/ folder.
        `folder_of` (a module-level function, picklable): the format names each row's folder
        under images/ itself (OutputFormat.copy_folders), None for a row it will not write,
        which is then not copied (the format refuses it with its own code)."""
        chosen = copy.copy(self)
        chosen.by_split = by_split
        chosen.folder_of = folder_of
        return chosen

    def __getstate__(self):
        return {**self.__dict__, "_copy_of": {}, "_users": {}}

    def url(self, name: str) -> str:
        return f"{self.folder}/{name[len(IMAGES_FOLDER) + 1:]}"

    def copy(self, rows: list[dict], files: Any) -> list[tuple[dict, str, str]]:
        """Copies the images of `rows` into `files` (a BundleFiles) and points each row at its
        copy; -> (row, code, message) of the rows whose image was not copied (left as read)."""
        copied = files.summary.setdefault(COPIED, {})
        wanted: dict[str, tuple[str, list[dict]]] = {}
        refused = []
        for row in rows:
            uri = (row.get("image") or {}).get("uri")
            if not uri:
                continue  # the format refuses a record without an image as it always does
            manifest = (row.get("source") or {}).get("uri") or ""
            uri = resolve_reference(storage.strip_userinfo(self.relative_to or storage.parent(manifest)).rstrip("/"), uri)
            why = not_to_open(uri, manifest, self.allowed_roots)
            if why is not None:
                refused.append((row, errors.IMAGE_COPY_REFUSED, f"{why[1]} ({why[0]})"))
                continue
            folder = self.folder_of(row) if self.folder_of is not None else None
            if self.folder_of is not None and folder is None:
                continue  # a row its format will not write: it refuses it with its own code
            wanted.setdefault(copy_name(uri, row.get("split"), self.by_split, folder), (uri, []))[1].append(row)
        outcomes: dict[str, int | _NotCopied] = {}
        todo = []
        for name, (uri, _) in wanted.items():
            if name in copied:
                continue
            try:
                source = self.store.fs(uri)  # here, not in the threads: one client per store
            except Exception as exc:  # noqa: BLE001 - a URL no store opens: the record's failure
                outcomes[name] = self._failed(uri, exc)
                continue
            todo.append((name, uri, *source, *files.target(name)))
        if todo:
            with concurrent.futures.ThreadPoolExecutor(min(self.concurrency, len(todo)), thread_name_prefix="labelbeam-copy") as pool:
                outcomes.update(zip((item[0] for item in todo), pool.map(lambda item: self._copy_one(*item[1:]), todo)))
        for name, (_, users) in wanted.items():
            outcome = outcomes.get(name)
            if isinstance(outcome, _NotCopied):
                refused += [(row, outcome.code, str(outcome)) for row in users]
                continue
            if outcome is not None:
                copied[name] = outcome
            for row in users:
                self._copy_of[id(row)] = (name, row["image"])
                row["image"] = dict(row["image"], uri=self.url(name))
            self._users[id(files), name] = self._users.get((id(files), name), 0) + len(users)
        return refused

    def withdraw(self, rows: list[dict], files: Any) -> None:
        """Rows the format refused after their image was copied: a copy no written row of
        this file points at is deleted, so no image lands without its labels."""
        for row in rows:
            name, image = self._copy_of.pop(id(row), (None, None))
            if name is None:
                continue
            row["image"] = image  # its refusal names the image as read
            self._users[id(files), name] -= 1
            if self._users[id(files), name] == 0 and files.summary.get(COPIED, {}).pop(name, None) is not None:
                fs, path = files.target(name)
                fs.rm(path)

    def forget(self, files: Any = None) -> None:
        """The batch is written: row identities are not kept past it; `files` closed: nor its
        count of rows per copy (this object lives as long as its worker)."""
        self._copy_of = {}
        if files is not None:
            self._users = {key: count for key, count in self._users.items() if key[0] != id(files)}

    def _copy_one(self, uri: str, source_fs, source: str, target_fs, target: str) -> int | _NotCopied:
        """One image streamed to its target -> the bytes copied, or why not (the target removed).
        A failure to read the source is the record's; a failure to write raises."""
        written = 0
        try:
            listed = source_fs.size(source)
            reader = source_fs.open(source, "rb")
        except Exception as exc:  # noqa: BLE001 - one image's failure never stops the batch
            return self._failed(uri, exc)
        failure = None
        with reader, target_fs.open(target, "wb") as out:
            while True:
                try:
                    chunk = reader.read(CHUNK_BYTES)
                except Exception as exc:  # noqa: BLE001 - cut short while reading: not copied
                    failure = self._failed(uri, exc)
                    break
                if not chunk:
                    break
                out.write(chunk)
                written += len(chunk)
        if failure is None and listed is not None and written != listed:
            failure = _NotCopied(errors.IMAGE_COPY_FAILED, f"{storage.redact_url(uri)}: {written} bytes read, the store lists {listed}")
        if failure is not None:
            target_fs.rm(target)
            return failure
        return written

    @staticmethod
    def _failed(uri: str, exc: BaseException) -> _NotCopied:
        reason = storage.failure_reason(exc) or "unreadable"
        return _NotCopied(errors.IMAGE_COPY_FAILED, storage.redact_url(f"{uri}: {reason}: {type(exc).__name__}: {exc}")[:500])


def landed(summaries: list[dict], published: dict[str, dict]) -> dict:
    """The finalize step's count of the copies: {"images": {copied, landed, bytes}} (landed:
    copies published with the size their bundle copied), or {} when none were asked for."""
    if not any(COPIED in summary for summary in summaries):
        return {}
    expected: dict[str, int] = {}
    for summary in summaries:
        expected.update(summary.get(COPIED) or {})
    present = sum(1 for name, size in expected.items() if (published.get(name) or {}).get("bytes") == size)
    return {"images": {"copied": len(expected), "landed": present, "bytes": sum(expected.values())}}
