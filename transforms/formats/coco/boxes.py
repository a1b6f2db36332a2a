"""The COCO lines of box-only records, built per RecordBatch from its columns.

Most records a COCO output holds are plain detections: an image of known size and objects with
a label and a box, nothing else. For those, `CocoDocument._encode` (one Python dict per record,
then per object) is most of the writer's cost. `box_rows` picks them with an Arrow mask, and
`box_lines` makes their annotation and image lines from the batch's columns: coordinates in
numpy, each distinct number spelled once by orjson, the lines concatenated by Arrow's string
kernels; only the ids' blake2b digests are taken one key at a time. Every other record (a
polygon, a mask, keypoints, image labels, no image size, a label the pinned categories lack,
several Ground Truth label jobs, ...) stays on the per-record path. The lines are byte for byte
those `_encode` writes (tests/test_coco_batch_writer.py compares both ways).
"""

from __future__ import annotations

import hashlib

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


def _json_numbers(values: np.ndarray) -> pa.Array:
    """Each float as orjson writes it (shortest round trip; NaN as null), formatted once per
    distinct value: told apart by their bits, so -0.0 stays "-0.0"."""
    bits = pc.dictionary_encode(pa.array(np.ascontiguousarray(values, dtype=np.float64).view(np.int64)))
    distinct = bits.dictionary.to_numpy().view(np.float64)
    texts = pa.array(orjson.dumps(distinct.tolist()).decode()[1:-1].split(","), pa.string())
    return texts.take(bits.indices)


def _score_tails(scores: pa.Array) -> pa.Array | str:
    """`,"score":<text>` of each annotation, the score as the per-record path writes it
    (float(f"{score:.7g}")), "" where it has none; formatted once per distinct value (a model's
    scores repeat: 0.5-1.0 in steps of 0.01)."""
    if scores.null_count == len(scores):
        return ""
    values = pc.fill_null(scores, 0.0).to_numpy(zero_copy_only=False).astype(np.float64)
    distinct, which = np.unique(values, return_inverse=True)
    written = np.array([float(f"{value:.7g}") for value in distinct.tolist()], np.float64)
    texts = _concat([',"score":', _json_numbers(written)]).take(pa.array(which.reshape(-1)))
    return pc.if_else(pc.is_valid(scores), texts, "") if scores.null_count else texts


def _column(array, name: str) -> np.ndarray:
    return pc.struct_field(array, name).to_numpy(zero_copy_only=False)


def _concat(parts: list) -> pa.Array:
    """Element-wise concatenation of string arrays and constant strings."""
    return pc.binary_join_element_wise(*[part if isinstance(part, (pa.Array, pa.ChunkedArray)) else pa.scalar(part, pa.string()) for part in parts], "")


def _text(values) -> pa.Array:
    """Integers as JSON writes them."""
    return pa.array(values).cast(pa.string())


def stable_ids(keys: pa.Array) -> np.ndarray:
    """document.stable_id of each text of a string array: the first 52 bits of its blake2b
    digest (at least 1). One digest a key is Python's; the bits are taken in numpy."""
    digest = hashlib.blake2b
    digests = b"".join([digest(key, digest_size=8).digest() for key in keys.cast(pa.binary()).to_pylist()])
    ids = np.frombuffer(digests, ">u8") >> np.uint64(12)
    ids[ids == 0] = 1
    return ids.astype(np.int64)


def _json_strings(texts: pa.Array) -> pa.Array:
    """Each text as orjson writes it: quoted, and escaped (per row, by orjson) where it holds a
    quote, a backslash or a control character."""
    quoted = _concat(['"', texts, '"'])
    escape = pc.fill_null(pc.match_substring_regex(texts, r"[\x00-\x1f\"\\]"), False)
    if pc.any(escape).as_py():
        where = np.flatnonzero(escape.to_numpy(zero_copy_only=False))
        spelled = [orjson.dumps(text).decode() for text in texts.take(pa.array(where)).to_pylist()]
        quoted = pc.replace_with_mask(quoted, escape, pa.array(spelled, pa.string()))
    return quoted


