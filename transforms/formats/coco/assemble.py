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
    GROUND_TRUTH,
    OBJECTS_KEY,
    PART_CATEGORY_FIELDS,
    PART_CLASSES,
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
)
from transforms.formats.coco.keypoints import keypoint_triples, point_order
from transforms.partitions import folder_path, folder_value, partition_values

# an annotation's part category id (negative: no output id is; a quote inside a JSON string is
# escaped, so the text cannot occur inside one)
_PART_CATEGORY = re.compile(rb'"category_id":-(\d+)([,}])')
_PART_CATEGORY_TEXT = b'"category_id":-%d%s'
_OUTPUT_CATEGORY_TEXT = b'"category_id":%d%s'
# bytes.replace per category (a fast scan each) up to this many categories in a part, else one
# regex pass with a callback per annotation
_REPLACE_UP_TO = 32
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
    """Whole lines of handle's bytes up to `end`, a few MB at a time."""
    left, carry = end, b""
    while left > 0:
        chunk = handle.read(min(CHUNK_BYTES, left))
        if not chunk:
            break
        left -= len(chunk)
        chunk = carry + chunk
        cut = chunk.rfind(b"\n") + 1
        carry = chunk[cut:]
        if cut:
            yield chunk[:cut]
    if carry:
        yield carry + b"\n"


class _UniqueImages:
    """Image lines -> the ones whose id was not written yet. Memory: 8 bytes an image."""

    def __init__(self):
        self.seen = np.empty(0, np.uint64)

    def new_lines(self, chunk: bytes) -> list[bytes]:
        lines = chunk.splitlines(keepends=True)
        found = _IMAGE_ID.findall(chunk)
        if len(found) != len(lines):  # an image whose id is not its first member: parse them
            found = [orjson.loads(line)["id"] for line in lines]
        ids = np.array([int(m) for m in found], np.uint64)
        unique, first = np.unique(ids, return_index=True)
        fresh = ~np.isin(unique, self.seen, assume_unique=True)
        if not fresh.any():
            return []
        self.seen = np.union1d(self.seen, unique[fresh])
        return [lines[i] for i in np.sort(first[fresh])]


def _renumbering(output_ids: list[int]) -> Callable[[bytes], bytes]:
    """Text with a part's category ids (-1, -2, ...) -> with the output's (`output_ids` in the
    part's order)."""
    if len(output_ids) <= _REPLACE_UP_TO:

        def replace_each(chunk: bytes) -> bytes:
            for position, output_id in enumerate(output_ids):
                for end in (b",", b"}"):
                    chunk = chunk.replace(_PART_CATEGORY_TEXT % (position + 1, end), _OUTPUT_CATEGORY_TEXT % (output_id, end))
            return chunk

        return replace_each

    def replace(match):
        return _OUTPUT_CATEGORY_TEXT % (output_ids[int(match.group(1)) - 1], match.group(2))

    return lambda chunk: _PART_CATEGORY.sub(replace, chunk)


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
        renumber = _renumbering([ids[name] for name in summary.get(PART_CLASSES, [])])
        with opener() as handle:
            for chunk in _line_chunks(handle, summary[PART_IMAGES_AT]):
                chunk = renumber(chunk)
                lines = chunk.split(b"\n")[:-1]
                if points_text in chunk:
                    lines = [_with_keypoint_triples(line, order_by_id) if points_text in line else line for line in lines]
                annotations += chunk.count(_ANNOTATION_TEXT)
                records += len(lines)
                if results:  # one line per record, blank when it found nothing
                    pieces = []
                    for line in lines:
                        pieces.append((b"," if written and line else b"") + line + b"\n")
                        written = written or bool(line)
                    text = b"".join(pieces)
                else:
                    filled = [line for line in lines if line]
                    if not filled:
                        continue
                    text = (b",\n" if written else b"") + b",\n".join(filled)
                    written = True
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
                lines = unique.new_lines(chunk)
                if lines:
                    out.write((b",\n" if written else b"") + b",\n".join(line.rstrip(b"\n") for line in lines))
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


def annotations_in_file(handle) -> int:
    """The annotations a written COCO document (instances or results) holds, counted in its
    text: one `"image_id":` each."""
    found, carry = 0, b""
    while chunk := handle.read(CHUNK_BYTES):
        text = carry + chunk
        found += text.count(_ANNOTATION_TEXT)
        carry = text[-(len(_ANNOTATION_TEXT) - 1):]  # shorter than a match: none counted twice
    return found
