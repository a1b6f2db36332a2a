"""Ground Truth lines per line to columns: the format's second fast path (LineColumnsPath).

Classification, multi-label, object-detection and semantic-segmentation attributes, in any
number and order, become column lists and then Arrow arrays once per batch: no canonical row
dict and no `from_pylist`. The key layout of a line (which keys are label attributes, which are
plain fields) is decided once per distinct key tuple, not per line. A line this module does not
fully understand (any error, any issue, an unknown label type, a second mask) returns None and
goes through the plugin, so results stay exactly those of parse.py.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from transforms import schema
from transforms.dates import parse_timestamp
from transforms.formats.base import FastPart, FastPath, ParseContext
from transforms.formats.fast_columns import read_objects, source_column
from transforms.formats.sagemaker import parse as gt
from transforms.schema import dumps_extra

_INT32 = 2**31
_DATE_CACHE_SIZE = 1 << 16


class LineColumnsPath(FastPath):
    """orjson per line, the common shapes gathered into column lists, Arrow arrays per batch.

    Declines a line with a reader failure, a byte order mark, a 20-digit run (maybe
    INTEGER_TOO_LARGE), JSON orjson refuses, or anything SageMakerColumns does not take."""

    name = "lines"
    shapes = ("classification", "lookout", "lookout_masks", "multilabel", "detection", "segmentation", "chained")

    def __init__(self):
        self._layouts: dict = {}  # key tuple -> layout, across batches
        self._dates: dict = {}  # creation-date text -> datetime, across batches

    def read(self, batch, ctx: ParseContext) -> FastPart | None:
        return read_objects(batch, SageMakerColumns(ctx, self._layouts, self._dates))


def _num(value: Any) -> Any:
    """The plugin's _number, with a sentinel instead of an error (the line then falls back)."""
    if value is None:
        return None
    if type(value) is float or (type(value) is int):
        return float(value)
    return _SLOW


class _Slow(Exception):
    """This line is not for the fast path."""


_SLOW = object()


