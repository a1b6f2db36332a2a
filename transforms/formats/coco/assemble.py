"""COCO's finalize step: the parts every bundle wrote (document.py) -> one instances (or
results) document per split and origin, streamed, with the output's category ids; and the
counting of what a written document holds (run.json counts what landed)."""

from __future__ import annotations

import re
from typing import Any, Callable, Iterator

import numpy as np
import orjson

from transforms.formats.base import WriteContext
from transforms.formats.coco.document import (
    ANNOTATIONS_KEY,
    CATEGORY_TEXT,
    GROUND_TRUTH,
    OBJECTS_KEY,
    PART_CATEGORY_FIELDS,
    PART_CLASSES,
    PART_ID_NAMES,
    PART_IMAGES_AT,
    PART_KEYPOINT_ORDER,
    PART_KEYPOINTS,
    PART_OBJECTS,
    PART_POINTS,
    PREDICTION,
    RECORDS_KEY,
    TAIL_BYTES,
    CocoDocument,
    CocoOptions,
    line_chunks,
)
from transforms.formats.coco.keypoints import keypoint_triples, point_order
from transforms.partitions import folder_path, folder_value, partition_values

# an annotation's category id as its part wrote it (a quote inside a JSON string is escaped,
# so the text cannot occur inside one)
_CATEGORY = re.compile(rb'"category_id":(\d+)')
# an image line's id, its first member as the part writer writes it
_IMAGE_ID = re.compile(rb'^\{"id":(\d+)[,}]', re.MULTILINE)
CHUNK_BYTES = 2 << 20
# every annotation has one image_id member, and no other entry of a COCO file has one (a quote
# inside a JSON string is escaped): annotations are counted as this text
_ANNOTATION_TEXT = b'"image_id":'
RESULTS = "results"
INSTANCES = "instances"
ANNOTATIONS_FOLDER = "annotations"


def document_name(partition: str) -> str:
    """A partition's folders -> the document's path: 'split=train/origin=ground_truth' ->
    'annotations/instances_train.json', predictions -> 'annotations/results_train.json';
    other partition columns stay folders above `annotations/`."""
    values = partition_values(partition)
    split = values.pop("split", None) if "split" in values else None
    origin = values.pop("origin", None)
    stem = RESULTS if origin == PREDICTION else INSTANCES
    if origin not in (None, PREDICTION, GROUND_TRUTH):  # an origin of its own: a document of its own
        stem = f"{stem}-{folder_value(origin)}"
    name = f"{stem}_{folder_value(split)}.json" if split is not None else f"{stem}.json"
    folders = folder_path(tuple(values), tuple(values.values()))
    return "/".join(filter(None, (folders, ANNOTATIONS_FOLDER, name)))


def output_categories(summaries: list[dict], options: CocoOptions) -> list[dict]:
    """The categories of every document of the output: the pinned list, else the sorted names
    every part used; with the extra fields a part noted for a name (the first wins), and for a
    category with keypoints their names (the pinned `coco.keypoints`, else the union over every
    part in the order its annotations hold them, `point_order`, so every split lists the same)
    and `skeleton` (the canonical record has no links between points: empty)."""
    names = list(options.categories) or sorted({name for s in summaries for name in s.get(PART_CLASSES, ())})
    fields: dict[str, dict] = {}
    points: dict[str, set[str]] = {}
    order: dict[str, set[tuple[str, str]]] = {}
    for summary in summaries:
        for name, extra in (summary.get(PART_CATEGORY_FIELDS) or {}).items():
            fields.setdefault(name, extra)
        for name, found in (summary.get(PART_KEYPOINTS) or {}).items():
            points.setdefault(name, set()).update(found)
        for name, pairs in (summary.get(PART_KEYPOINT_ORDER) or {}).items():
            order.setdefault(name, set()).update(map(tuple, pairs))
    for name, found in points.items():
        fields[name] = {**fields.get(name, {}), "keypoints": list(options.keypoints) or point_order(found, order.get(name, set())), "skeleton": []}
    return [{"id": i + 1, "name": name, "supercategory": "", **fields.get(name, {})} for i, name in enumerate(names)]


