"""Ground Truth lines of plain detection records, built per RecordBatch from its columns.

Most records a Ground Truth output holds when converting from another format are plain
detections: an image of known size, objects with a label and a box, no image labels, no
mask, no Ground Truth layout of their own. For those, `LineWriter` (one Python dict per row
from `batch_rows`, then its per-row bookkeeping) is most of the writer's cost. `detection_rows`
picks them with Arrow, and `write_batch` makes their lines from the batch's columns: pixel
coordinates in numpy, then one dict per line only to be serialized, rounded by write.py's own
`_pixels`. Every other row (classification labels, a mask, brushes painted into mask files, a
Ground Truth source's own attributes or class ids, a class without an output id, no image
size, an object without a box or a label, ...) is written by `write_lines`, row by row, in its
place. The lines are byte for byte those `write_lines` writes
(tests/test_sagemaker_batch_writer.py compares both ways).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from transforms.dates import format_timestamp
from transforms.formats.base import WriteContext
from transforms.formats.sagemaker.parse import DETECTION, KIND_TO_TYPE, METADATA_SUFFIX, SOURCE_REF
from transforms.formats.sagemaker.write import OutputClassIds, json_float, lines_of_rows, pixels, write_lines

_ATTRIBUTE = "bounding-box"  # the default layout's detection attribute (write.LineWriter)
_TYPE = KIND_TO_TYPE[DETECTION]


def _plain(array):
    """`array` with dictionary values decoded (the per-row path sees plain strings)."""
    return array.cast(array.type.value_type) if pa.types.is_dictionary(array.type) else array


def _bool(array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _empty(array) -> pa.Array:
    """True where a list or a string is null or empty: what `row.get(...)` finds falsy."""
    length = pc.list_value_length(array) if pa.types.is_list(array.type) else pc.utf8_length(_plain(array))
    return pc.fill_null(pc.equal(length, 0), True)


def class_ids(names: list[str], pinned: list[str], output: list[str] | None) -> dict[str, int]:
    """The id of each class name the per-row writer gives without looking at the line: a
    position in the pinned list, else the output's id (OutputClassIds); names without one are
    left out (their rows go row by row)."""
    if pinned:
        return {name: pinned.index(name) for name in names if name in pinned}
    ids = OutputClassIds(output)
    return {name: ids.of(name) for name in names if ids.of(name) is not None}


def detection_rows(batch: pa.RecordBatch, ids: dict[str, int], mask_files: bool) -> np.ndarray:
    """A boolean per row: True where the columnar path writes the row exactly as LineWriter
    would (see the module's docstring)."""
    n = batch.num_rows
    image = batch.column("image")
    take = pc.invert(_empty(pc.struct_field(image, "uri")))
    for side in ("width", "height"):
        take = pc.and_(take, pc.fill_null(pc.not_equal(pc.struct_field(image, side), 0), False))
    take = pc.and_(take, _empty(batch.column("labels")))
    take = pc.and_(take, _empty(pc.struct_field(batch.column("mask"), "uri")))
    extra = batch.column("extra")
    take = pc.and_(take, pc.invert(pc.fill_null(pc.match_substring(extra, '"sagemaker"'), False)))
    objects = batch.column("objects")
    take = pc.and_(take, pc.fill_null(pc.greater(pc.list_value_length(objects), 0), False))
    rows = _bool(take)
    flat = pc.list_flatten(objects)
    if len(flat):
        box = pc.struct_field(flat, "bbox")
        good = pc.is_valid(box)
        for corner in ("x_min", "y_min", "x_max", "y_max"):
            good = pc.and_(good, pc.is_valid(pc.struct_field(box, corner)))
        label = pc.struct_field(flat, "label")
        good = pc.and_(good, pc.is_in(label, pa.array(list(ids), pa.string())))
        good = pc.and_(good, pc.invert(pc.fill_null(pc.match_substring(pc.struct_field(flat, "attributes"), '"class_id"'), False)))
        if mask_files:
            good = pc.and_(good, pc.is_null(pc.struct_field(flat, "mask_rle")))
        bad = ~_bool(good)
        owner = pc.list_parent_indices(objects).to_numpy()
        rows[np.unique(owner[bad])] = False
    return rows if n else np.zeros(0, bool)


def write_batch(batch: pa.RecordBatch, ctx: WriteContext, options: Any, rows_of: Callable[[pa.RecordBatch], list[dict]]) -> list[bytes]:
    """The lines of every row of `batch`, in row order: plain detections from the columns, the
    others through write_lines (`rows_of` gives them as the per-row path takes them)."""
    pinned = list(getattr(options, "classes", None) or [])
    objects = batch.column("objects")
    labels = pc.struct_field(pc.list_flatten(objects), "label")
    ids = class_ids([name for name in pc.unique(labels).to_pylist() if name is not None], pinned, ctx.classes)
    take = detection_rows(batch, ids, bool(getattr(options, "mask_files", False)))
    if not take.any():
        return list(write_lines(rows_of(batch), ctx, options))
    lines: list[bytes | None] = [None] * batch.num_rows
    chosen = np.flatnonzero(take)
    for position, line in zip(chosen.tolist(), _detection_lines(batch.take(pa.array(chosen)), ids)):
        lines[position] = line
    ctx.objects_written += int(pc.sum(pc.list_value_length(batch.column("objects").take(pa.array(chosen)))).as_py() or 0)
    others = np.flatnonzero(~take)
    if len(others):
        for position, line in zip(others.tolist(), lines_of_rows(rows_of(batch.take(pa.array(others))), ctx, options)):
            lines[position] = line
    return [line for line in lines if line is not None]


def _detection_lines(batch: pa.RecordBatch, ids: dict[str, int]) -> list[bytes]:
    """One Ground Truth line per row of `batch` (every row a plain detection)."""
    image = batch.column("image")
    uris = _plain(pc.struct_field(image, "uri")).to_pylist()
    widths = pc.struct_field(image, "width").to_numpy(zero_copy_only=False).astype(np.int64)
    heights = pc.struct_field(image, "height").to_numpy(zero_copy_only=False).astype(np.int64)
    objects = batch.column("objects")
    counts = pc.list_value_length(objects).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(objects)
    owner = np.repeat(np.arange(batch.num_rows), counts)
    box = pc.struct_field(flat, "bbox")
    x_min, y_min, x_max, y_max = (pc.struct_field(box, c).to_numpy(zero_copy_only=False) for c in ("x_min", "y_min", "x_max", "y_max"))
    width, height = widths[owner], heights[owner]
    # write.LineWriter._detection's arithmetic, element by element (float * int as Python does)
    left, top = (x_min * width).tolist(), (y_min * height).tolist()
    box_w, box_h = ((x_max - x_min) * width).tolist(), ((y_max - y_min) * height).tolist()
    names = _plain(pc.struct_field(flat, "label")).to_pylist()
    scores = pc.struct_field(flat, "score")
    score_list = scores.to_pylist() if scores.null_count < len(scores) else None
    metadata = _metadata(batch)
    widths_list, heights_list = widths.tolist(), heights.tolist()
    out = []
    dumps = orjson.dumps
    start = 0
    for row, count in enumerate(counts.tolist()):
        end = start + count
        annotations, class_map = [], {}
        for i in range(start, end):
            name = names[i]
            class_id = ids[name]
            class_map[str(class_id)] = name
            annotations.append({"class_id": class_id, "left": pixels(left[i]), "top": pixels(top[i]),
                                "width": pixels(box_w[i]), "height": pixels(box_h[i])})  # fmt: skip
        meta = dict(metadata[row])
        meta["class-map"] = class_map
        if score_list is not None and any(score_list[i] is not None for i in range(start, end)):
            meta["objects"] = [{"confidence": json_float(score_list[i])} if score_list[i] is not None else {} for i in range(start, end)]
        line = {
            SOURCE_REF: uris[row],
            _ATTRIBUTE: {"image_size": [{"width": widths_list[row], "height": heights_list[row], "depth": 3}], "annotations": annotations},
            _ATTRIBUTE + METADATA_SUFFIX: meta,
        }
        out.append(dumps(line))
        start = end
    return out


def _metadata(batch: pa.RecordBatch) -> list[dict]:
    """write._default_metadata(DETECTION, row["annotation"]) of every row."""
    annotation = batch.column("annotation")
    valid = _bool(pc.is_valid(annotation))
    jobs = _plain(pc.struct_field(annotation, "job_name")).to_pylist()
    human = pc.struct_field(annotation, "human_annotated").to_pylist()
    created = pc.struct_field(annotation, "created_at").to_pylist()
    out = []
    for row in range(batch.num_rows):
        metadata: dict[str, Any] = {}
        if valid[row]:
            if jobs[row]:
                metadata["job-name"] = jobs[row]
            if human[row] is not None:
                metadata["human-annotated"] = "yes" if human[row] else "no"
            if created[row] is not None:
                metadata["creation-date"] = format_timestamp(created[row])
        metadata["type"] = _TYPE
        out.append(metadata)
    return out
