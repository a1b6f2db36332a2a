"""Ground Truth object-detection lines from bytes to Arrow, a batch at a time (DetectionArrowPath).

A detection line's cost on the per-line path is per box Python (a tuple, a division, an
attributes string per box); here a batch is parsed by Arrow's C++ JSON reader and its boxes are
read column by column. It takes batches where every line is `source-ref` plus one
object-detection attribute and its metadata, and is conservative where Arrow cannot see what
the line says: a batch with a backslash (escapes), the text `null` (null and absent would look
alike), another label type, a key written twice (Arrow refuses it), or a value type whose JSON
spelling Arrow does not keep goes whole to the next path. A line that the reference would
refuse or warn about (no image size, a box without a class, a date it cannot read, a key it
lacks) is declined alone.
"""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from transforms import schema
from transforms.checks import numbers
from transforms.dates import cached_timestamp
from transforms.formats.base import FastPart, FastPath, ParseContext
from transforms.formats.fast_columns import source_column
from transforms.formats.sagemaker import parse as gt
from transforms.formats.sagemaker.fast_arrow import (
    _JSON_SCALARS,
    _PLAIN_KEY,
    MIN_LINES,
    _concat,
    _float32,
    _human,
    _join_skipping_nulls,
    _json_scalar,
    _numpy,
    read_block,
    resolved,
)

_TYPE = "groundtruth/object-detection"
_INT32 = 2**31
_DATE_CACHE_SIZE = 1 << 16
_NUMBER = (pa.types.is_int64, pa.types.is_float64)
# texts a batch is declined for (escapes; null, which Arrow reads as absent; a BOM; numbers orjson
# refuses), each looked for only where its first byte is found: a one-byte search runs at memory
# speed, a longer one at about a tenth of it
_DECLINED = (b"\\", b"null", b"\xef\xbb\xbf", b"NaN", b"Infinity")


class _Refused(Exception):
    """The batch holds something this path does not read."""


class DetectionArrowPath(FastPath):
    """Whole batches of single-attribute object-detection lines through Arrow."""

    name = "arrow_detection"
    shapes = ("detection",)

    def __init__(self):
        self._dates: dict = {}  # creation-date text -> datetime, across batches

    def read(self, batch, ctx: ParseContext) -> FastPart | None:
        raws = batch.raws
        if len(raws) < MIN_LINES or batch.failures:
            return None
        block = b"\n".join(raws)
        if block.count(b'"groundtruth/') != block.count(b'"' + _TYPE.encode() + b'"'):
            return None
        if any(text in block for text in _DECLINED if text[:1] in block):
            return None
        if numbers.block_might_be_inexact(block):
            return None
        try:
            lines = read_block(block, len(raws))
            return None if lines is None else _Detections(batch, ctx, self._dates, lines).part()
        except (_Refused, pa.ArrowException, UnicodeDecodeError, ValueError, OverflowError):
            return None


def _struct_type(array: pa.Array) -> pa.StructType:
    if not pa.types.is_struct(array.type):
        raise _Refused
    return array.type


def _child(struct: pa.Array, name: str):
    """A field of a struct column, null where the struct itself is (pc.struct_field)."""
    return pc.struct_field(struct, name) if struct.type.get_field_index(name) >= 0 else None


def _list_of_structs(array: pa.Array | None) -> bool:
    return array is not None and pa.types.is_list(array.type) and pa.types.is_struct(array.type.value_type)


def box_labels(meta: pa.Array, class_id: pa.Array, parents: pa.Array) -> pa.Array:
    """class-map[str(class_id)] of each box (null where the line's class-map lacks it)."""
    labels = pa.nulls(len(class_id), pa.string())
    class_map = _child(meta, "class-map")
    if class_map is None:
        return labels
    for field in class_map.type:
        key = field.name
        if not key.isdigit() or str(int(key)) != key:
            continue  # "01": never the text of an integer id
        names = pc.take(pc.struct_field(class_map, key), parents)
        labels = pc.if_else(pc.and_kleene(pc.equal(class_id, int(key)), names.is_valid()), names, labels)
    return labels


