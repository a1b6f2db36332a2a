"""Azure ML AutoML for images JSONL -> canonical rows: the reference parse, which decides every
error code and warning of the format.

A training line is `{"image_url", "image_details": {format, width, height}, "label"}`; the shape
of `label` tells the task, line by line: a string is multi-class classification, a list of
strings multi-label classification, a list of boxes (`topX, topY, bottomX, bottomY`) object
detection, a list of objects with `polygon` instance segmentation. An empty list is an image
with no objects: object detection. An inference output line is `{"filename", "probs",
"labels"}` (classification) or `{"filename", "boxes": [{"box", "label", "score"[, "polygon"]}]}`.

The reader describes rather than judges: numbers written as strings, boxes outside the image or
inverted, and bad polygons are read as written with a warning issue. Only a line that cannot
become a row raises RecordError. Keys without a column are kept, so a round trip gives them
back: line and image_details keys in `extra["azure_automl"]`, per-object keys in the object's
`attributes` (`{"azure_automl": {...}}`).
"""

from __future__ import annotations

import math
from typing import Any

from transforms import errors
from transforms.errors import (
    BBOX_INVERTED,
    BBOX_OUT_OF_RANGE,
    FIELD_UNREADABLE,
    GEOMETRY_MISSING,
    LABEL_MISSING,
    MISSING_IMAGE_URL,
    NUMBER_AS_STRING,
    POLYGON_INVALID,
    RecordError,
)
from transforms.formats.base import ParseContext, Parsed
from transforms.formats.values import number
from transforms.schema import dumps_extra, issue

NAME = "azure_automl"

DEFAULT_BBOX_TOLERANCE = 1e-6  # absorbs float rounding of x/width, nothing a human would draw

# probs of a multi-class endpoint are a softmax: they sum to 1 up to this rounding.
SOFTMAX_SUM_TOLERANCE = 0.01

BOX_KEYS = ("topX", "topY", "bottomX", "bottomY")
DETAIL_KEYS = ("format", "width", "height")  # image_details keys with a column
_TRAINING_KEYS = {"image_url", "image_details", "label"}
_TRAINING_OBJECT_KEYS = {"label", "isCrowd", "polygon", *BOX_KEYS}
_PREDICTION_OBJECT_KEYS = {"box", "label", "score", "isCrowd", "polygon"}
_TRUE_WORDS = {"true": True, "1": True, "false": False, "0": False}
_MAX_INT32 = 2**31 - 1
# Details quoted per code in one issue message; the rest are counted.
_DETAILS_PER_ISSUE = 5


def is_training_line(obj: Any) -> bool:
    return isinstance(obj, dict) and "image_url" in obj


def is_inference_line(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and "image_url" not in obj
        and "filename" in obj
        and ("probs" in obj or "boxes" in obj)
    )


def parse_line(obj: Any, ctx: ParseContext, options: Any) -> Parsed:
    """One decoded line -> its row, read with the format's options (bbox_tolerance,
    prediction_task). Raises RecordError when the line cannot become a row."""
    if not isinstance(obj, dict):
        raise RecordError(errors.NOT_AN_OBJECT, f"a line must be a JSON object, got {type(obj).__name__}")
    reader = _LineReader(ctx, options)
    row = reader.inference(obj) if is_inference_line(obj) else reader.training(obj)
    return Parsed(rows=[row])


class _Findings:
    """Warnings of one line, one issue per code (a line may hold thousands of coordinates)."""

    def __init__(self) -> None:
        self._details: dict[str, list[str]] = {}

    def add(self, code: str, detail: str) -> None:
        self._details.setdefault(code, []).append(detail)

    def issues(self) -> list[dict]:
        found = []
        for code, details in self._details.items():
            message = "; ".join(details[:_DETAILS_PER_ISSUE])
            if len(details) > _DETAILS_PER_ISSUE:
                message += f"; and {len(details) - _DETAILS_PER_ISSUE} more"
            found.append(issue(code, message))
        return found


