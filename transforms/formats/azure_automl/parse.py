"""Azure ML AutoML for images JSONL: training lines and the model endpoints' output lines.

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

import dataclasses
import math
from typing import Any, Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from transforms import errors
from transforms.checks import contours
from transforms.checks.masks import MaskRejected
from transforms.checks.rle import decode_rle
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
from transforms.formats._mask_pixels import has_mask, reader_of, refuse_mask
from transforms.formats.base import ManifestFormat, ParseContext, Parsed, WriteContext, register
from transforms.formats.values import number
from transforms.schema import dumps_extra, issue, loads_extra
from transforms.settings import parse_pairs, setting
from transforms.uri_map import UriMap

NAME = "azure_automl"

DEFAULT_BBOX_TOLERANCE = 1e-6  # absorbs float rounding of x/width, nothing a human would draw
DATASTORE_MAP = "formats.azure_automl.datastore_map"

# probs of a multi-class endpoint are a softmax: they sum to 1 up to this rounding.
SOFTMAX_SUM_TOLERANCE = 0.01

BOX_KEYS = ("topX", "topY", "bottomX", "bottomY")
_TRAINING_KEYS = {"image_url", "image_details", "label"}
_DETAIL_KEYS = ("format", "width", "height")
_TRAINING_OBJECT_KEYS = {"label", "isCrowd", "polygon", *BOX_KEYS}
_PREDICTION_OBJECT_KEYS = {"box", "label", "score", "isCrowd", "polygon"}
_TRUE_WORDS = {"true": True, "1": True, "false": False, "0": False}
_MAX_INT32 = 2**31 - 1
# Details quoted per code in one issue message; the rest are counted.
_DETAILS_PER_ISSUE = 5


def _datastore_pairs(value: Any) -> dict[str, str]:
    """FROM=TO text(s), (FROM, TO) pairs or a mapping -> a mapping, checked at launch."""
    if isinstance(value, (list, tuple)) and all(isinstance(pair, (list, tuple)) for pair in value):
        DatastoreMap(value)
        return dict(value)
    pairs = value if isinstance(value, dict) else parse_pairs(value, "FROM=TO")
    DatastoreMap(pairs)
    return pairs


@dataclasses.dataclass(frozen=True)
class AzureAutoMLOptions:
    bbox_tolerance: float = setting(DEFAULT_BBOX_TOLERANCE, help="how far outside [0, 1] a box or polygon coordinate may lie without BBOX_OUT_OF_RANGE / POLYGON_INVALID", minimum=0)
    prediction_task: str | None = setting(None, help="task of inference lines with probs/labels (guessed from the scores when absent)", choices=("classification", "multilabel_classification"))
    datastore_map: dict[str, str] = setting({}, help="FROM=TO image URL prefix rewrites in written lines (longest FROM wins, whole path segments)", parse=_datastore_pairs)
    mask_task: str = setting("auto", help="how a record with a semantic mask (Lookout for Vision, Ground Truth) is written: classification (its image-level label; the mask refused), instance_segmentation (polygons traced from each class of the mask), auto (classification when it has an image-level label, else instance_segmentation)", choices=("auto", "classification", "instance_segmentation"))
    polygon_tolerance: float = setting(contours.DEFAULT_TOLERANCE, help="pixels a polygon traced from a mask may simplify away (Douglas-Peucker epsilon; 0 keeps every border pixel)", minimum=0)


@register
class AzureAutoMLFormat(ManifestFormat):
    name = NAME
    extension = ".jsonl"
    file_layout = "jsonl"
    one_task_per_file = True  # an AutoML training job reads one task's JSONL
    Options = AzureAutoMLOptions

    def detect(self, sample: list[Any]) -> float:
        if not sample:
            return 0.0
        return sum(1 for obj in sample if _is_training(obj) or _is_inference(obj)) / len(sample)

    def parse(self, obj: Any, ctx: ParseContext) -> Parsed:
        if not isinstance(obj, dict):
            raise RecordError(errors.NOT_AN_OBJECT, f"a line must be a JSON object, got {type(obj).__name__}")
        reader = _LineReader(ctx, self.options_of(ctx))
        row = reader.inference(obj) if _is_inference(obj) else reader.training(obj)
        return Parsed(rows=[row])

    def source_fields(self, extra: dict) -> dict[str, Any]:
        """The line's own keys beside image_url / image_details / label."""
        kept = extra.get(NAME) or {}
        return {k: v for k, v in kept.items() if k != "image_details"}

    def objects_in(self, element: Any) -> int:
        """Boxes / polygons of a line: the entries of a training `label` list or of `boxes`."""
        entries = element.get("boxes") if "boxes" in element else element.get("label")
        return sum(1 for e in entries if isinstance(e, dict)) if isinstance(entries, list) else 0

    def output_view(self, batch: pa.RecordBatch, options: Any) -> pa.RecordBatch:
        """Records with a semantic mask (task semantic_segmentation, which AutoML has no form
        for) take the task `mask_task` chooses, before the manifests are partitioned by task:
        a Lookout for Vision dataset's anomaly lines land in one classification file with its
        normal lines."""
        return with_mask_task(batch, self.options(options).mask_task)

    def write(self, rows: list[dict], ctx: WriteContext) -> Iterator[bytes]:
        options = self.options_of(ctx)
        datastores = DatastoreMap(options.datastore_map)
        for row in rows:
            if row.get("task") == SEMANTIC:  # a writer called without output_view (a library caller)
                row = {**row, "task": _mask_task_of(row, options.mask_task)}
            line = _LineWriter(row, ctx, datastores, options.polygon_tolerance).line()
            if line is not None:
                yield orjson.dumps(line)


