"""Label Studio tasks -> canonical rows: the reference parse, which decides every error code,
warning and skip counter of the format.

One canonical row per annotation and one per prediction of a task (cancelled annotations are
skipped and counted); a task with nothing left to read gives one `unlabeled` row, so every
image stays in the dataset. Regions become objects (regions.py), `choices` become image labels.

Lossless round trip: `extra.label_studio` keeps the task's own fields (`task`), its data
fields other than the image (`data`, and the image's key `data_key`), the annotation's or
prediction's fields but `result` and `id` (`annotation`), and the raw results that are not
regions (`results`: choices, relations between results, unknown types...). Objects keep their
raw results in `attributes`. write.py puts all of it back, one task per row.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from typing import Any

from transforms import errors
from transforms.dates import parse_timestamp
from transforms.errors import RecordError
from transforms.formats.base import Parsed, iter_or_raise
from transforms.formats.label_studio import regions
from transforms.formats.label_studio.labeling_config import with_source_name
from transforms.schema import dumps_extra, issue

NAMESPACE = "label_studio"

ANNOTATION_MODES = ("all", "latest", "ground_truth")

# Skipped-record counters (Parsed.skipped).
CANCELLED = "cancelled_annotations"
NOT_LATEST = "annotations_not_latest"
NOT_GROUND_TRUTH = "annotations_not_ground_truth"

# A row's task is the most specific its content supports, in this order.
_TASK_BY_KIND = (
    (regions.KEYPOINT, "keypoints"),
    (regions.POLYGON, "instance_segmentation"),
    (regions.BRUSH, "instance_segmentation"),
    (regions.RECTANGLE, "object_detection"),
    (regions.ELLIPSE, "object_detection"),
)
TASK_KEYS = ("data", "annotations", "predictions")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def looks_like_task(obj: Any) -> bool:
    """What detection counts: an object with a `data` object and annotations, predictions or an id."""
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("data"), dict)
        and any(key in obj for key in ("annotations", "predictions", "id"))
    )


def parse_task(obj: Any, options: Any) -> Parsed:
    """One task -> its rows, read with the format's options (annotations, region_tolerance,
    brush_alpha_threshold). Raises RecordError when the task cannot be read."""
    if not isinstance(obj, dict):
        raise RecordError(
            errors.NOT_AN_OBJECT, f"a task must be an object, got {type(obj).__name__}"
        )
    data = obj.get("data")
    if not isinstance(data, dict):
        raise RecordError(errors.MISSING_SOURCE_REF, "task has no 'data' object")
    mode, tolerance, alpha = options.annotations, options.region_tolerance, options.brush_alpha_threshold
    annotations = _units(obj.get("annotations"), "annotations")
    predictions = _units(obj.get("predictions"), "predictions")
    skipped: dict[str, int] = defaultdict(int)
    kept = [a for a in annotations if not a.get("was_cancelled")]
    if len(kept) < len(annotations):
        skipped[CANCELLED] = len(annotations) - len(kept)
    if mode == "latest" and len(kept) > 1:
        skipped[NOT_LATEST] = len(kept) - 1
        kept = [max(kept, key=_recency)]
    elif mode == "ground_truth":
        truth = [a for a in kept if a.get("ground_truth") is True]
        if len(truth) < len(kept):
            skipped[NOT_GROUND_TRUTH] = len(kept) - len(truth)
        kept = truth
    task_fields = {k: v for k, v in obj.items() if k not in TASK_KEYS}
    build = _RowBuilder(task_fields, data, tolerance, alpha, task_image_size([*annotations, *predictions]))
    rows = [build.row(a, "ground_truth") for a in kept]
    rows += [build.row(p, "prediction", index=i) for i, p in enumerate(predictions)]
    if not rows:
        rows = [build.row(None, None)]
    return Parsed(rows=rows, skipped=dict(skipped))


def source_fields(extra: dict) -> dict[str, Any]:
    """The task's own fields (id, meta, ...) and its other data fields, from a row's parsed
    `extra`; data wins, as it is where an import puts a task's values."""
    kept = extra.get(NAMESPACE) or {}
    return {**(kept.get("task") or {}), **(kept.get("data") or {})}


def _units(value: Any, what: str) -> list[dict]:
    units = iter_or_raise(value if value is not None else [], what)
    for unit in units:
        if not isinstance(unit, dict):
            raise RecordError(errors.INVALID_FIELD_TYPE, f"each of {what} must be an object")
    return units


def _timestamp(value: Any) -> dt.datetime | None:
    try:
        return parse_timestamp(value)
    except (ValueError, TypeError):
        return None