class _Detections:
    def __init__(self, batch, ctx: ParseContext, dates: dict, table: pa.RecordBatch):
        self.batch, self.ctx, self.dates = batch, ctx, dates
        names = table.schema.names
        attributes = [n for n in names if n != gt.SOURCE_REF and n + gt.METADATA_SUFFIX in names]
        if len(names) != 3 or gt.SOURCE_REF not in names or len(attributes) != 1 or not all(set(n) <= _PLAIN_KEY for n in names):
            raise _Refused
        self.attribute = attributes[0]
        if self.attribute.endswith(gt.METADATA_SUFFIX) or table.schema.field(gt.SOURCE_REF).type != pa.string():
            raise _Refused
        self.table = table
        self.n = table.num_rows
        self.ok = np.ones(self.n, bool)
        for name in names:  # a key a line lacks: a plain field or an orphan, the reference's to read
            self._require(table.column(name).is_valid())
        self._require(pc.fill_null(pc.match_substring_regex(table.column(gt.SOURCE_REF), r"^[!-~]"), False))

    def _require(self, condition) -> None:
        self.ok &= _numpy(condition)

    def _per_row(self, bad_boxes: np.ndarray, parents: np.ndarray) -> np.ndarray:
        """Rows with none of the boxes marked bad."""
        return np.bincount(parents[bad_boxes], minlength=self.n)[: self.n] == 0

    def part(self) -> FastPart | None:
        self._check(self.table)
        taken = np.flatnonzero(self.ok)
        if not taken.size:
            return None
        table = self.table if taken.size == self.n else self.table.take(pa.array(taken))
        batch = _Rows(self, table, taken.tolist()).record_batch()
        return FastPart(batch, taken.tolist(), np.flatnonzero(~self.ok).tolist())

    def _check(self, table: pa.RecordBatch) -> None:
        value, meta = table.column(self.attribute), table.column(self.attribute + gt.METADATA_SUFFIX)
        value_type, meta_type = _struct_type(value), _struct_type(meta)
        if {f.name for f in value_type} != {"image_size", "annotations"}:
            raise _Refused  # other value fields would be written back into extra
        sizes, boxes = _child(value, "image_size"), _child(value, "annotations")
        if not _list_of_structs(sizes) or {f.name for f in sizes.type.value_type} - {"width", "height", "depth"}:
            raise _Refused
        if any(not pa.types.is_int64(f.type) for f in sizes.type.value_type):
            raise _Refused
        size_count = _numpy(pc.fill_null(pc.list_value_length(sizes), 0))
        self._require(size_count == 1)  # one image size (the reference reads the first; extra keeps them all)
        first = sizes.flatten()
        rows_of_first = np.repeat(np.arange(self.n), size_count)
        for name in ("width", "height"):
            if first.type.get_field_index(name) < 0:
                raise _Refused
            values = np.zeros(self.n, np.int64)
            column = pc.struct_field(first, name)
            values[rows_of_first] = _numpy(column)  # -1 where absent
            self._require(values > 0)
            self._require(values < _INT32)
        if pa.types.is_list(boxes.type) and pa.types.is_null(boxes.type.value_type):
            pass  # every line has an empty list
        elif not _list_of_structs(boxes):
            raise _Refused
        else:
            box_type = boxes.type.value_type
            if box_type.get_field_index("class_id") < 0 or not pa.types.is_int64(box_type.field("class_id").type):
                raise _Refused
            flat = boxes.flatten()
            parents = np.repeat(np.arange(self.n), _numpy(pc.fill_null(pc.list_value_length(boxes), 0)))
            class_id = pc.struct_field(flat, "class_id")
            bad = ~_numpy(class_id.is_valid())
            if _struct_type(meta).get_field_index("class-map") >= 0 and not pa.types.is_struct(_struct_type(meta).field("class-map").type):
                raise _Refused
            bad |= ~_numpy(box_labels(meta, class_id, pa.array(parents)).is_valid())  # MISSING_CLASS_NAME
            for name in ("left", "top", "width", "height"):
                if box_type.get_field_index(name) < 0 or not any(is_type(box_type.field(name).type) for is_type in _NUMBER):
                    raise _Refused
                column = pc.struct_field(flat, name)
                bad |= ~_numpy(column.is_valid())
                bad |= ~_numpy(pc.fill_null(pc.is_finite(column.cast(pa.float64())), True))
            self._require(self._per_row(bad, parents))
        for name in meta_type.names:
            kind = meta_type.field(name).type
            if name == "class-map":
                if not pa.types.is_struct(kind) or any(not pa.types.is_string(f.type) or not f.name.isascii() for f in kind):
                    raise _Refused
            elif name == "objects":
                if not (pa.types.is_list(kind) and (pa.types.is_null(kind.value_type) or pa.types.is_struct(kind.value_type))):
                    raise _Refused
                if pa.types.is_struct(kind.value_type) and kind.value_type.get_field_index("confidence") >= 0:
                    confidence = kind.value_type.field("confidence").type
                    if not any(is_type(confidence) for is_type in _NUMBER):
                        raise _Refused
            elif name == "confidence" and not pa.types.is_int64(kind):
                raise _Refused  # also written back into extra: a double's spelling is orjson's, not Arrow's
            elif not any(is_type(kind) for is_type in _JSON_SCALARS):
                raise _Refused  # written back into extra: a type whose JSON spelling Arrow keeps
        if meta_type.get_field_index("type") < 0 or meta_type.field("type").type != pa.string():
            raise _Refused
        self._require(pc.fill_null(pc.equal(pc.struct_field(meta, "type"), _TYPE), False))
        if meta_type.get_field_index("creation-date") >= 0:
            if meta_type.field("creation-date").type != pa.string():
                raise _Refused
            self._require(~_numpy(pc.is_null(self._created(table))) | ~_numpy(pc.struct_field(meta, "creation-date").is_valid()))

    def _created(self, table: pa.RecordBatch) -> pa.Array:
        """creation-date parsed once per distinct text (null where it is absent or unreadable)."""
        meta = table.column(self.attribute + gt.METADATA_SUFFIX)
        if meta.type.get_field_index("creation-date") < 0:
            return pa.nulls(table.num_rows, pa.timestamp("ms", tz="UTC"))
        texts = pc.struct_field(meta, "creation-date")
        distinct = pc.unique(texts).drop_null()
        stamps = pa.array([self._date(text) for text in distinct.to_pylist()], pa.timestamp("ms", tz="UTC"))
        return pc.take(stamps, pc.index_in(texts, distinct))

    def _date(self, text: str):
        return cached_timestamp(self.dates, text, _DATE_CACHE_SIZE)  # None: INVALID_DATE, an issue the reference's to write


