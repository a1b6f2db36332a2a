"""The COCO lines of box-only records, built per RecordBatch from its columns.

Most records a COCO output holds are plain detections: an image of known size and objects with
a label and a box, nothing else. For those, `CocoDocument._encode` (one Python dict per record,
then per object) is most of the writer's cost. `box_rows` picks them with an Arrow mask, and
`box_lines` makes their annotation and image lines from the batch's columns: coordinates in
numpy, each annotation's dict only to be serialized. Every other record (a polygon, a mask,
keypoints, image labels, no image size, a label the pinned categories lack, several Ground
Truth label jobs, ...) stays on the per-record path. The lines are byte for byte those
`_encode` writes (tests/test_coco_batch_writer.py compares both ways).
"""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

# the columns the columnar path reads (a batch without one of them goes the per-record way)
BOX_COLUMNS = frozenset({"record_id", "image", "objects", "labels", "mask", "extra"})
# a Ground Truth row holding several label attributes may have some left out by
# transforms/label_jobs.select_label_jobs: such rows take the per-record path
_KIND = '"kind":'


def _plain(array):
    """`array` with dictionary values decoded (the per-record path sees plain strings)."""
    if pa.types.is_dictionary(array.type):
        return array.cast(array.type.value_type)
    return array


def _empty(array) -> pa.Array:
    """True where a list (or string) is null or empty: what `row.get(...)` finds falsy."""
    length = pc.list_value_length(array) if pa.types.is_list(array.type) else pc.utf8_length(_plain(array))
    return pc.fill_null(pc.equal(length, 0), True)


def _nonzero(array) -> pa.Array:
    return pc.fill_null(pc.not_equal(array, 0), False)


def box_rows(batch: pa.RecordBatch, pinned: list[str]) -> np.ndarray:
    """A boolean per row: True where the columnar path writes the row exactly as the
    per-record path would (an image with a URI and a size, no mask, no image labels, one label
    job, and objects each with a label, a whole box and nothing else COCO encodes)."""
    n = batch.num_rows
    image = batch.column("image")
    take = pc.invert(_empty(pc.struct_field(image, "uri")))
    take = pc.and_(take, pc.and_(_nonzero(pc.struct_field(image, "width")), _nonzero(pc.struct_field(image, "height"))))
    take = pc.and_(take, _empty(pc.struct_field(batch.column("mask"), "uri")))
    take = pc.and_(take, _empty(batch.column("labels")))
    extra = batch.column("extra")
    take = pc.and_(take, pc.fill_null(pc.less(pc.count_substring(extra, _KIND), 2), True))
    rows = np.array(take.to_numpy(zero_copy_only=False), dtype=bool)
    objects = batch.column("objects")
    flat = pc.list_flatten(objects)
    if len(flat):
        box = pc.struct_field(flat, "bbox")
        good = pc.is_valid(pc.struct_field(flat, "label"))
        for name in ("x_min", "y_min", "x_max", "y_max"):
            good = pc.and_(good, pc.is_valid(pc.struct_field(box, name)))
        good = pc.and_(good, _empty(pc.struct_field(flat, "polygon")))
        good = pc.and_(good, _empty(pc.struct_field(flat, "keypoints")))
        good = pc.and_(good, pc.is_null(pc.struct_field(flat, "mask_rle")))
        if pinned:
            good = pc.and_(good, pc.is_in(_plain(pc.struct_field(flat, "label")), value_set=pa.array(pinned, pa.string())))
        bad = ~good.to_numpy(zero_copy_only=False)
        parents = pc.list_parent_indices(objects).to_numpy()
        rows &= np.bincount(parents[bad], minlength=n) == 0
    return rows


def _round3(values: np.ndarray) -> np.ndarray:
    """round(value, 3) of each value, as Python rounds (correctly, on the exact binary value).

    rint(value * 1000) / 1000 is the same wherever value * 1000 is not within rounding error of
    a half (the division is correctly rounded, as Python's decimal-to-float step is); those few
    values, and the non-finite or huge, are rounded by Python itself."""
    scaled = values * 1000.0
    out = np.rint(scaled) / 1000.0
    with np.errstate(invalid="ignore"):
        doubtful = ~np.isfinite(scaled) | (np.abs(scaled) > 1e9) | (np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6)
    for i in np.flatnonzero(doubtful):
        out[i] = round(float(values[i]), 3)
    return out


_ANNOTATION = '{"id":%d,"image_id":%d,"category_id":%d,"bbox":[%s,%s,%s,%s],"area":%s,"iscrowd":%d,"segmentation":[]%s}'


def _json_numbers(values: np.ndarray) -> list[str]:
    """Each float as orjson writes it (shortest round trip; NaN as null), formatted once per
    distinct value: told apart by their bits, so -0.0 stays "-0.0"."""
    bits = pc.dictionary_encode(pa.array(np.ascontiguousarray(values, dtype=np.float64).view(np.int64)))
    distinct = bits.dictionary.to_numpy().view(np.float64)
    texts = orjson.dumps(distinct.tolist()).decode()[1:-1].split(",")
    return [texts[i] for i in bits.indices.to_numpy().tolist()]