def _with_keypoint_triples(line: bytes, order_by_id: dict[int, list[str]]) -> bytes:
    """A record's annotations (one part line, renumbered) with their named points made COCO's
    `keypoints` [x, y, v, ...] in their category's order and `num_keypoints`."""
    annotations = orjson.loads(b"[" + line + b"]")
    for annotation in annotations:
        points = annotation.pop(PART_POINTS, None)
        if points is not None:
            annotation["keypoints"], annotation["num_keypoints"] = keypoint_triples(points, order_by_id[annotation["category_id"]])
    return b",".join(orjson.dumps(annotation) for annotation in annotations)


def _line_chunks(handle, end: int) -> Iterator[bytes]:
    """Whole lines of handle's bytes up to `end`, a few MB (CHUNK_BYTES) at a time."""
    return line_chunks(handle, end, CHUNK_BYTES)


class _UniqueImages:
    """Image lines -> the ones whose id was not written yet. Memory: 8 bytes an image.

    The ids seen are sorted arrays: one large, and the recent chunks' ids, merged into it
    when they add up to as many (so each id is sorted O(log n) times, not once a chunk)."""

    def __init__(self):
        self.seen = np.empty(0, np.uint64)
        self.recent: list[np.ndarray] = []
        self.recent_size = 0

    def _known(self, ids: np.ndarray) -> np.ndarray:
        known = np.zeros(len(ids), bool)
        for sorted_ids in [self.seen, *self.recent]:
            if len(sorted_ids):
                at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
                known |= sorted_ids[at] == ids
        return known

    def _add(self, ids: np.ndarray) -> None:
        self.recent.append(ids)
        self.recent_size += len(ids)
        if self.recent_size >= max(len(self.seen), 1 << 16):
            self.seen = np.sort(np.concatenate([self.seen, *self.recent]))
            self.recent, self.recent_size = [], 0

    def new_text(self, chunk: bytes) -> bytes:
        """The image lines of `chunk` (whole lines) not written yet, joined by ",\n" without
        the last newline; b"" when none is new."""
        found = _IMAGE_ID.findall(chunk)
        lines = None
        if len(found) != chunk.count(b"\n"):  # an image whose id is not its first member: parse them
            lines = chunk.splitlines(keepends=True)
            found = [str(orjson.loads(line)["id"]).encode() for line in lines]
        ids = np.array(found).astype(np.uint64) if found else np.empty(0, np.uint64)
        unique, first = np.unique(ids, return_index=True)
        fresh = ~self._known(unique)
        if not fresh.any():
            return b""
        self._add(unique[fresh])
        if fresh.all() and len(unique) == len(ids):  # every line new (the common case): the chunk as it is
            return chunk[:-1].replace(b"\n", b",\n")
        lines = lines or chunk.splitlines(keepends=True)
        return b",\n".join(lines[i].rstrip(b"\n") for i in np.sort(first[fresh]))


def _renumbering(output_ids: list[int]) -> Callable[[bytes], bytes] | None:
    """Text with a part's ids (1, 2, ... : position + 1 in its PART_ID_NAMES) -> with the
    output's (`output_ids` in that order); None when they are the same (the common case: a
    part that met every class, or a pinned list)."""
    if output_ids == list(range(1, len(output_ids) + 1)):
        return None

    def replace(match):
        return CATEGORY_TEXT % output_ids[int(match.group(1)) - 1]

    return lambda chunk: _CATEGORY.sub(replace, chunk)


def _annotation_text(chunk: bytes) -> tuple[bytes, int]:
    """Whole part lines (a record's annotations each, empty for a record with none) -> the
    annotations joined by ",\n" (no empty entries), and how many lines (records) they were."""
    records = chunk.count(b"\n")
    if not chunk.startswith(b"\n") and b"\n\n" not in chunk:  # no empty line: one replace
        return chunk[:-1].replace(b"\n", b",\n"), records
    return b",\n".join(line for line in chunk.split(b"\n") if line), records