class _LineReader:
    """One Azure line -> one canonical row; collects the line's warnings on the way."""

    def __init__(self, ctx: ParseContext, options: Any):
        self.ctx = ctx
        self.options = options
        self.tolerance = options.bbox_tolerance
        self.findings = _Findings()
        self.extra: dict[str, Any] = {}

    # -- line kinds ---------------------------------------------------------------------------

    def training(self, obj: dict) -> dict:
        image = self._image(obj, "image_url")
        labels: list[dict] = []
        objects: list[dict] = []
        label = obj.get("label")
        if label is None:
            task = "unlabeled"
            self.findings.add(LABEL_MISSING, "the line has no label")
        elif isinstance(label, str):
            task = "classification"
            labels = [{"name": self._class_name(label, "label")}]
        elif not isinstance(label, list):
            raise RecordError(
                errors.INVALID_FIELD_TYPE,
                f"label must be a string or a list, got {type(label).__name__}",
            )
        elif label and all(isinstance(item, str) for item in label):
            task = "multilabel_classification"
            labels = [{"name": self._class_name(name, f"label[{i}]")} for i, name in enumerate(label)]
        elif all(isinstance(item, dict) for item in label):
            segmented = any("polygon" in item for item in label)
            task = "instance_segmentation" if segmented else "object_detection"
            objects = [
                self._object(item, f"label[{i}]", item, _TRAINING_OBJECT_KEYS)
                for i, item in enumerate(label)
            ]
        else:
            raise RecordError(
                errors.INVALID_FIELD_TYPE,
                "label must be a string, a list of strings or a list of objects, not a mix",
            )
        self._keep_unknown(obj, _TRAINING_KEYS)
        return self._row(image, task, "ground_truth", labels, objects, attribute="label")

    def inference(self, obj: dict) -> dict:
        image = self._image(obj, "filename")
        if "boxes" in obj:
            boxes = obj["boxes"]
            if not isinstance(boxes, list) or not all(isinstance(b, dict) for b in boxes):
                raise RecordError(errors.INVALID_FIELD_TYPE, "boxes must be a list of objects")
            segmented = any("polygon" in b for b in boxes)
            objects = []
            for i, entry in enumerate(boxes):
                box = entry.get("box")
                if box is not None and not isinstance(box, dict):
                    raise RecordError(errors.INVALID_FIELD_TYPE, f"boxes[{i}].box must be an object")
                objects.append(self._object(entry, f"boxes[{i}]", box or {}, _PREDICTION_OBJECT_KEYS))
            task = "instance_segmentation" if segmented else "object_detection"
            self._keep_unknown(obj, {"filename", "image_details", "boxes"})
            return self._row(image, task, "prediction", [], objects, attribute="boxes")
        labels = self._scored_labels(obj.get("probs"), obj.get("labels"))
        task = self._prediction_task(labels)
        self._keep_unknown(obj, {"filename", "image_details", "probs", "labels"})
        return self._row(image, task, "prediction", labels, [], attribute="probs")

    def _row(self, image, task, origin, labels, objects, attribute) -> dict:
        return {
            "source": {"attribute": attribute},
            "image": image,
            "task": task,
            "origin": origin,
            "labels": labels,
            "objects": objects,
            "issues": self.findings.issues(),
            "extra": dumps_extra({NAME: self.extra} if self.extra else None),
        }

    # -- image ----------------------------------------------------------------------------------

    def _image(self, obj: dict, key: str) -> dict:
        uri = obj.get(key)
        if uri is None or (isinstance(uri, str) and not uri.strip()):
            raise RecordError(MISSING_IMAGE_URL, f"the line has no {key}")
        if not isinstance(uri, str):
            raise RecordError(errors.INVALID_FIELD_TYPE, f"{key} must be a string, got {type(uri).__name__}")
        image = {"uri": self.ctx.resolve(uri), "width": None, "height": None, "format": None}
        details = obj.get("image_details")
        if details is None:
            return image
        if not isinstance(details, dict):
            self.findings.add(FIELD_UNREADABLE, "image_details is not an object; kept as written")
            self.extra["image_details"] = details
            return image
        unread = {k: v for k, v in details.items() if k not in DETAIL_KEYS}
        for side in ("width", "height"):
            if details.get(side) is not None:
                image[side] = _pixels(details[side])
                if image[side] is None:
                    self.findings.add(FIELD_UNREADABLE, f"image_details.{side} {details[side]!r} is not a size in pixels")
                    unread[side] = details[side]
        fmt = details.get("format")
        if isinstance(fmt, str):
            image["format"] = fmt
        elif fmt is not None:
            self.findings.add(FIELD_UNREADABLE, f"image_details.format {fmt!r} is not a string")
            unread["format"] = fmt
        if unread:
            self.extra["image_details"] = unread
        return image

    # -- labels ---------------------------------------------------------------------------------

    def _class_name(self, name: Any, where: str) -> str | None:
        if name is None:
            self.findings.add(LABEL_MISSING, f"{where} has no class name")
            return None
        if not isinstance(name, str):
            raise RecordError(errors.INVALID_FIELD_TYPE, f"{where} must be a string, got {name!r}")
        if not name.strip():
            self.findings.add(LABEL_MISSING, f"{where} is an empty class name")
        return name

    def _scored_labels(self, probs: Any, names: Any) -> list[dict]:
        if not isinstance(probs, list) or not isinstance(names, list):
            raise RecordError(errors.INVALID_FIELD_TYPE, "probs and labels must both be lists")
        if len(probs) != len(names):
            raise RecordError(
                errors.INVALID_FIELD_TYPE,
                f"probs has {len(probs)} values for {len(names)} labels",
            )
        return [
            {"name": self._class_name(name, f"labels[{i}]"), "score": self._number(p, f"probs[{i}]")}
            for i, (p, name) in enumerate(zip(probs, names))
        ]

    def _prediction_task(self, labels: list[dict]) -> str:
        """Multi-class endpoints answer a softmax (sums to 1), multi-label ones do not."""
        given = self.options.prediction_task
        if given in ("classification", "multilabel_classification"):
            return given
        total = math.fsum(label["score"] for label in labels)
        if labels and abs(total - 1.0) <= SOFTMAX_SUM_TOLERANCE:
            return "classification"
        return "multilabel_classification"

    # -- objects --------------------------------------------------------------------------------

    def _object(self, entry: dict, where: str, box: dict, known: set[str]) -> dict:
        polygon = self._polygon(entry["polygon"], f"{where}.polygon") if "polygon" in entry else None
        bbox = self._bbox(box, where)
        if bbox is None and polygon is not None:
            bbox = polygon_envelope(polygon)
        if bbox is None and polygon is None:
            raise RecordError(GEOMETRY_MISSING, f"{where} has neither {', '.join(BOX_KEYS)} nor a polygon")
        unread = {k: v for k, v in entry.items() if k not in known}
        is_crowd = self._flag(entry.get("isCrowd"), f"{where}.isCrowd")
        if is_crowd is None and entry.get("isCrowd") is not None:
            unread["isCrowd"] = entry["isCrowd"]
        score = entry.get("score") if "score" in known else None
        return {
            "label": self._class_name(entry.get("label"), f"{where}.label"),
            "score": None if score is None else self._number(score, f"{where}.score"),
            "is_crowd": is_crowd,
            "bbox": bbox,
            "polygon": polygon,
            "attributes": dumps_extra({NAME: unread} if unread else None),
        }

    def _bbox(self, box: dict, where: str) -> dict | None:
        present = [k for k in BOX_KEYS if box.get(k) is not None]
        if not present:
            return None
        if len(present) < len(BOX_KEYS):
            missing = ", ".join(k for k in BOX_KEYS if k not in present)
            raise RecordError(GEOMETRY_MISSING, f"{where} lacks {missing}")
        x_min, y_min, x_max, y_max = (self._number(box[k], f"{where}.{k}") for k in BOX_KEYS)
        low, high = -self.tolerance, 1.0 + self.tolerance
        outside = [k for k, v in zip(BOX_KEYS, (x_min, y_min, x_max, y_max)) if not low <= v <= high]
        if outside:
            self.findings.add(BBOX_OUT_OF_RANGE, f"{where}: {', '.join(outside)} outside [0, 1]")
        if x_min >= x_max or y_min >= y_max:
            self.findings.add(
                BBOX_INVERTED,
                f"{where}: ({x_min}, {y_min}) to ({x_max}, {y_max}) is not top left to bottom right",
            )
        return {"x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max}

    def _polygon(self, value: Any, where: str) -> list[list[float]]:
        if not isinstance(value, list):
            raise RecordError(errors.INVALID_FIELD_TYPE, f"{where} must be a list of rings")
        if value and not any(isinstance(ring, list) for ring in value):
            self.findings.add(POLYGON_INVALID, f"{where} is a flat list; read as one ring")
            value = [value]
        if not value:
            self.findings.add(POLYGON_INVALID, f"{where} has no ring")
        rings = []
        for r, ring in enumerate(value):
            if not isinstance(ring, list):
                raise RecordError(errors.INVALID_FIELD_TYPE, f"{where}[{r}] must be a list of numbers")
            rings.append(self._ring(ring, f"{where}[{r}]"))
        return rings

    def _ring(self, ring: list, where: str) -> list[float]:
        # Plain Python: a ring is tens of numbers, where numpy's per-call cost dominates.
        values = [v if type(v) is float else self._number(v, where) for v in ring]
        if not math.isfinite(sum(values)):
            raise RecordError(errors.INVALID_FIELD_TYPE, f"{where} holds a non-finite number")
        if len(values) % 2:
            self.findings.add(POLYGON_INVALID, f"{where} has an odd count of numbers ({len(values)})")
        if len(values) // 2 < 3:
            self.findings.add(POLYGON_INVALID, f"{where} has {len(values) // 2} points, fewer than 3")
        if values and (min(values) < -self.tolerance or max(values) > 1.0 + self.tolerance):
            self.findings.add(POLYGON_INVALID, f"{where} has points outside [0, 1]")
        return values

    # -- scalars --------------------------------------------------------------------------------

    def _number(self, value: Any, where: str) -> float:
        if value is None:  # not optional here: a missing coordinate is a wrong type
            raise RecordError(errors.INVALID_FIELD_TYPE, f"{where} must be a number, got None")
        return number(value, where, finite=True, on_string=lambda text: self.findings.add(NUMBER_AS_STRING, f"{where} {text!r}"))

    def _flag(self, value: Any, where: str) -> bool | None:
        """isCrowd: a bool, 0/1, or the same as a string (with a warning); else unreadable."""
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS:
            self.findings.add(NUMBER_AS_STRING, f"{where} {value!r}")
            return _TRUE_WORDS[value.strip().lower()]
        self.findings.add(FIELD_UNREADABLE, f"{where} {value!r} is not a flag; kept as written")
        return None

    def _keep_unknown(self, obj: dict, known: set[str]) -> None:
        self.extra.update({k: v for k, v in obj.items() if k not in known})


def _pixels(value: Any) -> int | None:
    """A width / height as Azure writes it: 400, 400.0, "400" or "400px"; None if none of them."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip().lower().removesuffix("px").strip()
        value = int(text) if text.isdecimal() and text.isascii() else None
    if isinstance(value, int) and 0 < value <= _MAX_INT32:
        return value
    return None


def polygon_envelope(polygon: list[list[float]] | None) -> dict | None:
    """The axis-aligned box around every point of every ring (a trailing odd number is ignored)."""
    xs: list[float] = []
    ys: list[float] = []
    for ring in polygon or ():
        end = len(ring) // 2 * 2
        xs.extend(ring[0:end:2])
        ys.extend(ring[1:end:2])
    if not xs:
        return None
    return {"x_min": min(xs), "y_min": min(ys), "x_max": max(xs), "y_max": max(ys)}
