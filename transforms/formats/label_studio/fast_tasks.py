"""Label Studio tasks to columns: the format's fast path for the common export (TaskColumnsPath).

A task as Label Studio exports most of them (one annotation, not cancelled, no predictions,
its results plain `rectanglelabels` boxes, `polygonlabels` polygons of 3 points or more and
`choices` image labels, each with an id of its own, the image size on the region results)
becomes column lists and then Arrow arrays once per batch: no canonical row dict and
no `from_pylist`. The task's own fields and the annotation's (`extra`) and each box's raw result
(`attributes`) are spelled by orjson with sorted keys, as parse.py spells them, so they are the
same bytes. Whatever else a task holds (another result type, a rotation, a score, a relation,
a second annotation, a prediction, a region out of range, a date that is no date, ...) makes
this path decline the task; parse.py then decides what it means, so rows stay exactly the
reference's (tests/test_fast_normalize.py compares them on generated and mutated tasks).
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from transforms import schema
from transforms.formats.base import FastPart, FastPath, ParseContext, get_format
from transforms.formats.fast_columns import read_objects, source_column
from transforms.formats.label_studio.parse import (
    NAMESPACE,
    TASK_KEYS,
    annotation_of,
    image_key,
    image_size,
    task_image_size,
)
from transforms.formats.label_studio.regions import without_size

_RECTANGLE = "rectanglelabels"
_POLYGON = "polygonlabels"
_CHOICES = "choices"
_TYPES = (_RECTANGLE, _POLYGON, _CHOICES)
_SIZE_KEYS = ("original_width", "original_height")
_SORTED = orjson.OPT_SORT_KEYS
_NUMBERS = frozenset({int, float})  # not bool: parse.py refuses it as a number


class _Decline(Exception):
    """This task is not for the fast path: parse.py reads it."""


class TaskColumnsPath(FastPath):
    """orjson per task, rectangle, polygon and choices tasks in column lists, Arrow arrays per batch.

    Declines a task with a reader failure, a byte order mark, a 20-digit run (maybe
    INTEGER_TOO_LARGE), JSON orjson refuses, or anything `_row` does not take."""

    name = "tasks"
    shapes = ("rectangles", "polygons", "choices", "empty_annotation")

    def read(self, batch, ctx: ParseContext) -> FastPart | None:
        options = get_format(NAMESPACE).options_of(ctx)
        return read_objects(batch, _TaskColumns(options.annotations, options.region_tolerance))


class _TaskColumns:
    """Column lists of one batch; `add` takes one decoded task, `build` gives the arrays."""

    def __init__(self, mode: str, tolerance: float):
        self.mode = mode
        self.low, self.high = -tolerance / 100, 1 + tolerance / 100
        self.index: list[int] = []  # the task's position in the RawBatch, per row
        self.image_uri: list[str] = []
        self.width: list[int | None] = []
        self.height: list[int | None] = []
        self.task: list[str] = []
        self.attribute: list[str | None] = []
        self.extra: list[str] = []
        self.annotation: list[dict] = []
        self.counts: list[int] = []  # objects per row
        self.labels: list[str] = []
        self.boxes = array("d")  # x_min, y_min, x_max, y_max of every object, flat
        self.areas: list[float] = []
        self.attributes: list[str] = []
        self.polygons: list[list | None] = []  # a polygon's [ring], None for a box
        self.label_counts: list[int] = []  # image labels per row
        self.image_labels: list[tuple] = []  # (name, score) of every image label
        self.rotations: list[float | None] = []  # 0.0 for a box, None for a polygon

    def add(self, index: int, obj: dict) -> bool:
        """Appends the task's row; False (nothing appended) when parse.py must read it."""
        mark = len(self.labels)
        try:
            self._row(obj)
        except Exception:  # noqa: BLE001 - whatever it is, the plugin decides what it means
            del self.labels[mark:], self.areas[mark:], self.attributes[mark:], self.boxes[4 * mark:]
            del self.polygons[mark:], self.rotations[mark:]
            return False
        self.index.append(index)
        return True

    def _row(self, obj: dict) -> None:
        data = obj.get("data")
        annotations = obj.get("annotations")
        predictions = obj.get("predictions")
        if type(data) is not dict or type(annotations) is not list or len(annotations) != 1 or predictions:
            raise _Decline  # no data, no annotation or several, or predictions: rows parse.py counts
        unit = annotations[0]
        if type(unit) is not dict or unit.get("was_cancelled"):
            raise _Decline
        if self.mode == "ground_truth" and unit.get("ground_truth") is not True:
            raise _Decline
        if predictions is not None and type(predictions) is not list:
            raise _Decline
        results = unit.get("result") or []
        if type(results) is not list:
            raise _Decline
        ids = set()
        for result in results:
            if type(result) is not dict or result.get("type") not in _TYPES or "source" in result:
                raise _Decline
            rid = result.get("id")
            name = result.get("from_name")
            if type(rid) is not str or rid in ids or (type(name) is str and "__" in name):
                raise _Decline  # groups, relations and written control names: parse.py's
            ids.add(rid)
        key = image_key(data, results)
        uri = data[key]
        if type(uri) is not str or not uri:
            raise _Decline
        width, height = image_size(results)
        if not width and results:
            width, height = task_image_size(annotations)
        regions = sum(1 for r in results if r["type"] != _CHOICES)
        if regions and not (width and height):
            raise _Decline  # IMAGE_SIZE_UNKNOWN
        named = {r["to_name"] for r in results if type(r.get("to_name")) is str and r["to_name"] in data}
        if len(named) > 1:
            raise _Decline  # MULTIPLE_IMAGES
        polygons = False
        choices: list[dict] = []  # raw choices results: extra.label_studio.results
        labels: list[tuple] = []
        for result in results:
            kind = result["type"]
            if kind == _RECTANGLE:
                self._box(result, width, height)
            elif kind == _POLYGON:
                self._polygon(result, width, height)
                polygons = True
            else:
                labels += _choices(result)
                choices.append(result)
        issues: list = []
        annotation = annotation_of(unit, "ground_truth", issues)
        if issues:
            raise _Decline
        extra: dict[str, Any] = {"data_key": key}
        task_fields = {k: v for k, v in obj.items() if k not in TASK_KEYS}
        if task_fields:
            extra["task"] = task_fields
        if len(data) > 1:
            extra["data"] = {k: v for k, v in data.items() if k != key}
        if choices:
            extra["results"] = choices
        extra["annotation"] = {k: v for k, v in unit.items() if k not in ("result", "id")}
        self.extra.append(orjson.dumps({NAMESPACE: extra}, option=_SORTED).decode())
        unit_id = unit.get("id")
        self.attribute.append(str(unit_id) if unit_id is not None else None)
        self.annotation.append(annotation)
        self.image_uri.append(uri)
        self.width.append(width)
        self.height.append(height)
        if polygons:
            self.task.append("instance_segmentation")
        elif regions:
            self.task.append("object_detection")
        else:
            self.task.append("multilabel_classification" if len(labels) > 1 else "classification" if labels else "unlabeled")
        self.counts.append(regions)
        self.label_counts.append(len(labels))
        self.image_labels += labels

    def _box(self, region: dict, width: int, height: int) -> None:
        """One rectangle result -> its object's columns (regions._rectangle, unrotated)."""
        value, name = _region_value(region, _RECTANGLE)
        x, y, w, h = value["x"], value["y"], value["width"], value["height"]
        if type(x) not in _NUMBERS or type(y) not in _NUMBERS or type(w) not in _NUMBERS or type(h) not in _NUMBERS:
            raise _Decline
        rotation = value.get("rotation", 0) or 0
        if type(rotation) not in _NUMBERS or rotation != 0:
            raise _Decline
        x, y, w, h = float(x), float(y), float(w), float(h)
        x0, x1, y0, y1 = x / 100, (x + w) / 100, y / 100, (y + h) / 100
        # min() / max() of the pair as regions._box takes them (the first on a tie: -0.0 vs 0.0)
        x_min, x_max = x1 if x1 < x0 else x0, x1 if x1 > x0 else x0
        y_min, y_max = y1 if y1 < y0 else y0, y1 if y1 > y0 else y0
        if not (self.low <= x_min and x_max <= self.high and self.low <= y_min and y_max <= self.high):
            raise _Decline  # REGION_OUT_OF_RANGE
        self._append(region, name, (x_min, y_min, x_max, y_max), abs(w * width / 100 * h * height / 100), None, 0.0, width, height)

    def _polygon(self, region: dict, width: int, height: int) -> None:
        """One polygon result of 3 points or more -> its object's columns (regions._polygon)."""
        value, name = _region_value(region, _POLYGON)
        points = value["points"]
        if type(points) is not list or len(points) < 3:
            raise _Decline  # no box, or no area: parse.py's
        for point in points:
            if type(point) is not list or len(point) != 2 or type(point[0]) not in _NUMBERS or type(point[1]) not in _NUMBERS:
                raise _Decline
        xs = [float(p[0]) / 100 for p in points]
        ys = [float(p[1]) / 100 for p in points]
        box = (min(xs), min(ys), max(xs), max(ys))
        if not (self.low <= box[0] and box[2] <= self.high and self.low <= box[1] and box[3] <= self.high):
            raise _Decline  # REGION_OUT_OF_RANGE
        twice = sum(xs[i - 1] * ys[i] - xs[i] * ys[i - 1] for i in range(len(xs)))
        ring = [c for pair in zip(xs, ys) for c in pair]
        self._append(region, name, box, abs(twice) / 2 * width * height, [ring], None, width, height)

    def _append(self, region: dict, label: str, box: tuple, area: float, polygon: list | None, rotation: float | None,
                width: int, height: int) -> None:
        self.attributes.append('{"ls":[' + orjson.dumps(without_size(region, width, height), option=_SORTED).decode() + "]}")
        self.labels.append(label)
        self.boxes.extend(box)
        self.areas.append(area)
        self.polygons.append(polygon)
        self.rotations.append(rotation)

    def _labels(self) -> pa.Array:
        s = schema
        names = [name for name, _ in self.image_labels]
        scores = [score for _, score in self.image_labels]
        items = pa.StructArray.from_arrays([pa.array(names, pa.string()), pa.array(scores, pa.float32())], fields=list(s.LABEL))
        offsets = pa.array(np.concatenate([[0], np.cumsum(self.label_counts)]).astype(np.int32))
        return pa.ListArray.from_arrays(offsets, items, type=s.SCHEMA.field("labels").type)

    def build(self, uri: str, format_name: str, lines: list[int], offsets: list[int]) -> pa.RecordBatch:
        """The rows added so far as one RecordBatch of SCHEMA (raises if a value does not fit)."""
        s = schema
        n = len(self.index)
        offset = [offsets[i] for i in self.index]
        source = source_column(uri, format_name, [lines[i] for i in self.index], offset, self.attribute)
        image = pa.StructArray.from_arrays(
            [pa.array(self.image_uri, pa.string()), pa.array(self.width, pa.int32()), pa.array(self.height, pa.int32()),
             pa.nulls(n, pa.string())],
            fields=list(s.IMAGE),
        )
        m = len(self.labels)
        corners = np.frombuffer(self.boxes, np.float64).reshape(m, 4)
        bbox = pa.StructArray.from_arrays([pa.array(corners[:, i]) for i in range(4)], fields=list(s.BBOX))
        objects = pa.StructArray.from_arrays(
            [pa.array(self.labels, pa.string()), pa.nulls(m, pa.float32()), pa.nulls(m, pa.bool_()), bbox,
             pa.array(self.rotations, pa.float32()), pa.array(self.polygons, pa.list_(pa.list_(pa.float64()))),
             pa.nulls(m, pa.list_(s.KEYPOINT)), pa.nulls(m, pa.binary()), pa.array(self.areas, pa.float64()),
             pa.array(self.attributes, pa.string())],
            fields=list(s.OBJECT),
        )
        list_offsets = pa.array(np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int32))
        annotation = pa.array(self.annotation, s.ANNOTATION)
        arrays = [
            schema.record_ids(uri, offset),
            source,
            image,
            pa.array(self.task, s.SCHEMA.field("task").type),
            s.constant_dictionary(n, "ground_truth"),
            self._labels(),
            pa.ListArray.from_arrays(list_offsets, objects, type=s.SCHEMA.field("objects").type),
            pa.nulls(n, s.MASK),
            annotation,
            s.constant_dictionary(n, None),
            s.empty_lists(n, "issues"),
            pa.array(self.extra, pa.string()),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=s.SCHEMA)


def _choices(result: dict) -> list[tuple]:
    """(name, score) of each choice of a `choices` result (parse._read_results)."""
    choices = result["value"]["choices"]
    score = result.get("score")
    if type(choices) is not list or (score is not None and type(score) not in _NUMBERS):
        raise _Decline
    score = float(score) if score is not None else None
    return [(str(choice), score) for choice in choices]


def _region_value(region: dict, kind: str) -> tuple[dict, str]:
    """A region result's value and its first label, for a plain region of `kind` (a score or
    a parent makes it no longer plain: declined)."""
    value = region["value"]
    names = value[kind]
    if type(names) is not list or not names or type(names[0]) is not str:
        raise _Decline
    if region.get("score") is not None or region.get("parentID") is not None:
        raise _Decline
    return value, names[0]
