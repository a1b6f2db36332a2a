"""Canonical rows -> Azure AutoML lines: the training form for ground truth, the endpoints'
output form for predictions; the keys the reader kept given back, image URLs rewritten by the
datastore map."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import orjson

from transforms import errors
from transforms.checks import contours
from transforms.formats._mask_pixels import has_mask
from transforms.formats.azure_automl.masks import SEMANTIC, mask_polygons, mask_task_of, traced_brush
from transforms.formats.azure_automl.parse import DETAIL_KEYS, NAME, polygon_envelope
from transforms.formats.base import WriteContext
from transforms.schema import loads_extra
from transforms.uri_map import UriMap


def write_lines(rows: list[dict], ctx: WriteContext, options: Any) -> Iterator[bytes]:
    """Rows -> encoded lines, with the format's options (datastore_map, mask_task,
    polygon_tolerance); a row AutoML has no form for is refused (ctx.reject)."""
    datastores = DatastoreMap(options.datastore_map)
    for row in rows:
        if row.get("task") == SEMANTIC:  # a writer called without output_view (a library caller)
            row = {**row, "task": mask_task_of(row, options.mask_task)}
        line = _LineWriter(row, ctx, datastores, options.polygon_tolerance).line()
        if line is not None:
            yield orjson.dumps(line)


def objects_in(line: Any) -> int:
    """Boxes / polygons of a line: the entries of a training `label` list or of `boxes`."""
    entries = line.get("boxes") if "boxes" in line else line.get("label")
    return sum(1 for e in entries if isinstance(e, dict)) if isinstance(entries, list) else 0


# Azure's datastore map is the job's URI map (transforms/uri_map.py), kept as an Azure option
DatastoreMap = UriMap


def _score(value: float | None) -> float | None:
    """A float32 score written with the shortest digits that read back to the same float32."""
    return None if value is None else float(str(np.float32(value)))


def _box(bbox: dict) -> dict:
    return {"topX": bbox["x_min"], "topY": bbox["y_min"], "bottomX": bbox["x_max"], "bottomY": bbox["y_max"]}


def _rectangle(bbox: dict) -> list[list[float]]:
    x0, y0, x1, y1 = bbox["x_min"], bbox["y_min"], bbox["x_max"], bbox["y_max"]
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _same_box(a: dict | None, b: dict | None) -> bool:
    return a is not None and b is not None and all(abs(a[k] - b[k]) <= 1e-12 for k in a)


def _merge_kept(target: dict, kept: Any) -> None:
    """Give back the keys the reader kept; what the writer set itself wins."""
    if not isinstance(kept, dict):
        return
    for key, value in kept.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_kept(target[key], value)
        else:
            target.setdefault(key, value)


class _Unrepresentable(Exception):
    """A row this format cannot express; becomes ctx.reject(OUTPUT_UNREPRESENTABLE)."""


class _LineWriter:
    """One canonical row -> one Azure line: training form for ground truth, else endpoint form."""

    def __init__(self, row: dict, ctx: WriteContext, datastores: DatastoreMap, polygon_tolerance: float = contours.DEFAULT_TOLERANCE):
        self.row = row
        self.ctx = ctx
        self.datastores = datastores
        self.polygon_tolerance = polygon_tolerance

    def line(self) -> dict | None:
        objects_before, written_before = len(self.ctx.rejected_objects), self.ctx.objects_written
        try:
            return self._line()
        except _Unrepresentable as why:  # refused whole: not also object by object
            del self.ctx.rejected_objects[objects_before:]
            self.ctx.objects_written = written_before
            self.ctx.reject(self.row, errors.OUTPUT_UNREPRESENTABLE, str(why))
            return None

    def _line(self) -> dict:
        row = self.row
        image = row.get("image") or {}
        if not image.get("uri"):
            raise _Unrepresentable("the record has no image uri")
        prediction = row.get("origin") == "prediction"
        line: dict[str, Any] = {("filename" if prediction else "image_url"): self.datastores.rewrite(image["uri"])}
        details = {k: image.get(k) for k in DETAIL_KEYS if image.get(k) is not None}
        if details:
            line["image_details"] = details
        line.update(self._prediction() if prediction else self._training())
        if has_mask(row):
            self._write_mask(line)
        kept = dict(loads_extra(row.get("extra")).get(NAME) or {})
        # values the reader could not read (FIELD_UNREADABLE: "width": "wide", an image_details
        # that is not an object) stay in records/ but are not written: AutoML would fail on them
        if isinstance(kept.get("image_details"), dict):
            kept["image_details"] = {k: v for k, v in kept["image_details"].items() if k not in DETAIL_KEYS}
        else:
            kept.pop("image_details", None)
        _merge_kept(line, kept)
        return line

    def _training(self) -> dict:
        task = self.row.get("task")
        names = [label.get("name") for label in self.row.get("labels") or ()]
        if task == "classification":
            if len(names) != 1:
                raise _Unrepresentable(f"a multi-class line has one label, this record has {len(names)}")
            return {"label": names[0]}
        if task == "multilabel_classification":
            return {"label": names}
        if task == "object_detection" or (task == "keypoints" and not self._has_polygons()):
            return {"label": self._each_object(self._training_box)}
        if task in ("instance_segmentation", "keypoints"):
            return {"label": self._each_object(self._training_polygon)}
        raise _Unrepresentable(f"Azure AutoML has no training form for task {task!r}")

    def _write_mask(self, line: dict) -> None:
        """The semantic mask as one polygon object per class (instance segmentation lines);
        on classification lines it has no form and is refused, the line written."""
        traced = mask_polygons(self.row, self.ctx, self.polygon_tolerance)
        if traced is None:
            return
        entries, width, height = traced
        line["label"].extend(entries)
        self.ctx.objects_written += len(entries)
        if "image_details" not in line:
            line["image_details"] = {"width": width, "height": height}

    def _prediction(self) -> dict:
        task = self.row.get("task")
        if task in ("classification", "multilabel_classification"):
            labels = self.row.get("labels") or []
            if not labels:
                raise _Unrepresentable("a classification prediction without labels")
            if any(label.get("score") is None for label in labels):
                raise _Unrepresentable("an endpoint classification line needs a score for every label")
            return {
                "probs": [_score(label["score"]) for label in labels],
                "labels": [label.get("name") for label in labels],
            }
        if task in ("object_detection", "instance_segmentation", "keypoints"):
            segmented = task == "instance_segmentation" or (task == "keypoints" and self._has_polygons())
            return {"boxes": self._each_object(lambda o, i: self._prediction_box(o, i, segmented))}
        raise _Unrepresentable(f"Azure AutoML has no endpoint output for task {task!r}")

    def _objects(self) -> list[dict]:
        return self.row.get("objects") or []

    def _has_polygons(self) -> bool:
        return any(obj.get("polygon") for obj in self._objects())

    def _each_object(self, entry_of) -> list[dict]:
        """Each object's entry; an object AutoML has no form for (a keypoint) is refused alone
        and the line written with the others (an empty list is AutoML's image without objects)."""
        entries = []
        for index, obj in enumerate(self._objects()):
            try:
                entries.append(entry_of(obj, index))
            except _Unrepresentable as why:
                self.ctx.reject_object(self.row, index, errors.OBJECT_UNREPRESENTABLE, str(why))
        self.ctx.objects_written += len(entries)
        return entries

    def _bbox_of(self, obj: dict, index: int) -> dict:
        bbox = obj.get("bbox") or polygon_envelope(obj.get("polygon"))
        if bbox is None:
            what = "a keypoint" if obj.get("keypoints") else "an object"
            raise _Unrepresentable(f"{what} with neither a box nor a polygon has no AutoML form")
        return bbox

    def _training_box(self, obj: dict, index: int) -> dict:
        entry = {"label": obj.get("label"), **_box(self._bbox_of(obj, index))}
        return self._finish(entry, obj)

    def _training_polygon(self, obj: dict, index: int) -> dict:
        polygon = obj.get("polygon")
        if polygon is None and obj.get("mask_rle") is not None:
            polygon = self._traced_brush(obj)
        if polygon is None:
            polygon = _rectangle(self._bbox_of(obj, index))
        entry = {"label": obj.get("label"), "polygon": polygon}
        if obj.get("bbox") is not None and not _same_box(obj["bbox"], polygon_envelope(polygon)):
            entry.update(_box(obj["bbox"]))  # a box of its own, not the polygon's envelope
        return self._finish(entry, obj)

    def _traced_brush(self, obj: dict) -> list[list[float]] | None:
        image = self.row.get("image") or {}
        return traced_brush(obj["mask_rle"], image.get("width"), image.get("height"), self.polygon_tolerance)

    def _prediction_box(self, obj: dict, index: int, segmented: bool) -> dict:
        bbox = self._bbox_of(obj, index)
        entry: dict[str, Any] = {"box": _box(bbox), "label": obj.get("label")}
        if obj.get("score") is not None:
            entry["score"] = _score(obj["score"])
        if segmented:
            entry["polygon"] = obj.get("polygon") if obj.get("polygon") is not None else _rectangle(bbox)
        return self._finish(entry, obj)

    @staticmethod
    def _finish(entry: dict, obj: dict) -> dict:
        if obj.get("is_crowd") is not None:
            entry["isCrowd"] = int(obj["is_crowd"])
        kept = loads_extra(obj.get("attributes")).get(NAME)
        if isinstance(kept, dict):  # an unreadable isCrowd ("maybe") is not written back
            kept = {k: v for k, v in kept.items() if k != "isCrowd"}
        _merge_kept(entry, kept)
        return entry
