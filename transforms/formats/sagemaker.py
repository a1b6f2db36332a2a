"""SageMaker Ground Truth output manifests, and the Lookout for Vision / Rekognition family.

A line is `{"source-ref": ..., "<attr>": value, "<attr>-metadata": {...}, ...}`. A label
attribute is any key with a `<key>-metadata` twin, whatever its name and the key order; one line
may carry several (chained jobs, Rekognition's several classification attributes, Lookout for
Vision's classification + mask). The metadata `type` says what the value is; when it is absent
the value's shape does.

Lossless round trip: the columns hold what the labels mean; `extra.sagemaker.attributes` keeps,
per attribute, its name, kind, the value fields and metadata fields that have no column, and
which labels/objects it produced, so the writer can give the same line back.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterator

import orjson

from transforms import errors
from transforms.dates import format_timestamp, parse_timestamp
from transforms.errors import RecordError
from transforms.formats.base import ManifestFormat, ParseContext, Parsed, WriteContext, register
from transforms.formats.values import number
from transforms.schema import dumps_extra, issue, loads_extra
from transforms.settings import setting

SOURCE_REF = "source-ref"
METADATA_SUFFIX = "-metadata"

CLASSIFICATION = "classification"
MULTILABEL = "multilabel"
DETECTION = "detection"
MASK = "mask"
UNKNOWN = "unknown"

_TYPE_TO_KIND = {
    "groundtruth/image-classification": CLASSIFICATION,
    "groundtruth/image-classification-multilabel": MULTILABEL,
    "groundtruth/object-detection": DETECTION,
    "groundtruth/semantic-segmentation": MASK,
}
_KIND_TO_TYPE = {kind: type_ for type_, kind in _TYPE_TO_KIND.items()}

# Metadata fields that live in columns; every other metadata field is kept as written.
_COLUMN_METADATA = {
    CLASSIFICATION: ("class-name", "confidence"),
    MULTILABEL: ("confidence-map",),  # class-map stays: it may name classes no image uses
    DETECTION: ("objects",),
    MASK: ("internal-color-map",),
    UNKNOWN: (),
}

LOOKOUT_CLASSES = {"normal": 0, "anomaly": 1}


def _kind_of(attribute: str, value: Any, metadata: dict) -> str:
    if metadata.get("type") is not None:
        _string(metadata["type"], f"{attribute}-metadata.type")
    kind = _TYPE_TO_KIND.get(metadata.get("type"))
    if kind:
        return kind
    if metadata.get("type"):
        return UNKNOWN
    if "class-name" in metadata:
        return CLASSIFICATION
    if isinstance(value, list) and "class-map" in metadata:
        return MULTILABEL
    if isinstance(value, dict) and "annotations" in value:
        return DETECTION
    if attribute.endswith("-ref") or "internal-color-map" in metadata:
        return MASK
    return UNKNOWN


_number = functools.partial(number, optional=True)


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RecordError(errors.INVALID_FIELD_TYPE, f"{what} must be a string, got {value!r}")
    return value


def _dict(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise RecordError(errors.INVALID_FIELD_TYPE, f"{what} must be an object")
    return value


class _LineParser:
    """Builds one canonical row from one Ground Truth line."""

    def __init__(self, obj: dict, ctx: ParseContext):
        self.obj = obj
        self.ctx = ctx
        self.labels: list[dict] = []
        self.objects: list[dict] = []
        self.mask: dict | None = None
        self.issues: list[dict] = []
        self.image_size: tuple[int, int] | None = None
        self.layout: list[dict] = []

    def row(self) -> dict:
        source_ref = self.obj.get(SOURCE_REF)
        if source_ref is None:
            raise RecordError(errors.MISSING_SOURCE_REF, "the line has no source-ref")
        source_ref = _string(source_ref, SOURCE_REF)
        if not source_ref.strip():
            raise RecordError(errors.MISSING_SOURCE_REF, "source-ref is empty")
        attributes, fields = self._split_keys()
        for attribute in attributes:
            self._read_attribute(attribute)
        first_metadata = self.obj[attributes[0] + METADATA_SUFFIX] if attributes else {}
        width, height = self.image_size or (None, None)
        extra = {"attributes": self.layout} if self.layout else {}
        if fields:
            extra["fields"] = fields
        return {
            "source": {"attribute": ",".join(attributes) or None},
            "image": {"uri": self.ctx.resolve(source_ref), "width": width, "height": height},
            "task": self._task(),
            "origin": "ground_truth",
            "labels": self.labels,
            "objects": self.objects,
            "mask": self.mask,
            "annotation": self._annotation(first_metadata) if attributes else None,
            "issues": self.issues,
            "extra": dumps_extra({"sagemaker": extra}) if extra else None,
        }

    def _split_keys(self) -> tuple[list[str], dict]:
        """Label attributes (in line order) and the other fields; orphans are errors."""
        attributes, fields = [], {}
        for key, value in self.obj.items():
            if key == SOURCE_REF:
                continue
            if key.endswith(METADATA_SUFFIX):
                if key[: -len(METADATA_SUFFIX)] not in self.obj:
                    raise RecordError(
                        errors.MISSING_LABEL_METADATA,
                        f"{key!r} has no label attribute {key[: -len(METADATA_SUFFIX)]!r}",
                    )
                continue
            if key + METADATA_SUFFIX in self.obj:
                attributes.append(key)
            elif key.endswith("-ref"):
                raise RecordError(
                    errors.MISSING_LABEL_METADATA, f"{key!r} has no {key + METADATA_SUFFIX!r}"
                )
            else:
                fields[key] = value
        return attributes, fields

    def _read_attribute(self, attribute: str) -> None:
        value = self.obj[attribute]
        metadata = _dict(self.obj[attribute + METADATA_SUFFIX], attribute + METADATA_SUFFIX)
        kind = _kind_of(attribute, value, metadata)
        if kind == MASK and self.mask is not None:
            kind = UNKNOWN
            self.issues.append(
                issue(errors.MULTIPLE_MASKS, f"{attribute!r}: one mask per record; kept in extra")
            )
        entry = {"name": attribute, "kind": kind}
        first_label, first_object = len(self.labels), len(self.objects)
        if kind == CLASSIFICATION:
            self._classification(attribute, value, metadata, entry)
        elif kind == MULTILABEL:
            self._multilabel(attribute, value, metadata, entry)
        elif kind == DETECTION:
            self._detection(attribute, value, metadata, entry)
        elif kind == MASK:
            self._mask(attribute, value, metadata)
        else:
            entry["value"] = value
            self.issues.append(
                issue(
                    errors.UNKNOWN_LABEL_TYPE,
                    f"{attribute!r} of type {metadata.get('type')!r} is kept in extra",
                )
            )
        entry["labels"] = list(range(first_label, len(self.labels)))
        entry["objects"] = list(range(first_object, len(self.objects)))
        kept = _COLUMN_METADATA[kind]
        entry["metadata"] = {k: v for k, v in metadata.items() if k not in kept}
        self.layout.append(entry)

    def _classification(self, attribute, value, metadata, entry) -> None:
        if "class-name" not in metadata:
            raise RecordError(errors.MISSING_CLASS_NAME, f"{attribute}-metadata has no class-name")
        name = _string(metadata["class-name"], f"{attribute}-metadata.class-name")
        score = _number(metadata.get("confidence"), f"{attribute}-metadata.confidence")
        self.labels.append({"name": name, "score": score})
        entry["value"] = value

    def _multilabel(self, attribute, value, metadata, entry) -> None:
        if not isinstance(value, list):
            raise RecordError(errors.INVALID_FIELD_TYPE, f"{attribute} must be a list of class ids")
        class_map = _dict(metadata.get("class-map", {}), f"{attribute}-metadata.class-map")
        confidences = _dict(metadata.get("confidence-map", {}), "confidence-map")
        for class_id in value:
            key = str(class_id)
            if key not in class_map:
                raise RecordError(
                    errors.MISSING_CLASS_NAME, f"class id {class_id!r} is not in the class-map"
                )
            self.labels.append(
                {
                    "name": _string(class_map[key], "class-map entry"),
                    "score": _number(confidences.get(key), "confidence-map entry"),
                }
            )
        entry["value"] = value

    def _detection(self, attribute, value, metadata, entry) -> None:
        value = _dict(value, attribute)
        sizes = value.get("image_size")
        if not isinstance(sizes, list) or not sizes or not isinstance(sizes[0], dict):
            raise RecordError(errors.MISSING_IMAGE_SIZE, f"{attribute} has no image_size")
        width = _number(sizes[0].get("width"), "image_size.width")
        height = _number(sizes[0].get("height"), "image_size.height")
        if not width or not height or width <= 0 or height <= 0:
            raise RecordError(errors.MISSING_IMAGE_SIZE, f"{attribute} image_size is not positive")
        self.image_size = (int(width), int(height))
        class_map = _dict(metadata.get("class-map", {}), f"{attribute}-metadata.class-map")
        scores = metadata.get("objects") or []
        if not isinstance(scores, list):
            raise RecordError(errors.INVALID_FIELD_TYPE, f"{attribute}-metadata.objects must be a list, got {type(scores).__name__}")
        boxes = value.get("annotations", [])
        if not isinstance(boxes, list):
            raise RecordError(errors.INVALID_FIELD_TYPE, f"{attribute}.annotations must be a list")
        for index, box in enumerate(boxes):
            box = _dict(box, f"{attribute}.annotations[{index}]")
            left = _number(box.get("left"), "left")
            top = _number(box.get("top"), "top")
            box_w = _number(box.get("width"), "width")
            box_h = _number(box.get("height"), "height")
            if None in (left, top, box_w, box_h):
                raise RecordError(errors.INVALID_FIELD_TYPE, f"box {index} lacks left/top/width/height")
            class_id = box.get("class_id")
            label = class_map.get(str(class_id))
            if label is None:
                raise RecordError(errors.MISSING_CLASS_NAME, f"class id {class_id!r} is not in the class-map")
            score = scores[index].get("confidence") if index < len(scores) and isinstance(scores[index], dict) else None
            self.objects.append(
                {
                    "label": label,
                    "score": _number(score, "objects.confidence"),
                    "bbox": {
                        "x_min": left / width,
                        "y_min": top / height,
                        "x_max": (left + box_w) / width,
                        "y_max": (top + box_h) / height,
                    },
                    "area": box_w * box_h,
                    # the attribute (label job) the box came from: chained jobs (transforms/label_jobs.py)
                    "attributes": orjson.dumps({"class_id": class_id, "label_attribute": attribute}).decode(),
                }
            )
        entry["value"] = {k: v for k, v in value.items() if k != "annotations"}

    def _mask(self, attribute, value, metadata) -> None:
        uri = _string(value, attribute)
        color_map = []
        for key, color in _dict(metadata.get("internal-color-map", {}), "internal-color-map").items():
            color = _dict(color, f"internal-color-map[{key}]")
            try:
                index = int(key)
            except ValueError:
                raise RecordError(errors.INVALID_FIELD_TYPE, f"color map key {key!r} is not an integer") from None
            color_map.append(
                {
                    "index": index,
                    "class_name": color.get("class-name"),
                    "hex_color": color.get("hex-color"),
                    "confidence": _number(color.get("confidence"), "color map confidence"),
                }
            )
        color_map.sort(key=lambda c: c["index"])
        self.mask = {"uri": self.ctx.resolve(uri), "color_map": color_map}

    def _task(self) -> str:
        kinds = {entry["kind"] for entry in self.layout}
        if self.mask is not None:
            return "semantic_segmentation"
        if DETECTION in kinds:
            return "object_detection"
        if MULTILABEL in kinds or len(self.labels) > 1:
            return "multilabel_classification"
        if self.labels:
            return "classification"
        return "unlabeled"

    def _annotation(self, metadata: dict) -> dict:
        created = metadata.get("creation-date")
        created_at = None
        if created is not None:
            try:
                created_at = parse_timestamp(created)
            except ValueError:
                self.issues.append(issue(errors.INVALID_DATE, f"creation-date {created!r} is not a date"))
        human = metadata.get("human-annotated")
        return {
            "job_name": metadata.get("job-name") if isinstance(metadata.get("job-name"), str) else None,
            "human_annotated": None if human is None else str(human).lower() == "yes",
            "created_at": created_at,
            "confidence": _number(metadata.get("confidence"), "confidence"),
        }


def _pixels(value: float) -> float | int:
    """Pixel coordinates as Ground Truth writes them: integers when they are integers."""
    rounded = round(value)  # an int
    return rounded if abs(value - rounded) < 1e-6 else round(value, 6)


def _json_float(value: float | None) -> float | None:
    """float32 columns written back with the digits they were read with."""
    return None if value is None else float(f"{value:.7g}")


class _LineWriter:
    """Builds one Ground Truth line from one canonical row."""

    def __init__(self, row: dict, ctx: WriteContext, classes: list[str], ids: "_OutputClassIds"):
        self.row = row
        self.ctx = ctx
        self.classes = classes
        self.ids = ids

    def line(self) -> dict | None:
        row = self.row
        image = row.get("image") or {}
        if not image.get("uri"):
            self.ctx.reject(row, errors.OUTPUT_UNREPRESENTABLE, "the record has no image uri")
            return None
        out: dict[str, Any] = {SOURCE_REF: image["uri"]}
        extra = loads_extra(row.get("extra")).get("sagemaker", {})
        layout = extra.get("attributes") or self._default_layout()
        if layout is None:
            return None
        objects_before, written_before = len(self.ctx.rejected_objects), self.ctx.objects_written
        for entry in layout:
            value, metadata = self._attribute(entry)
            if value is _REJECTED:  # the row is refused whole: not also object by object
                del self.ctx.rejected_objects[objects_before:]
                self.ctx.objects_written = written_before
                return None
            out[entry["name"]] = value
            out[entry["name"] + METADATA_SUFFIX] = metadata
        out.update(extra.get("fields", {}))
        return out

    def _default_layout(self) -> list[dict] | None:
        """Attributes for a record that did not come from Ground Truth."""
        row, layout = self.row, []
        labels, objects = row.get("labels") or [], row.get("objects") or []
        if labels:
            if row.get("task") == "multilabel_classification" or len(labels) > 1:
                layout.append({"name": "labels", "kind": MULTILABEL, "labels": list(range(len(labels)))})
            else:
                layout.append({"name": "label", "kind": CLASSIFICATION, "labels": [0]})
        if objects:
            layout.append({"name": "bounding-box", "kind": DETECTION, "objects": list(range(len(objects)))})
        if (row.get("mask") or {}).get("uri"):
            layout.append({"name": "label-ref", "kind": MASK})
        annotation = row.get("annotation") or {}
        for entry in layout:
            entry["metadata"] = _default_metadata(entry["kind"], annotation)
        return layout

    def _attribute(self, entry: dict) -> tuple[Any, dict]:
        row, kind = self.row, entry["kind"]
        metadata = dict(entry.get("metadata") or {})
        labels = [row["labels"][i] for i in entry.get("labels", []) if i < len(row.get("labels") or [])]
        if kind == CLASSIFICATION:
            label = labels[0]
            metadata["class-name"] = label["name"]
            if label.get("score") is not None:
                metadata["confidence"] = _json_float(label["score"])
            if "value" in entry:
                return entry["value"], metadata
            value = self._class_id(label["name"], {})
            if value is None:
                return _REJECTED, {}
            return value, metadata
        if kind == MULTILABEL:
            ids = entry.get("value")
            class_map = dict(metadata.get("class-map") or {})
            if not isinstance(ids, list) or len(ids) != len(labels):
                ids = []
                for label in labels:  # each id is taken with the previous labels in the map
                    class_id = self._class_id(label["name"], class_map)
                    if class_id is None:
                        return _REJECTED, {}
                    class_map[str(class_id)] = label["name"]
                    ids.append(class_id)
            for class_id, label in zip(ids, labels):
                class_map[str(class_id)] = label["name"]
            metadata["class-map"] = class_map
            scores = {str(i): _json_float(label["score"]) for i, label in zip(ids, labels) if label.get("score") is not None}
            if scores:
                metadata["confidence-map"] = scores
            return ids, metadata
        if kind == DETECTION:
            return self._detection(entry, metadata)
        if kind == MASK:
            mask = row.get("mask") or {}
            colors = mask.get("color_map") or []
            metadata["internal-color-map"] = {
                str(c["index"]): _without_none(
                    {"class-name": c["class_name"], "hex-color": c["hex_color"], "confidence": _json_float(c.get("confidence"))}
                )
                for c in colors
            }
            return mask.get("uri"), metadata
        return entry.get("value"), metadata

    def _detection(self, entry: dict, metadata: dict):
        row = self.row
        value = dict(entry.get("value") or {})
        image = row.get("image") or {}
        sizes = value.get("image_size")
        if sizes:
            width, height = sizes[0]["width"], sizes[0]["height"]
        else:
            width, height = image.get("width"), image.get("height")
            if not width or not height:
                self.ctx.reject(
                    row, errors.OUTPUT_UNREPRESENTABLE,
                    "Ground Truth boxes are in pixels and the image size is unknown (try --probe_images)",
                )
                return _REJECTED, {}
            value["image_size"] = [{"width": width, "height": height, "depth": 3}]
        class_map = dict(metadata.get("class-map") or {})
        annotations, confidences = [], []
        for index in entry.get("objects", []):
            obj = row["objects"][index]
            if obj.get("bbox") is None:  # written without it: a detection may hold no box
                self.ctx.reject_object(row, index, errors.OBJECT_UNREPRESENTABLE, "a region without a box (e.g. a keypoint) has no Ground Truth form")
                continue
            if obj.get("label") is None:
                self.ctx.reject_object(row, index, errors.OBJECT_UNREPRESENTABLE, "a box without a class has no Ground Truth form")
                continue
            class_id = _source_class_id(obj.get("attributes"))
            if class_id is None:
                class_id = self._class_id(obj["label"], class_map, index)
                if class_id is None:
                    continue
            class_map[str(class_id)] = obj["label"]
            box = obj["bbox"]
            annotations.append(
                {
                    "class_id": class_id,
                    "left": _pixels(box["x_min"] * width),
                    "top": _pixels(box["y_min"] * height),
                    "width": _pixels((box["x_max"] - box["x_min"]) * width),
                    "height": _pixels((box["y_max"] - box["y_min"]) * height),
                }
            )
            confidences.append({"confidence": _json_float(obj["score"])} if obj.get("score") is not None else {})
        value["annotations"] = annotations
        self.ctx.objects_written += len(annotations)
        metadata["class-map"] = class_map
        if any(confidences):
            metadata["objects"] = confidences
        return value, metadata


    def _class_id(self, name: str, class_map: dict[str, str], object_index: int | None = None) -> int | None:
        """The id of a class the source gave no id for, the same on every line of the output.

        With the format option `sagemaker_classes` (a comma-separated list) ids are positions in
        that list. Else, with the output's class names (the write stage's first pass): Lookout
        for Vision's 0 / 1 when they are only `normal` / `anomaly`, else positions in the sorted
        names. Without either (a writer called alone): the line's class-map, else the next free id.
        """
        classes = self.classes
        if classes:
            if name not in classes:
                if object_index is None:
                    self.ctx.reject(self.row, errors.OUTPUT_UNREPRESENTABLE, f"class {name!r} is not in {CLASSES_OPTION}")
                else:  # one box of the line: the others are written
                    self.ctx.reject_object(self.row, object_index, errors.OBJECT_UNREPRESENTABLE, f"class {name!r} is not in {CLASSES_OPTION}")
                return None
            return classes.index(name)
        known = self.ids.of(name)
        if known is not None:
            return known
        if name.lower() in LOOKOUT_CLASSES and not class_map:
            return LOOKOUT_CLASSES[name.lower()]
        for key, known in class_map.items():
            if known == name and key.isdecimal() and key.isascii():
                return int(key)
        return max((int(key) for key in class_map if key.isdecimal() and key.isascii()), default=-1) + 1


CLASSES_OPTION = "formats.sagemaker.classes"


class _OutputClassIds:
    """Ids of the output's class names (the write stage's first pass), worked out once per
    batch instead of once per box: when the names include `normal` / `anomaly` (any case),
    Lookout for Vision's 0 / 1 for them and the next ids for the others in sorted order (a
    Lookout dataset's mask classes are among the names, and must not move anomaly off 1); else
    positions in the sorted names."""

    def __init__(self, names: list[str] | None):
        self.ids: dict[str, int] | None = None
        if names is not None:
            lookout = any(n.lower() in LOOKOUT_CLASSES for n in names)
            self.ids = {}
            others = (n for n in names if not (lookout and n.lower() in LOOKOUT_CLASSES))
            if lookout:
                for name in names:
                    if name.lower() in LOOKOUT_CLASSES:
                        self.ids.setdefault(name, LOOKOUT_CLASSES[name.lower()])
            first = len(LOOKOUT_CLASSES) if lookout else 0
            for position, name in enumerate(others, start=first):
                self.ids.setdefault(name, position)

    def of(self, name: str) -> int | None:
        return None if self.ids is None else self.ids.get(name)


def _source_class_id(attributes: str | None):
    """The `class_id` an object's attributes carry from a Ground Truth source, else None.

    Attributes are written by orjson, which spells every key plainly: without the text
    `"class_id"` there is nothing to parse (other sources keep whole raw results there, and
    parsing them for each box cost a third of writing a manifest)."""
    if not attributes or '"class_id"' not in attributes:
        return None
    parsed = orjson.loads(attributes)
    return parsed.get("class_id") if isinstance(parsed, dict) else None


def _class_list(value) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(item).strip() for item in items if str(item).strip()]


@dataclasses.dataclass(frozen=True)
class SageMakerOptions:
    classes: list[str] = setting([], help="class names in id order, for records whose classes carry no Ground Truth id", flag=None, parse=_class_list)


_REJECTED = object()


def _without_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _default_metadata(kind: str, annotation: dict) -> dict:
    metadata: dict[str, Any] = {}
    if annotation.get("job_name"):
        metadata["job-name"] = annotation["job_name"]
    if annotation.get("human_annotated") is not None:
        metadata["human-annotated"] = "yes" if annotation["human_annotated"] else "no"
    if annotation.get("created_at") is not None:
        metadata["creation-date"] = format_timestamp(annotation["created_at"])
    metadata["type"] = _KIND_TO_TYPE[kind]
    return metadata


@register
class SageMakerFormat(ManifestFormat):
    """Ground Truth / Lookout for Vision / Rekognition Custom Labels manifests (JSON lines)."""

    name = "sagemaker"
    extension = ".manifest"
    file_layout = "jsonl"
    uses_class_names = True
    Options = SageMakerOptions

    def detect(self, sample: list[Any]) -> float:
        if not sample:
            return 0.0
        hits = sum(1 for obj in sample if isinstance(obj, dict) and SOURCE_REF in obj)
        return hits / len(sample)

    def parse(self, obj: Any, ctx: ParseContext) -> Parsed:
        if not isinstance(obj, dict):
            raise RecordError(errors.NOT_AN_OBJECT, "a Ground Truth line must be a JSON object")
        return Parsed(rows=[_LineParser(obj, ctx).row()])

    def needs_class_names(self, options: Any) -> bool:
        return not self.options(options).classes  # a pinned list needs no first pass

    def source_fields(self, extra: dict) -> dict[str, Any]:
        """The line's keys that are neither source-ref nor a label attribute."""
        return (extra.get("sagemaker") or {}).get("fields") or {}

    def objects_in(self, element: Any) -> int:
        """Boxes of the line's object-detection attributes."""
        return sum(
            len(value.get("annotations") or [])
            for key, value in element.items()
            if isinstance(value, dict) and isinstance(element.get(key + METADATA_SUFFIX), dict)
            and _kind_of(key, value, element[key + METADATA_SUFFIX]) == DETECTION
        )

    def write(self, rows: list[dict], ctx: WriteContext) -> Iterator[bytes]:
        classes = self.options_of(ctx).classes
        ids = _OutputClassIds(ctx.classes)
        for row in rows:
            line = _LineWriter(row, ctx, classes, ids).line()
            if line is not None:
                yield orjson.dumps(line)