def _recency(annotation: dict) -> dt.datetime:
    """Latest = most recently updated (else created); unknown dates count as oldest."""
    when = _timestamp(annotation.get("updated_at")) or _timestamp(annotation.get("created_at"))
    return when or dt.datetime.min.replace(tzinfo=dt.timezone.utc)


class _RowBuilder:
    """Canonical rows of one task: one per annotation / prediction."""

    def __init__(self, task_fields: dict, data: dict, tolerance: float, alpha: int, size: tuple[int | None, int | None] = (None, None)):
        self.size = size  # the image size any result of the task gives
        self.task_fields = task_fields
        self.data = data
        self.tolerance = tolerance
        self.alpha = alpha

    def row(self, unit: dict | None, origin: str | None, index: int = 0) -> dict:
        results = iter_or_raise(unit.get("result") or [], "result") if unit else []
        for result in results:
            if not isinstance(result, dict):
                raise RecordError(errors.INVALID_FIELD_TYPE, "each result must be an object")
        # names written unique per type for the labeling config (control_names) read as the source's
        results = [with_source_name(result) for result in results]
        key = image_key(self.data, results)
        uri = self.data[key]
        if not isinstance(uri, str) or not uri:
            raise RecordError(
                errors.INVALID_FIELD_TYPE, f"data[{key!r}] must be an image URL or path"
            )
        # a prediction often lacks original_width / _height: the task's annotations give them
        width, height = image_size(results)
        if not width and results:
            width, height = self.size
        rctx = regions.RegionContext(width, height, self.tolerance, self.alpha)
        objects, kinds, labels, loose = _read_results(results, rctx)
        if kinds and not rctx.sized:
            rctx.issues.append(
                issue(errors.IMAGE_SIZE_UNKNOWN, "regions without original_width/original_height")
            )
        named = sorted({r["to_name"] for r in results if isinstance(r.get("to_name"), str) and r["to_name"] in self.data})
        if len(named) > 1:
            # One row is one image: regions drawn on the task's other images are not moved
            # onto this one silently.
            rctx.issues.append(
                issue(errors.MULTIPLE_IMAGES, f"results name several images {named}; the row is {key!r}")
            )
        extra: dict[str, Any] = {"data_key": key}
        if self.task_fields:
            extra["task"] = self.task_fields
        other_data = {k: v for k, v in self.data.items() if k != key}
        if other_data:
            extra["data"] = other_data
        if loose:
            extra["results"] = loose
        row: dict[str, Any] = {
            "image": {"uri": uri, "width": width, "height": height},
            "task": _task_name(kinds, labels) if unit is not None else "unlabeled",
            "labels": labels,
            "objects": objects,
            "issues": rctx.issues,
        }
        if unit is not None:
            extra["annotation"] = {k: v for k, v in unit.items() if k not in ("result", "id")}
            row["origin"] = origin
            row["annotation"] = annotation_of(unit, origin, rctx.issues)
            unit_id = unit.get("id")
            if origin == "prediction":
                row["source"] = {
                    "attribute": f"prediction:{unit_id if unit_id is not None else index}"
                }
            elif unit_id is not None:
                row["source"] = {"attribute": str(unit_id)}
        row["extra"] = dumps_extra({NAMESPACE: extra})
        return row