def assemble(out, parts: list[tuple[Callable[[], Any], dict]], categories: list[dict], results: bool) -> None:
    """Streams parts (an opener of each part's file, its summary) into one COCO document on
    `out`: an instances file, or a results file (`results`). Reads each part twice (its
    annotations, then its images); holds one chunk and the image ids."""
    ids = {category["name"]: category["id"] for category in categories}
    order_by_id = {category["id"]: category["keypoints"] for category in categories if "keypoints" in category}
    points_text = b'"' + PART_POINTS.encode() + b'":'
    records = annotations = 0
    if results:
        out.write(b"[\n")
    else:
        out.write(b'{"categories":' + orjson.dumps(categories) + b',\n"annotations":[\n')
    written = False
    for opener, summary in parts:
        renumber = _renumbering([ids[name] for name in summary.get(PART_ID_NAMES, [])])
        with opener() as handle:
            for chunk in _line_chunks(handle, summary[PART_IMAGES_AT]):
                if renumber is not None:
                    chunk = renumber(chunk)
                if points_text in chunk:
                    chunk = b"".join(_with_keypoint_triples(line, order_by_id) + b"\n" if points_text in line else line + b"\n" for line in chunk.split(b"\n")[:-1])
                if results:  # one line per record, blank when it found nothing
                    lines = chunk.split(b"\n")[:-1]
                    records += len(lines)
                    pieces = []
                    for line in lines:
                        pieces.append((b"," if written and line else b"") + line + b"\n")
                        written = written or bool(line)
                    text = b"".join(pieces)
                else:
                    text, count = _annotation_text(chunk)
                    records += count
                    if not text:
                        continue
                    text = (b",\n" if written else b"") + text
                    written = True
                annotations += text.count(_ANNOTATION_TEXT)  # in the text written, as it lands
                out.write(text)
    if results:
        out.write(b"]\n")
        return
    out.write(b'\n],\n"images":[\n')
    unique, written = _UniqueImages(), False
    for opener, summary in parts:
        with opener() as handle:
            handle.seek(summary[PART_IMAGES_AT])
            for chunk in _line_chunks(handle, 1 << 62):
                text = unique.new_text(chunk)
                if text:
                    out.write((b",\n" if written else b"") + text)
                    written = True
    objects = sum(summary.get(PART_OBJECTS, 0) for _, summary in parts)
    info = {"description": "written by labelbeam", "labelbeam": {RECORDS_KEY: records, ANNOTATIONS_KEY: annotations, OBJECTS_KEY: objects}}
    out.write(b"\n],\n\"info\":" + orjson.dumps(info) + b"}\n")


def records_in(tail: bytes, key: str = RECORDS_KEY) -> int:
    """The record (or annotation: ANNOTATIONS_KEY) count of a COCO instances file from its last
    bytes (the `info` object)."""
    start = tail.rfind(b'"info":')
    if start < 0:
        raise ValueError("not a labelbeam COCO file: no info at its end")
    info = orjson.loads(tail[start + len(b'"info":') :].rstrip()[:-1])
    return int(info["labelbeam"].get(key, 0))


def records_in_file(handle, size: int) -> int:
    """The records a written COCO document holds, read from it: an instances file says so in
    its `info`; a results file holds one line per record between `[` and `]`."""
    handle.seek(max(size - TAIL_BYTES, 0))
    tail = handle.read()
    if b'"info":' in tail:
        return records_in(tail)
    handle.seek(0)
    newlines = 0
    while chunk := handle.read(CHUNK_BYTES):
        newlines += chunk.count(b"\n")
    return max(newlines - 2, 0)


def document_of(rows: list[dict], ctx: WriteContext, results: bool = False) -> bytes:
    """Rows -> one COCO document in memory (one part, assembled as the finalize step does):
    the document the job writes for a split, for small inputs and tests."""
    import io

    options = ctx.options if ctx.options is not None else CocoOptions()
    part = io.BytesIO()
    document = CocoDocument(part, options)
    document.write(rows, ctx)
    summary = document.close()
    out = io.BytesIO()
    assemble(out, [(lambda: io.BytesIO(part.getvalue()), summary)], output_categories([summary], options), results)
    return out.getvalue()


def objects_in_file(handle) -> int:
    """The annotations a written COCO document holds: an instances file says so in its `info`
    (counted in the text as it was assembled), a results file is counted (`annotations_in_file`)."""
    size = handle.seek(0, 2)
    handle.seek(max(size - TAIL_BYTES, 0))
    tail = handle.read()
    if b'"info":' in tail:
        return records_in(tail, ANNOTATIONS_KEY)
    handle.seek(0)
    return annotations_in_file(handle)


def annotations_in_file(handle) -> int:
    """The annotations a written COCO document (instances or results) holds, counted in its
    text: one `"image_id":` each."""
    found, carry = 0, b""
    while chunk := handle.read(CHUNK_BYTES):
        text = carry + chunk
        found += text.count(_ANNOTATION_TEXT)
        carry = text[-(len(_ANNOTATION_TEXT) - 1):]  # shorter than a match: none counted twice
    return found