class SageMakerColumns:
    """Column lists of one batch; `add` takes one decoded line, `build` gives the arrays."""

    def __init__(self, ctx: ParseContext, layouts: dict, dates: dict):
        self.ctx = ctx
        self._layouts = layouts  # key tuple -> (attributes, fields, source attribute) or None
        self._dates = dates  # creation-date string -> aware datetime
        self.rows: list[tuple] = []  # one tuple per line: see _parse
        self.index: list[int] = []  # the line's position in the RawBatch, per row
        self._kinds: dict[tuple[str, str], str] = {}  # (attribute, metadata type) -> kind

    def __len__(self) -> int:
        return len(self.rows)

    # -- one line -------------------------------------------------------------------------

    def add(self, index: int, obj: dict) -> bool:
        """Appends the line's row; False (nothing appended) when the plugin must parse it."""
        try:
            row = self._parse(obj)
        except Exception:  # noqa: BLE001 - whatever it is, the plugin decides what it means
            return False
        if row is None:
            return False
        self.rows.append(row)
        self.index.append(index)
        return True

    def _layout(self, obj: dict):
        keys = tuple(obj)
        try:
            return self._layouts[keys]
        except KeyError:
            pass
        attributes, fields = [], []
        layout = None
        for key in keys:
            if key == gt.SOURCE_REF:
                continue
            if key.endswith(gt.METADATA_SUFFIX):
                if key[: -len(gt.METADATA_SUFFIX)] not in obj:
                    break  # an orphan metadata key: a dead letter, the plugin's to write
                continue
            if key + gt.METADATA_SUFFIX in obj:
                attributes.append(key)
            elif key.endswith("-ref"):
                break
            else:
                fields.append(key)
        else:
            pairs = tuple((a, a + gt.METADATA_SUFFIX) for a in attributes)
            layout = (pairs, tuple(fields), ",".join(attributes) or None)
        if len(self._layouts) < 4096:
            self._layouts[keys] = layout
        return layout

    def _parse(self, obj: dict):
        source_ref = obj.get(gt.SOURCE_REF)
        if type(source_ref) is not str or not source_ref.strip():
            return None
        layout = self._layout(obj)
        if layout is None:
            return None
        attributes, field_keys, attribute_names = layout
        labels: list = []
        objects: list = []
        mask = None
        size = None
        entries = []
        detection = multilabel = False
        kinds = self._kinds
        for attribute, metadata_key in attributes:
            value = obj[attribute]
            metadata = obj[metadata_key]
            if type(metadata) is not dict:
                return None
            type_ = metadata.get("type")
            kind = kinds.get((attribute, type_)) if type(type_) is str else None
            if kind is None:
                kind = gt.kind_of(attribute, value, metadata)
                if type_ in gt.TYPE_TO_KIND and len(kinds) < 1024:
                    kinds[(attribute, type_)] = kind  # the type alone decides
            first_label, first_object = len(labels), len(objects)
            if kind == gt.CLASSIFICATION:
                name = metadata.get("class-name", _SLOW)
                score = _num(metadata.get("confidence"))
                if type(name) is not str or score is _SLOW:
                    return None
                labels.append((name, score))
                rest = {k: v for k, v in metadata.items() if k != "class-name" and k != "confidence"}
                entries.append({"name": attribute, "kind": kind, "value": value, "labels": [first_label],
                                "objects": [], "metadata": rest})
                continue
            if kind == gt.MASK:
                if mask is not None:
                    return None  # MULTIPLE_MASKS: an issue, the plugin's to write
                mask = self._mask(value, metadata)
                if mask is None:
                    return None
                rest = {k: v for k, v in metadata.items() if k != "internal-color-map"}
                entries.append({"name": attribute, "kind": kind, "labels": [], "objects": [], "metadata": rest})
                continue
            if kind == gt.MULTILABEL:
                if not self._multilabel(value, metadata, labels):
                    return None
                multilabel = True
                entry = {"name": attribute, "kind": kind, "value": value}
            elif kind == gt.DETECTION:
                found = self._detection(attribute, value, metadata, objects)
                if found is None:
                    return None
                size = found
                detection = True
                entry = {"name": attribute, "kind": kind, "value": {k: v for k, v in value.items() if k != "annotations"}}
            else:
                return None  # UNKNOWN_LABEL_TYPE: an issue
            entry["labels"] = list(range(first_label, len(labels)))
            entry["objects"] = list(range(first_object, len(objects)))
            kept = gt.COLUMN_METADATA[kind]
            entry["metadata"] = {k: v for k, v in metadata.items() if k not in kept}
            entries.append(entry)
        if attributes:
            annotation = self._annotation(obj[attributes[0][1]])
            if annotation is _SLOW:
                return None
            job, human, created_at, confidence = annotation
        else:
            job = human = created_at = confidence = None
        extra = {"attributes": entries} if entries else {}
        if field_keys:
            extra["fields"] = {key: obj[key] for key in field_keys}
        if mask is not None:
            task = "semantic_segmentation"
        elif detection:
            task = "object_detection"
        elif multilabel or len(labels) > 1:
            task = "multilabel_classification"
        elif labels:
            task = "classification"
        else:
            task = "unlabeled"
        width, height = size or (None, None)
        mask_uri, colors = mask or (None, ())
        return (
            self.ctx.resolve(source_ref), width, height, task, attribute_names,
            dumps_extra({"sagemaker": extra}) if extra else None,
            labels, objects, mask is not None, mask_uri, colors,
            bool(attributes), job, human, created_at, confidence,
        )

    @staticmethod
    def _multilabel(value, metadata, labels) -> bool:
        if type(value) is not list:
            return False
        class_map = metadata.get("class-map", {})
        confidences = metadata.get("confidence-map", {})
        if type(class_map) is not dict or type(confidences) is not dict:
            return False
        for class_id in value:
            key = str(class_id)
            name = class_map.get(key)
            score = _num(confidences.get(key))
            if type(name) is not str or score is _SLOW:
                return False
            labels.append((name, score))
        return True

    @staticmethod
    def _detection(attribute, value, metadata, objects):
        if type(value) is not dict:
            return None
        sizes = value.get("image_size")
        if type(sizes) is not list or not sizes or type(sizes[0]) is not dict:
            return None
        width = _num(sizes[0].get("width"))
        height = _num(sizes[0].get("height"))
        if width is _SLOW or height is _SLOW or not width or not height or width <= 0 or height <= 0:
            return None
        size = (int(width), int(height))
        if not (size[0] < _INT32 and size[1] < _INT32):
            return None
        class_map = metadata.get("class-map", {})
        if type(class_map) is not dict:
            return None
        scores = metadata.get("objects") or []
        boxes = value.get("annotations", [])
        if type(boxes) is not list or type(scores) is not list:
            return None
        for index, box in enumerate(boxes):
            if type(box) is not dict:
                return None
            left, top = _num(box.get("left")), _num(box.get("top"))
            box_w, box_h = _num(box.get("width")), _num(box.get("height"))
            if None in (left, top, box_w, box_h) or _SLOW in (left, top, box_w, box_h):
                return None
            class_id = box.get("class_id")
            label = class_map.get(str(class_id))
            if type(label) is not str:
                return None
            score = scores[index].get("confidence") if index < len(scores) and isinstance(scores[index], dict) else None
            score = _num(score)
            if score is _SLOW:
                return None
            objects.append(
                (
                    label,
                    score,
                    (left / width, top / height, (left + box_w) / width, (top + box_h) / height),
                    box_w * box_h,
                    orjson.dumps({"class_id": class_id, "label_attribute": attribute}).decode(),
                )
            )
        return size

    def _mask(self, value, metadata):
        if type(value) is not str:
            return None
        colors = metadata.get("internal-color-map", {})
        if type(colors) is not dict:
            return None
        entries = []
        for key, color in colors.items():
            if type(color) is not dict:
                return None
            index = int(key)
            name, hex_color = color.get("class-name"), color.get("hex-color")
            confidence = _num(color.get("confidence"))
            if not -_INT32 <= index < _INT32 or confidence is _SLOW:
                return None
            if not (name is None or type(name) is str) or not (hex_color is None or type(hex_color) is str):
                return None
            entries.append((index, name, hex_color, confidence))
        entries.sort(key=lambda c: c[0])
        return self.ctx.resolve(value), entries

    def _annotation(self, metadata: dict):
        created = metadata.get("creation-date")
        created_at = None
        if created is not None:
            if type(created) is not str:
                return _SLOW
            created_at = self._dates.get(created)
            if created_at is None:
                try:
                    created_at = parse_timestamp(created)
                except ValueError:
                    return _SLOW  # INVALID_DATE: an issue
                if len(self._dates) >= _DATE_CACHE_SIZE:
                    self._dates.clear()
                self._dates[created] = created_at
        human = metadata.get("human-annotated")
        job = metadata.get("job-name")
        confidence = _num(metadata.get("confidence"))
        if confidence is _SLOW:
            return _SLOW
        return (
            job if type(job) is str else None,
            None if human is None else str(human).lower() == "yes",
            created_at,
            confidence,
        )

    # -- the batch ------------------------------------------------------------------------

    def build(self, uri: str, format_name: str, lines: list[int], offsets: list[int]) -> pa.RecordBatch:
        """The rows added so far as one RecordBatch of SCHEMA (raises if a value does not fit)."""
        s = schema
        n = len(self.rows)
        (image_uri, width, height, task, attribute, extra, labels, objects, mask_valid, mask_uri, colors,
         ann_valid, ann_job, ann_human, ann_created, ann_conf) = zip(*self.rows)
        offset = [offsets[i] for i in self.index]
        source = source_column(uri, format_name, [lines[i] for i in self.index], offset, attribute)
        image = pa.StructArray.from_arrays(
            [pa.array(image_uri, pa.string()), pa.array(width, pa.int32()), pa.array(height, pa.int32()),
             pa.nulls(n, pa.string())],
            fields=list(s.IMAGE),
        )
        label_name, label_score = _columns(labels, 2)
        labels = pa.ListArray.from_arrays(
            _offsets(labels),
            pa.StructArray.from_arrays(
                [pa.array(label_name, pa.string()), pa.array(label_score, pa.float32())], fields=list(s.LABEL)
            ),
            type=s.SCHEMA.field("labels").type,
        )
        objects = pa.ListArray.from_arrays(_offsets(objects), _objects(objects), type=s.SCHEMA.field("objects").type)
        color_index, color_name, color_hex, color_conf = _columns(colors, 4)
        color_map = pa.StructArray.from_arrays(
            [pa.array(color_index, pa.int32()), pa.array(color_name, pa.string()),
             pa.array(color_hex, pa.string()), pa.array(color_conf, pa.float32())],
            fields=list(s.COLOR),
        )
        mask = pa.StructArray.from_arrays(
            [pa.array(mask_uri, pa.string()),
             pa.ListArray.from_arrays(_offsets(colors), color_map, type=pa.list_(s.COLOR)),
             pa.nulls(n, pa.int32()), pa.nulls(n, pa.int32()), pa.nulls(n, pa.list_(s.CLASS_PIXELS)),
             pa.nulls(n, s.BBOX), pa.nulls(n, pa.bool_())],
            fields=list(s.MASK), mask=pc.invert(pa.array(mask_valid, pa.bool_())),
        )
        annotation = pa.StructArray.from_arrays(
            [pa.nulls(n, pa.string()), pa.array(ann_job, pa.string()), pa.nulls(n, pa.string()),
             pa.array(ann_human, pa.bool_()), pa.array(ann_created, pa.timestamp("ms", tz="UTC")),
             pa.array(ann_conf, pa.float32()), pa.nulls(n, pa.string())],
            fields=list(s.ANNOTATION), mask=pc.invert(pa.array(ann_valid, pa.bool_())),
        )
        issues = s.empty_lists(n, "issues")
        str_dict = s.SCHEMA.field("task").type
        arrays = [
            pa.array([schema.record_id(uri, o, 0) for o in offset], pa.string()),
            source,
            image,
            pa.array(task, str_dict),
            s.constant_dictionary(n, "ground_truth"),
            labels,
            objects,
            mask,
            annotation,
            s.constant_dictionary(n, None),
            issues,
            pa.array(extra, pa.string()),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=s.SCHEMA)