def _joined_lines(texts: pa.Array) -> bytes:
    """Each text followed by a newline, as one bytes (the concatenation's own buffer)."""
    if not len(texts):
        return b""
    lines = _concat([texts, "\n"])
    _, offsets, data = lines.buffers()
    start, end = np.frombuffer(offsets, np.int32)[[lines.offset, lines.offset + len(lines)]].tolist()
    return data.slice(start, end - start).to_pybytes()


def box_lines(batch: pa.RecordBatch, category_of) -> tuple[bytes, bytes, int]:
    """(annotation lines, image lines, annotations written) of rows `box_rows` took: what
    `CocoDocument._encode` makes of each, a line a row, built column by column.
    `category_of(name)` is the part's id of a class, asked in the order the per-record path
    meets them."""
    image = batch.column("image")
    uris = _plain(pc.struct_field(image, "uri"))
    widths = _column(image, "width").astype(np.int64)
    heights = _column(image, "height").astype(np.int64)
    width_text, height_text = _text(widths), _text(heights)
    image_ids = stable_ids(_concat([uris, "\x00", width_text, "x", height_text]))
    image_id_text = _text(image_ids)
    images = _concat(['{"id":', image_id_text, ',"file_name":', _json_strings(uris), ',"width":', width_text, ',"height":', height_text, "}"])
    objects = batch.column("objects")
    counts = pc.fill_null(pc.list_value_length(objects), 0).to_numpy().astype(np.int64)
    flat = pc.list_flatten(objects)
    if not len(flat):
        return b"\n" * batch.num_rows, _joined_lines(images), 0
    parents = pc.list_parent_indices(objects).to_numpy().astype(np.int64)
    ends = np.cumsum(counts)
    indexes = np.arange(len(flat)) - (ends - counts)[parents]
    box = pc.struct_field(flat, "bbox")
    x_min, y_min, x_max, y_max = (_column(box, name) for name in ("x_min", "y_min", "x_max", "y_max"))
    width = widths[parents].astype(np.float64)
    height = heights[parents].astype(np.float64)
    bbox = [_round3(x_min * width), _round3(y_min * height), _round3((x_max - x_min) * width), _round3((y_max - y_min) * height)]
    given = pc.struct_field(flat, "area")
    area = bbox[2] * bbox[3]
    if given.null_count < len(given):
        area = np.where(pc.is_valid(given).to_numpy(zero_copy_only=False), pc.fill_null(given, 0.0).to_numpy(zero_copy_only=False), area)
    crowd = pc.fill_null(pc.struct_field(flat, "is_crowd"), False).cast(pa.int8()).cast(pa.string())
    # categories as the per-record path numbers them: each name asked for where first met
    labels = _plain(pc.struct_field(flat, "label"))
    names = pc.unique(labels)
    positions = pc.index_in(labels, value_set=names)
    first = np.full(len(names), len(labels))
    np.minimum.at(first, positions.to_numpy(), np.arange(len(labels)))
    name_list = names.to_pylist()
    ids = [0] * len(names)
    for position in np.argsort(first, kind="stable").tolist():
        ids[position] = category_of(name_list[position])
    categories = _text(ids).take(positions)
    m = len(flat)
    numbers = _json_numbers(np.concatenate(bbox + [area]))
    x, y, w, h, areas = (numbers.slice(i * m, m) for i in range(5))
    record_ids = pc.fill_null(_plain(batch.column("record_id")), "None").take(pa.array(parents))
    annotation_ids = _text(stable_ids(_concat([record_ids, "\x00", _text(indexes)])))
    # an annotation as orjson writes the per-record path's dict (keys in its order, no spaces)
    texts = _concat([
        '{"id":', annotation_ids, ',"image_id":', image_id_text.take(pa.array(parents)), ',"category_id":', categories,
        ',"bbox":[', x, ",", y, ",", w, ",", h, '],"area":', areas, ',"iscrowd":', crowd, ',"segmentation":[]',
        _score_tails(pc.struct_field(flat, "score")), "}",
    ])  # fmt: skip
    rows = pc.binary_join(pa.ListArray.from_arrays(pa.array(np.concatenate([[0], ends]), pa.int32()), texts), ",")
    return _joined_lines(rows), _joined_lines(images), m