SEMANTIC = "semantic_segmentation"
BRUSH_ALPHA_THRESHOLD = 128  # brush pixels at this alpha or more are the mask (as in the file checks)


def _mask_task_of(row: dict, mode: str) -> str:
    labels = row.get("labels") or []
    if mode == "instance_segmentation" or (mode == "auto" and not labels):
        return "instance_segmentation"
    return "multilabel_classification" if len(labels) > 1 else "classification"


def with_mask_task(batch: pa.RecordBatch, mode: str) -> pa.RecordBatch:
    """The batch with task semantic_segmentation replaced as `mode` says (see _mask_task_of)."""
    index = batch.schema.get_field_index("task")
    task = batch.column(index)
    plain = task.cast(pa.string()) if pa.types.is_dictionary(task.type) else task
    semantic = pc.fill_null(pc.equal(plain, SEMANTIC), False)
    if not pc.any(semantic).as_py():
        return batch
    count = pc.fill_null(pc.list_value_length(batch.column("labels")), 0)
    classes = pc.if_else(pc.greater(count, 1), "multilabel_classification", "classification")
    if mode == "instance_segmentation":
        chosen = pc.if_else(semantic, "instance_segmentation", plain)
    elif mode == "classification":
        chosen = pc.if_else(semantic, classes, plain)
    else:
        chosen = pc.if_else(semantic, pc.if_else(pc.greater(count, 0), classes, "instance_segmentation"), plain)
    if pa.types.is_dictionary(task.type):
        chosen = chosen.dictionary_encode().cast(task.type)
    return batch.set_column(index, batch.schema.field(index), chosen)


def _is_training(obj: Any) -> bool:
    return isinstance(obj, dict) and "image_url" in obj


def _is_inference(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and "image_url" not in obj
        and "filename" in obj
        and ("probs" in obj or "boxes" in obj)
    )


# --------------------------------------------------------------------------------------------
# Reading


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

    def __init__(self, ctx: ParseContext, options: AzureAutoMLOptions):
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
        unread = {k: v for k, v in details.items() if k not in _DETAIL_KEYS}
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


# --------------------------------------------------------------------------------------------
# Writing


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
        details = {k: image.get(k) for k in _DETAIL_KEYS if image.get(k) is not None}
        if details:
            line["image_details"] = details
        line.update(self._prediction() if prediction else self._training())
        if has_mask(row):
            self._write_mask(line)
        kept = dict(loads_extra(row.get("extra")).get(NAME) or {})
        # values the reader could not read (FIELD_UNREADABLE: "width": "wide", an image_details
        # that is not an object) stay in records/ but are not written: AutoML would fail on them
        if isinstance(kept.get("image_details"), dict):
            kept["image_details"] = {k: v for k, v in kept["image_details"].items() if k not in _DETAIL_KEYS}
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
        row, task = self.row, self.row.get("task")
        if task != "instance_segmentation" or row.get("origin") == "prediction":
            refuse_mask(self.ctx, row, f"Azure AutoML {task} lines have no form for a mask (formats.azure_automl.mask_task=instance_segmentation writes its polygons)")
            return
        try:
            decoded = reader_of(self.ctx).read(row)
        except MaskRejected as exc:
            refuse_mask(self.ctx, row, exc.finding.message)
            return
        for name, foreground in sorted(decoded.masks.items()):
            line["label"].append({"label": name, "polygon": contours.trace(foreground, self.polygon_tolerance)})
            self.ctx.objects_written += 1
        if "image_details" not in line:
            line["image_details"] = {"width": decoded.width, "height": decoded.height}

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
        """A brush mask (Label Studio's RLE) -> polygons traced from its pixels at alpha >= 128
        (the file checks' default); None when it cannot be decoded against the image size."""
        image = self.row.get("image") or {}
        width, height = image.get("width"), image.get("height")
        if not (width and height):
            return None
        try:
            foreground = decode_rle(obj["mask_rle"], width, height)[:, :, 3] >= BRUSH_ALPHA_THRESHOLD
        except ValueError:
            return None
        return contours.trace(foreground, self.polygon_tolerance) if foreground.any() else None

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