class _Rows:
    """The canonical columns of the lines taken."""

    def __init__(self, lines: _Detections, table: pa.RecordBatch, taken: list[int]):
        self.lines, self.table, self.taken = lines, table, taken
        self.n = table.num_rows
        self.value = table.column(lines.attribute)
        self.meta = table.column(lines.attribute + gt.METADATA_SUFFIX)
        boxes = pc.struct_field(self.value, "annotations")
        self.counts = _numpy(pc.fill_null(pc.list_value_length(boxes), 0))
        self.parents = np.repeat(np.arange(self.n), self.counts)
        self.boxes = boxes.flatten() if pa.types.is_struct(boxes.type.value_type) else None
        first = pc.struct_field(self.value, "image_size").flatten()
        self.width = pc.struct_field(first, "width")
        self.height = pc.struct_field(first, "height")

    def record_batch(self) -> pa.RecordBatch:
        s, n, batch = schema, self.n, self.lines.batch
        offsets = [batch.offsets[i] for i in self.taken]
        source = source_column(batch.uri, batch.format, [batch.lines[i] for i in self.taken], offsets, self.lines.attribute)
        image = pa.StructArray.from_arrays(
            [resolved(self.lines.ctx, self.table.column(gt.SOURCE_REF)), self.width.cast(pa.int32()),
             self.height.cast(pa.int32()), pa.nulls(n, pa.string())],
            fields=list(s.IMAGE),
        )
        arrays = [
            schema.record_ids(batch.uri, offsets),
            source,
            image,
            s.constant_dictionary(n, "object_detection"),
            s.constant_dictionary(n, "ground_truth"),
            s.empty_lists(n, "labels"),
            self._objects(),
            pa.nulls(n, s.MASK),
            self._annotation(),
            s.constant_dictionary(n, None),
            s.empty_lists(n, "issues"),
            self._extra(),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=s.SCHEMA)

    def _objects(self) -> pa.Array:
        s, m = schema, len(self.parents)
        offsets = pa.array(np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int32))
        if self.boxes is None or not m:
            return s.empty_lists(self.n, "objects")
        boxes, parents = self.boxes, pa.array(self.parents)
        left, top, box_w, box_h = (pc.struct_field(boxes, k).cast(pa.float64()) for k in ("left", "top", "width", "height"))
        width, height = pc.take(self.width.cast(pa.float64()), parents), pc.take(self.height.cast(pa.float64()), parents)
        bbox = pa.StructArray.from_arrays(
            [pc.divide(left, width), pc.divide(top, height), pc.divide(pc.add(left, box_w), width), pc.divide(pc.add(top, box_h), height)],
            fields=list(s.BBOX),
        )
        class_id = pc.struct_field(boxes, "class_id")
        attributes = _concat(['{"class_id":', class_id.cast(pa.string()), ',"label_attribute":',
                              orjson.dumps(self.lines.attribute).decode(), "}"])
        objects = pa.StructArray.from_arrays(
            [box_labels(self.meta, class_id, parents), self._box_scores(), pa.nulls(m, pa.bool_()), bbox, pa.nulls(m, pa.float32()),
             pa.nulls(m, pa.list_(pa.list_(pa.float64()))), pa.nulls(m, pa.list_(s.KEYPOINT)), pa.nulls(m, pa.binary()),
             pc.multiply(box_w, box_h), attributes],
            fields=list(s.OBJECT),
        )
        return pa.ListArray.from_arrays(offsets, objects, type=s.SCHEMA.field("objects").type)

    def _box_scores(self) -> pa.Array:
        """objects[i].confidence of box i of each line, where the line lists that many."""
        m = len(self.parents)
        listed = _child(self.meta, "objects")
        if listed is None or not pa.types.is_struct(listed.type.value_type) or listed.type.value_type.get_field_index("confidence") < 0:
            return pa.nulls(m, pa.float32())
        lengths = _numpy(pc.fill_null(pc.list_value_length(listed), 0))
        starts = np.concatenate([[0], np.cumsum(lengths)])[:-1]
        within = np.arange(m) - np.repeat(np.concatenate([[0], np.cumsum(self.counts)])[:-1], self.counts)
        index = starts[self.parents] + within
        missing = within >= lengths[self.parents]
        scores = pc.struct_field(listed.flatten(), "confidence").cast(pa.float64())
        taken = pc.take(scores, pa.array(np.where(missing, 0, index), mask=missing))
        return taken.cast(pa.float32(), safe=False)

    def _annotation(self) -> pa.StructArray:
        s, n, meta = schema, self.n, self.meta
        job = _child(meta, "job-name")
        job = job if job is not None and job.type == pa.string() else pa.nulls(n, pa.string())
        return pa.StructArray.from_arrays(
            [pa.nulls(n, pa.string()), job, pa.nulls(n, pa.string()), _human(meta, n), self.lines._created(self.table),
             _float32(meta, "confidence", n), pa.nulls(n, pa.string())],
            fields=list(s.ANNOTATION),
        )

    def _extra(self) -> pa.Array:
        """dumps_extra({"sagemaker": {"attributes": [entry]}}), spelled column by column."""
        most = int(self.counts.max()) if self.n else 0
        ranges = pa.array(["[" + ",".join(map(str, range(k))) + "]" for k in range(most + 1)])
        parts = ['{"sagemaker":{"attributes":[{"kind":"detection","labels":[],"metadata":', self._metadata_json(),
                 ',"name":', orjson.dumps(self.lines.attribute).decode(), ',"objects":', pc.take(ranges, pa.array(self.counts)),
                 ',"value":{"image_size":[', self._size_json(), "]}}]}}"]
        return _concat(parts)

    def _size_json(self) -> pa.Array:
        first = pc.struct_field(self.value, "image_size").flatten()
        pieces = [_concat([f'"{f.name}":', pc.struct_field(first, f.name).cast(pa.string())]) for f in sorted(first.type, key=lambda f: f.name)]
        return _concat(["{", _join_skipping_nulls(pieces, ","), "}"])

    def _metadata_json(self) -> pa.Array:
        """The metadata without `objects` (it has columns), keys sorted, absent keys left out."""
        pieces = []
        for name in sorted(self.meta.type.names):
            if name == "objects":
                continue
            values = pc.struct_field(self.meta, name)
            key = orjson.dumps(name).decode() + ":"
            if name == "class-map":
                entries = [_concat([orjson.dumps(k).decode() + ':"', pc.struct_field(values, k), '"']) for k in sorted(values.type.names)]
                text = _concat(["{", _join_skipping_nulls(entries, ","), "}"]) if entries else pa.array(["{}"] * self.n)
                pieces.append(pc.if_else(values.is_valid(), _concat([key, text]), pa.scalar(None, pa.string())))
            else:
                pieces.append(_concat([key, _json_scalar(values)]))
        return _concat(["{", _join_skipping_nulls(pieces, ","), "}"]) if pieces else pa.array(["{}"] * self.n)
