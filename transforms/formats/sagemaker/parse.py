"""The reference parse of a Ground Truth line: every error code, warning and odd shape is decided here.

A line is `{"source-ref": ..., "<attr>": value, "<attr>-metadata": {...}, ...}`. A label
attribute is any key with a `<key>-metadata` twin, whatever its name and the key order; one line
may carry several (chained jobs, Rekognition's several classification attributes, Lookout for
Vision's classification + mask). The metadata `type` says what the value is; when it is absent
the value's shape does.

Lossless round trip: the columns hold what the labels mean; `extra.sagemaker.attributes` keeps,
per attribute, its name, kind, the value fields and metadata fields that have no column, and
which labels/objects it produced, so the writer can give the same line back. The fast paths
(fast_arrow.py, fast_lines.py) use the public names below, and must give exactly these rows.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson

from transforms import errors
from transforms.dates import parse_timestamp
from transforms.errors import RecordError
from transforms.formats.base import ParseContext
from transforms.formats.values import number
from transforms.schema import dumps_extra, issue

SOURCE_REF = "source-ref"
METADATA_SUFFIX = "-metadata"

CLASSIFICATION = "classification"
MULTILABEL = "multilabel"
DETECTION = "detection"
MASK = "mask"
UNKNOWN = "unknown"

TYPE_TO_KIND = {
    "groundtruth/image-classification": CLASSIFICATION,
    "groundtruth/image-classification-multilabel": MULTILABEL,
    "groundtruth/object-detection": DETECTION,
    "groundtruth/semantic-segmentation": MASK,
}
KIND_TO_TYPE = {kind: type_ for type_, kind in TYPE_TO_KIND.items()}

# Metadata fields that live in columns; every other metadata field is kept as written.
COLUMN_METADATA = {
    CLASSIFICATION: ("class-name", "confidence"),
    MULTILABEL: ("confidence-map",),  # class-map stays: it may name classes no image uses
    DETECTION: ("objects",),
    MASK: ("internal-color-map",),
    UNKNOWN: (),
}

LOOKOUT_CLASSES = {"normal": 0, "anomaly": 1}


def kind_of(attribute: str, value: Any, metadata: dict) -> str:
    if metadata.get("type") is not None:
        _string(metadata["type"], f"{attribute}-metadata.type")
    kind = TYPE_TO_KIND.get(metadata.get("type"))
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


class LineParser:
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
        kind = kind_of(attribute, value, metadata)
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
        kept = COLUMN_METADATA[kind]
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
        return annotation_of(metadata, self.issues)


def annotation_of(metadata: dict, issues: list[dict]) -> dict:
    """The `annotation` column of a label job's metadata (job name, human-annotated, creation
    date, confidence): a line's first job here, the job a writer keeps in label_jobs. A date
    that is not one is an INVALID_DATE issue appended to `issues`; a confidence that is not a
    number is INVALID_FIELD_TYPE (RecordError)."""
    created = metadata.get("creation-date")
    created_at = None
    if created is not None:
        try:
            created_at = parse_timestamp(created)
        except ValueError:
            issues.append(issue(errors.INVALID_DATE, f"creation-date {created!r} is not a date"))
    human = metadata.get("human-annotated")
    return {
        "job_name": metadata.get("job-name") if isinstance(metadata.get("job-name"), str) else None,
        "human_annotated": None if human is None else str(human).lower() == "yes",
        "created_at": created_at,
        "confidence": _number(metadata.get("confidence"), "confidence"),
    }



def parse_line(obj: dict, ctx: ParseContext) -> dict:
    """One decoded Ground Truth line -> its canonical row (RecordError when it has none)."""
    return LineParser(obj, ctx).row()