def _scores(scores: pa.Array) -> list | None:
    """Each score as the per-record path writes it (float(f"{score:.7g}")), None where it has
    none; formatted once per distinct value (a model's scores repeat: 0.5-1.0 in steps of 0.01)."""
    if scores.null_count == len(scores):
        return None
    values = pc.fill_null(scores, 0.0).to_numpy(zero_copy_only=False)
    distinct, which = np.unique(values, return_inverse=True)
    written = [float(f"{value:.7g}") for value in distinct.tolist()]
    out = [written[i] for i in which.reshape(-1).tolist()]
    if scores.null_count:
        for i in np.flatnonzero(pc.is_null(scores).to_numpy(zero_copy_only=False)).tolist():
            out[i] = None
    return out


def _column(array, name: str) -> np.ndarray:
    return pc.struct_field(array, name).to_numpy(zero_copy_only=False)


def box_lines(batch: pa.RecordBatch, category_of, stable_id, dumps=orjson.dumps) -> tuple[list[bytes], list[bytes], int]:
    """(annotation line per row, image line per row, annotations written) of rows `box_rows`
    took: what `CocoDocument._encode` makes of each. `category_of(name)` is the part's id of a
    class, asked in the order the per-record path meets them."""
    image = batch.column("image")
    uris = _plain(pc.struct_field(image, "uri")).to_pylist()
    widths = _column(image, "width").astype(np.int64)
    heights = _column(image, "height").astype(np.int64)
    image_ids = [stable_id(f"{uri}\x00{w}x{h}") for uri, w, h in zip(uris, widths.tolist(), heights.tolist())]
    images = [
        dumps({"id": image_id, "file_name": uri, "width": w, "height": h}) + b"\n"
        for image_id, uri, w, h in zip(image_ids, uris, widths.tolist(), heights.tolist())
    ]
    objects = batch.column("objects")
    counts = pc.fill_null(pc.list_value_length(objects), 0).to_numpy().astype(np.int64)
    flat = pc.list_flatten(objects)
    if not len(flat):
        return [b"\n"] * batch.num_rows, images, 0
    parents = pc.list_parent_indices(objects).to_numpy().astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    indexes = (np.arange(len(flat)) - starts[parents]).tolist()
    box = pc.struct_field(flat, "bbox")
    x_min, y_min, x_max, y_max = (_column(box, name) for name in ("x_min", "y_min", "x_max", "y_max"))
    width = widths[parents].astype(np.float64)
    height = heights[parents].astype(np.float64)
    bbox = np.stack([_round3(x_min * width), _round3(y_min * height), _round3((x_max - x_min) * width), _round3((y_max - y_min) * height)], axis=1)
    given = pc.struct_field(flat, "area")
    area = bbox[:, 2] * bbox[:, 3]
    if given.null_count < len(given):
        area = np.where(pc.is_valid(given).to_numpy(zero_copy_only=False), pc.fill_null(given, 0.0).to_numpy(zero_copy_only=False), area)
    crowd = pc.fill_null(pc.struct_field(flat, "is_crowd"), False).to_numpy(zero_copy_only=False).astype(np.int64).tolist()
    scores = _scores(pc.struct_field(flat, "score"))
    # categories as the per-record path numbers them: each name asked for where first met
    labels = _plain(pc.struct_field(flat, "label"))
    names = pc.unique(labels)
    positions = pc.index_in(labels, value_set=names).to_numpy()
    first = np.full(len(names), len(labels))
    np.minimum.at(first, positions, np.arange(len(labels)))
    name_list = names.to_pylist()
    ids = np.zeros(len(names), np.int64)
    for position in np.argsort(first, kind="stable").tolist():
        ids[position] = category_of(name_list[position])
    categories = ids[positions].tolist()
    record_ids = batch.column("record_id").to_pylist()
    numbers = _json_numbers(np.concatenate([bbox.reshape(-1), area]))
    m = len(flat)
    areas = numbers[4 * m :]
    if scores is not None:
        written = [score for score in scores if score is not None]
        texts = iter(_json_numbers(np.array(written, np.float64)))
        tails = ["" if score is None else f',"score":{next(texts)}' for score in scores]
    else:
        tails = [""] * m
    # an annotation as orjson writes the per-record path's dict (keys in its order, no spaces);
    # texts, not dicts: nothing here for the garbage collector to walk
    texts = [
        _ANNOTATION % (stable_id(f"{record_ids[parent]}\x00{index}"), image_ids[parent], categories[k],
                       numbers[4 * k], numbers[4 * k + 1], numbers[4 * k + 2], numbers[4 * k + 3], areas[k], crowd[k], tails[k])
        for k, (parent, index) in enumerate(zip(parents.tolist(), indexes))
    ]  # fmt: skip
    lines = []
    start = 0
    for end in np.cumsum(counts).tolist():
        lines.append((",".join(texts[start:end]) + "\n").encode())
        start = end
    return lines, images, m