def annotation_of(unit: dict, origin: str, issues: list[dict]) -> dict:
    """The `annotation` column of a row of `unit` (an annotation or a prediction); an
    unreadable created_at adds INVALID_DATE to `issues`."""
    created = unit.get("created_at")
    created_at = _timestamp(created) if created is not None else None
    if created is not None and created_at is None:
        issues.append(issue(errors.INVALID_DATE, f"created_at {created!r} is not a date"))
    if created_at is not None:  # the column holds milliseconds; extra keeps the text
        created_at = created_at.replace(microsecond=created_at.microsecond // 1000 * 1000)
    prediction = origin == "prediction"
    score = unit.get("score") if prediction else None
    return {
        "id": str(unit["id"]) if unit.get("id") is not None else None,
        "annotator": _annotator(unit.get("completed_by")),
        "human_annotated": not prediction,
        "created_at": created_at,
        "confidence": regions.number(score, "prediction score") if score is not None else None,
        "model_version": (
            str(unit["model_version"])
            if prediction and unit.get("model_version") is not None
            else None
        ),
    }


def _annotator(completed_by: Any) -> str | None:
    """Label Studio writes a user id, or a user object with an email."""
    if isinstance(completed_by, dict):
        who = completed_by.get("email") or completed_by.get("id")
        return str(who) if who is not None else None
    return str(completed_by) if completed_by is not None else None


def image_key(data: dict, results: list[dict]) -> str:
    """The data key of the image: named by a result's `$source` / to_name, else guessed."""
    for result in results:
        source = result.get("source")
        if isinstance(source, str) and source.startswith("$") and source[1:] in data:
            return source[1:]
    for result in results:
        if isinstance(result.get("to_name"), str) and result["to_name"] in data:
            return result["to_name"]
    if "image" in data:
        return "image"
    refs = [k for k, v in data.items() if isinstance(v, str) and ("://" in v or v.startswith("/"))]
    images = [
        k
        for k, v in data.items()
        if isinstance(v, str) and v.lower().split("?")[0].endswith(_IMAGE_SUFFIXES)
    ]
    if images or refs:
        return (images or refs)[0]
    raise RecordError(errors.MISSING_SOURCE_REF, "task data has no image URL or path")


def image_size(results: list[dict]) -> tuple[int | None, int | None]:
    for result in results:
        width = _pixels(result.get("original_width"))
        height = _pixels(result.get("original_height"))
        if width and height:
            return width, height
    return None, None


def task_image_size(units: list[dict]) -> tuple[int | None, int | None]:
    """The first image size a result of any annotation or prediction of the task gives (one
    task is one image; results on several images are flagged MULTIPLE_IMAGES)."""
    for unit in units:
        results = unit.get("result")
        if isinstance(results, list):
            size = image_size([r for r in results if isinstance(r, dict)])
            if size[0]:
                return size
    return None, None


def _pixels(value: Any) -> int | None:
    """A positive whole number of pixels (640 or 640.0), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value <= 0 or value != int(value):
        return None
    return int(value)


def _read_results(results: list[dict], rctx: regions.RegionContext):
    """Results -> (objects, region kinds, image labels, raw results kept at row level)."""
    groups: dict[Any, list[dict]] = {}
    loose_first: list[dict] = []  # results without an id (relations, ...)
    region_ids = set()
    for result in results:
        rid = result.get("id")
        kind = regions.result_type(result)
        if rid is None or kind == "relation":
            loose_first.append(result)
        elif isinstance(rid, (str, int)):
            groups.setdefault(rid, []).append(result)
            if regions.region_kind(result) is not None:
                region_ids.add(rid)
        else:
            raise RecordError(errors.INVALID_FIELD_TYPE, f"result id must be a string, got {rid!r}")
    relations: dict[Any, list[dict]] = defaultdict(list)
    loose: list[dict] = []
    for result in loose_first:
        from_id = result.get("from_id")
        if isinstance(from_id, (str, int)) and from_id in region_ids:
            relations[result["from_id"]].append(result)
        else:
            loose.append(result)
    objects, kinds, labels, row_level = [], set(), [], []
    for rid, group in groups.items():
        if rid not in region_ids:
            row_level.extend(group)
            continue
        region = group[0] if len(group) == 1 else next(r for r in group if _is_region(r))
        members = [r for r in group if r is not region]
        for member in members:
            _warn_unknown(member, rctx)
        obj, kind = regions.region_object(region, members, relations.get(rid, []), rctx)
        objects.append(obj)
        kinds.add(kind)
    for result in row_level + loose:
        _warn_unknown(result, rctx)
        if regions.result_type(result) == "choices":
            score = result.get("score")
            score = regions.number(score, "result score") if score is not None else None
            labels.extend({"name": str(c), "score": score} for c in _choices(result))
    return objects, kinds, labels, row_level + loose


def _is_region(result: dict) -> bool:
    return regions.region_kind(result) is not None


def _choices(result: dict) -> list:
    value = result.get("value")
    choices = value.get("choices") if isinstance(value, dict) else None
    if not isinstance(choices, list):
        raise RecordError(
            errors.INVALID_FIELD_TYPE, f"choices result {result.get('id')!r} has no choices list"
        )
    return choices


def _warn_unknown(result: dict, rctx: regions.RegionContext) -> None:
    kind = regions.result_type(result)
    if kind not in regions.PLAIN_TYPES and regions.region_kind(result) is None:
        rctx.issues.append(
            issue(
                errors.UNKNOWN_RESULT_TYPE,
                f"result type {result.get('type')!r} kept as written in extra",
            )
        )


def _task_name(kinds: set[str], labels: list[dict]) -> str:
    for kind, task in _TASK_BY_KIND:
        if kind in kinds:
            return task
    if labels:
        return "multilabel_classification" if len(labels) > 1 else "classification"
    return "unlabeled"