def _offsets(lists) -> pa.Array:
    """List offsets of per-row sequences."""
    return pa.array(np.concatenate([[0], np.cumsum([len(v) for v in lists])]).astype(np.int32))


def _columns(lists, width: int) -> list:
    """Per-row sequences of `width`-tuples -> `width` flat columns."""
    flat = list(chain.from_iterable(lists))
    return list(zip(*flat)) if flat else [()] * width


def _objects(per_row) -> pa.StructArray:
    s = schema
    label, score, box, area, attrs = _columns(per_row, 5)
    m = len(label)
    boxes = list(zip(*box)) if m else [(), (), (), ()]
    bbox = pa.StructArray.from_arrays([pa.array(col, pa.float64()) for col in boxes], fields=list(s.BBOX))
    return pa.StructArray.from_arrays(
        [pa.array(label, pa.string()), pa.array(score, pa.float32()), pa.nulls(m, pa.bool_()),
         bbox, pa.nulls(m, pa.float32()), pa.nulls(m, pa.list_(pa.list_(pa.float64()))),
         pa.nulls(m, pa.list_(s.KEYPOINT)), pa.nulls(m, pa.binary()), pa.array(area, pa.float64()),
         pa.array(attrs, pa.string())],
        fields=list(s.OBJECT),
    )
