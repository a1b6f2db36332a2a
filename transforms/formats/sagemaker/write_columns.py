"""Ground Truth lines of plain detection records, built per RecordBatch from its columns.

Most records a Ground Truth output holds when converting from another format are plain
detections: an image of known size, objects with a label and a box, no image labels, no
mask, no Ground Truth layout of their own. For those, `LineWriter` (one Python dict per row
from `batch_rows`, then its per-row bookkeeping) is most of the writer's cost. `detection_rows`
picks them with Arrow, and `write_batch` makes their lines from the batch's columns: pixel
coordinates rounded in numpy where that equals write.py's `pixels` (`pixel_values`; the rest
through `pixels` itself), then one dict per line only to be serialized. Every other row (classification labels, a mask, brushes painted into mask files, a
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


def _contains(strings: pa.Array, text: str) -> pa.Array:
    """Where `strings` contain `text` (null for null): one search of the array's whole data
    buffer first, which finds nothing in most batches, at several times Arrow's per-string
    match_substring speed."""
    if not pa.types.is_string(strings.type):  # another layout: Arrow's search of each string
        return pc.match_substring(_plain(strings), text)
    data = strings.buffers()[2]
    if data is None or data.to_pybytes().find(text.encode()) < 0:  # no data: only nulls and ""
        return pc.if_else(pc.is_valid(strings), False, pa.scalar(None, pa.bool_()))
    return pc.match_substring(strings, text)


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
    take = pc.and_(take, pc.invert(pc.fill_null(_contains(extra, '"sagemaker"'), False)))
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
        good = pc.and_(good, pc.invert(pc.fill_null(_contains(pc.struct_field(flat, "attributes"), '"class_id"'), False)))
        if mask_files:
            good = pc.and_(good, pc.is_null(pc.struct_field(flat, "mask_rle")))
        bad = ~_bool(good)
        owner = pc.list_parent_indices(objects).to_numpy()
        rows[np.unique(owner[bad])] = False
    return rows if n else np.zeros(0, bool)


def write_batch(batch: pa.RecordBatch, ctx: WriteContext, options: Any, rows_of: Callable[[pa.RecordBatch], list[dict]],
                write_rows: Callable[[list[dict], WriteContext], Any] | None = None) -> list[bytes]:
    """The lines of every row of `batch`, in row order: plain detections from the columns, the
    others through write_lines (`rows_of` gives them as the per-row path takes them). A batch
    without a plain detection goes whole to `write_rows` (the format's `write`), as before."""
    pinned = list(getattr(options, "classes", None) or [])
    objects = batch.column("objects")
    labels = pc.struct_field(pc.list_flatten(objects), "label")
    ids = class_ids([name for name in pc.unique(labels).to_pylist() if name is not None], pinned, ctx.classes)
    take = detection_rows(batch, ids, bool(getattr(options, "mask_files", False)))
    if not take.any():
        rows = rows_of(batch)
        return list(write_rows(rows, ctx) if write_rows is not None else write_lines(rows, ctx, options))
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


_EXACT = 2.0**52  # below this a float's integer part and its round() are exact in numpy too
_NEAR_TIE = 1e-3  # millionths this close to a half may round either way in numpy: Python rounds them


def pixel_values(values: np.ndarray) -> list:
    """write.pixels of every value, without a Python round() per value where numpy gives the
    same: whole pixels (within 1e-6) as ints, the others rounded to 6 decimals. numpy's
    rint(v * 1e6) / 1e6 is Python's round(v, 6) unless v * 1e6 lies near a half (the product is
    rounded once: a digit may flip only there); those few, and any value that is not finite or
    too large for exact integers, go through write.pixels itself."""
    if not len(values):
        return []
    if not np.isfinite(values).all() or np.abs(values).max() >= _EXACT / 1e6:
        return [pixels(v) for v in values.tolist()]
    whole = np.rint(values)
    is_whole = np.abs(values - whole) < 1e-6
    scaled = values * 1e6
    millionths = np.rint(scaled)
    out = (millionths / 1e6).tolist()
    for i in np.flatnonzero(np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) < _NEAR_TIE).tolist():
        out[i] = round(float(values[i]), 6)
    if is_whole.any():
        for i, value in zip(np.flatnonzero(is_whole).tolist(), whole[is_whole].astype(np.int64).tolist()):
            out[i] = value
    return out


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
    left, top = pixel_values(x_min * width), pixel_values(y_min * height)
    box_w, box_h = pixel_values((x_max - x_min) * width), pixel_values((y_max - y_min) * height)
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
            annotations.append({"class_id": class_id, "left": left[i], "top": top[i], "width": box_w[i], "height": box_h[i]})
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
    created = _creation_dates(pc.struct_field(annotation, "created_at"))
    out = []
    for row in range(batch.num_rows):
        metadata: dict[str, Any] = {}
        if valid[row]:
            if jobs[row]:
                metadata["job-name"] = jobs[row]
            if human[row] is not None:
                metadata["human-annotated"] = "yes" if human[row] else "no"
            if created[row] is not None:
                metadata["creation-date"] = created[row]
        metadata["type"] = _TYPE
        out.append(metadata)
    return out


def _creation_dates(created: pa.Array) -> list[str | None]:
    """dates.format_timestamp of every value (UTC, milliseconds), by Arrow's strftime, whose
    %S of a millisecond timestamp carries its three decimals; years outside 1000-9999 (which
    the two spell differently) by format_timestamp itself."""
    texts = pc.strftime(created, format="%Y-%m-%dT%H:%M:%S", locale="C").to_pylist()
    years = pc.year(created).to_numpy(zero_copy_only=False)
    odd = np.flatnonzero(~((years >= 1000) & (years <= 9999)) & ~np.isnan(years.astype(float)))
    if len(odd):
        values = created.to_pylist()
        for i in odd.tolist():
            texts[i] = format_timestamp(values[i])
    return texts
