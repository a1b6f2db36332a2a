"""Label Studio task exports: a JSON array of tasks, one task object, or one task per JSONL line.

One canonical row per annotation and one per prediction of a task (cancelled annotations are
skipped and counted); a task with nothing left to read gives one `unlabeled` row, so every
image stays in the dataset. Regions become objects (see _label_studio_regions), `choices`
become image labels.

Lossless round trip: `extra.label_studio` keeps the task's own fields (`task`), its data
fields other than the image (`data`, and the image's key `data_key`), the annotation's or
prediction's fields but `result` and `id` (`annotation`), and the raw results that are not
regions (`results`: choices, relations between results, unknown types...). Objects keep their
raw results in `attributes`. The writer puts all of it back, one task per row.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import defaultdict
from typing import Any, Iterator

import orjson

from transforms import errors
from transforms.checks.masks import ClassMasks, MaskRejected
from transforms.checks.rle import encode_mask
from transforms.dates import format_timestamp, parse_timestamp
from transforms.errors import RecordError
from transforms.formats.label_studio import regions
from transforms.formats._mask_pixels import has_mask, reader_of, refuse_mask
from transforms.formats.base import (
    ManifestFormat,
    ParseContext,
    Parsed,
    WriteContext,
    iter_or_raise,
    register,
)
from transforms.schema import dumps_extra, issue, loads_extra
from transforms.settings import setting

NAMESPACE = "label_studio"

ANNOTATION_MODES = ("all", "latest", "ground_truth")


@dataclasses.dataclass(frozen=True)
class LabelStudioOptions:
    annotations: str = setting("all", help="which annotations of a task become rows: all, the latest, or those marked ground_truth", choices=ANNOTATION_MODES)
    region_tolerance: float = setting(0.1, help="percentage points a region may leave the image by without REGION_OUT_OF_RANGE", minimum=0)
    brush_alpha_threshold: int = setting(128, help="brush pixels with alpha at least this are the mask", minimum=0, maximum=255)

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
_TASK_KEYS = ("data", "annotations", "predictions")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@register
class LabelStudioFormat(ManifestFormat):
    name = NAMESPACE
    extension = ".json"
    file_layout = "json_array"

    Options = LabelStudioOptions

    def detect(self, sample: list[Any]) -> float:
        if not sample:
            return 0.0
        hits = sum(
            1
            for obj in sample
            if isinstance(obj, dict)
            and isinstance(obj.get("data"), dict)
            and any(key in obj for key in ("annotations", "predictions", "id"))
        )
        return hits / len(sample)

    def parse(self, obj: Any, ctx: ParseContext) -> Parsed:
        if not isinstance(obj, dict):
            raise RecordError(
                errors.NOT_AN_OBJECT, f"a task must be an object, got {type(obj).__name__}"
            )
        data = obj.get("data")
        if not isinstance(data, dict):
            raise RecordError(errors.MISSING_SOURCE_REF, "task has no 'data' object")
        options = self.options_of(ctx)
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
        task_fields = {k: v for k, v in obj.items() if k not in _TASK_KEYS}
        build = _RowBuilder(task_fields, data, tolerance, alpha, _task_image_size([*annotations, *predictions]))
        rows = [build.row(a, "ground_truth") for a in kept]
        rows += [build.row(p, "prediction", index=i) for i, p in enumerate(predictions)]
        if not rows:
            rows = [build.row(None, None)]
        return Parsed(rows=rows, skipped=dict(skipped))

    def source_fields(self, extra: dict) -> dict[str, Any]:
        """The task's own fields (id, meta, ...) and its other data fields; data wins, as it is
        where an import puts a task's values."""
        kept = extra.get(NAMESPACE) or {}
        return {**(kept.get("task") or {}), **(kept.get("data") or {})}

    def write(self, rows: list[dict], ctx: WriteContext) -> Iterator[bytes]:
        controls = ctx.summary.setdefault(CONTROLS, {})
        for row in rows:
            task = _task_of_row(row, ctx)
            if task is not None:
                _note_controls(task, controls)
                ctx.objects_written += self.objects_in(task)
                yield orjson.dumps(task)

    def objects_in(self, element: Any) -> int:
        """Region results (boxes, polygons, keypoints, brushes...) of a task's annotations and
        predictions: Label Studio's units, one object may give several (a box and its points)."""
        return sum(
            1
            for unit in [*(element.get("annotations") or []), *(element.get("predictions") or [])]
            for result in unit.get("result") or []
            if isinstance(result, dict) and regions.region_kind(result) is not None
        )

    def side_files(self, summaries: list[dict], classes: list[str] | None) -> dict[str, bytes]:
        """`labeling_config.xml`: a Label Studio labeling config with a control for every
        (from_name, type, to_name) the tasks use, each listing the labels written with it."""
        merged: dict = {}
        for summary in summaries:
            for key, labels in summary.get(CONTROLS, {}).items():
                merged.setdefault(key, set()).update(labels)
        return {CONFIG_FILE: labeling_config(merged)}


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
        key = _image_key(self.data, results)
        uri = self.data[key]
        if not isinstance(uri, str) or not uri:
            raise RecordError(
                errors.INVALID_FIELD_TYPE, f"data[{key!r}] must be an image URL or path"
            )
        # a prediction often lacks original_width / _height: the task's annotations give them
        width, height = _image_size(results)
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
            row["annotation"] = self._annotation(unit, origin, rctx.issues)
            unit_id = unit.get("id")
            if origin == "prediction":
                row["source"] = {
                    "attribute": f"prediction:{unit_id if unit_id is not None else index}"
                }
            elif unit_id is not None:
                row["source"] = {"attribute": str(unit_id)}
        row["extra"] = dumps_extra({NAMESPACE: extra})
        return row

    @staticmethod
    def _annotation(unit: dict, origin: str, issues: list[dict]) -> dict:
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


def _image_key(data: dict, results: list[dict]) -> str:
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


def _image_size(results: list[dict]) -> tuple[int | None, int | None]:
    for result in results:
        width = _pixels(result.get("original_width"))
        height = _pixels(result.get("original_height"))
        if width and height:
            return width, height
    return None, None


def _task_image_size(units: list[dict]) -> tuple[int | None, int | None]:
    """The first image size a result of any annotation or prediction of the task gives (one
    task is one image; results on several images are flagged MULTIPLE_IMAGES)."""
    for unit in units:
        results = unit.get("result")
        if isinstance(results, list):
            size = _image_size([r for r in results if isinstance(r, dict)])
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


# ---- writing ---------------------------------------------------------------------------------


def _task_of_row(row: dict, ctx: WriteContext) -> dict | None:
    """One canonical row -> one importable Label Studio task (None when rejected)."""
    image = row.get("image") or {}
    if not image.get("uri"):
        ctx.reject(row, errors.OUTPUT_UNREPRESENTABLE, "row has no image URI")
        return None
    ls = loads_extra(row.get("extra")).get(NAMESPACE) or {}
    origin = row.get("origin")
    results = []
    for index, obj in enumerate(row.get("objects") or []):
        written = regions.raw_results(obj) or regions.results_from_columns(
            obj, index, image, origin == "prediction"
        )
        if written is None:  # refused alone: the task is written with the other results
            ctx.reject_object(row, index, errors.OBJECT_UNREPRESENTABLE, "an object without a box, polygon, mask or keypoints has no Label Studio result")
            continue
        results.extend(_sized(written, image))
    if "results" in ls:
        results.extend(ls["results"])
    elif row.get("labels"):
        results.append(_choices_result(row["labels"], origin == "prediction"))
    if has_mask(row):
        try:
            results.extend(_brush_results(reader_of(ctx).read(row), image, origin))
        except MaskRejected as exc:  # the task is written with its other labels; the mask alone is refused
            refuse_mask(ctx, row, exc.finding.message)
    task = dict(ls.get("task") or {})
    task.setdefault("id", _task_id(row))
    task["data"] = {**(ls.get("data") or {}), ls.get("data_key") or "image": image["uri"]}
    if origin is None and not results and "annotation" not in ls:
        return task  # an unlabeled image
    unit = _unit_fields(row, ls)
    unit["result"] = results
    task["predictions" if origin == "prediction" else "annotations"] = [unit]
    return task


def _sized(results: list[dict], image: dict) -> list[dict]:
    """Region results with the image size where the source gave none (a prediction sized by
    its task's annotations, or an image probed): Label Studio reads percent with it."""
    width, height = image.get("width"), image.get("height")
    if not width or not height:
        return results
    return [
        {**r, "original_width": int(width), "original_height": int(height)}
        if r.get("original_width") is None and r.get("id") is not None and regions.result_type(r) != "relation" else r
        for r in results
    ]


def _brush_results(decoded: ClassMasks, image: dict, origin: str | None) -> list[dict]:
    """A semantic mask -> one `brushlabels` result per class, its pixels in Label Studio's RLE
    (every channel 255 on the class, as Label Studio's own mask2rle writes it). The RLE is the
    mask's size, which is the image's."""
    results = []
    for index, (name, foreground) in enumerate(sorted(decoded.masks.items())):
        results.append({
            "id": f"lb_mask{index}",
            "type": "brushlabels",
            "from_name": regions.FROM_NAMES["brushlabels"],
            "to_name": "image",
            "original_width": decoded.width,
            "original_height": decoded.height,
            "image_rotation": 0,
            "value": {"format": "rle", "rle": list(encode_mask(foreground)), "brushlabels": [name]},
        })  # fmt: skip
    return results


def _choices_result(labels: list[dict], with_score: bool) -> dict:
    result = {
        "id": "lb_choices",
        "type": "choices",
        "from_name": regions.FROM_NAMES["choices"],
        "to_name": "image",
        "value": {"choices": [label["name"] for label in labels]},
    }
    scores = [label.get("score") for label in labels if label.get("score") is not None]
    if with_score and scores:
        result["score"] = max(scores)
    return result


def _unit_fields(row: dict, ls: dict) -> dict:
    """Annotation / prediction fields: as read when known, else from the columns."""
    annotation = row.get("annotation") or {}
    unit = dict(ls.get("annotation") or {})
    if annotation.get("id") is not None:
        unit["id"] = _maybe_int(annotation["id"])
    if "annotation" in ls:
        return unit
    if annotation.get("annotator") is not None:
        unit["completed_by"] = _maybe_int(annotation["annotator"])
    if annotation.get("created_at") is not None:
        created = annotation["created_at"].astimezone(dt.timezone.utc)
        unit["created_at"] = format_timestamp(created) + "Z"
    if row.get("origin") == "prediction":
        if annotation.get("model_version") is not None:
            unit["model_version"] = annotation["model_version"]
        if annotation.get("confidence") is not None:
            unit["score"] = annotation["confidence"]
    return unit


def _maybe_int(text: str) -> int | str:
    return int(text) if text.isdecimal() and text.isascii() else text


def _task_id(row: dict) -> int:
    """A task id for a row that has none: from its record id, stable across runs, below 2**52
    (JavaScript's exact integers: Label Studio's front end reads it)."""
    return int(row["record_id"][:13], 16) if row.get("record_id") else 0


# ---- the labeling config written beside the tasks --------------------------------------------

CONTROLS = "controls"
CONFIG_FILE = "labeling_config.xml"

# result type -> Label Studio control tag
_CONTROL_TAGS = {
    "rectanglelabels": "RectangleLabels", "rectangle": "Rectangle",
    "polygonlabels": "PolygonLabels", "polygon": "Polygon",
    "ellipselabels": "EllipseLabels", "ellipse": "Ellipse",
    "keypointlabels": "KeyPointLabels", "keypoint": "KeyPoint",
    "brushlabels": "BrushLabels", "brush": "Brush", "magicwand": "MagicWand",
    "choices": "Choices", "labels": "Labels", "textarea": "TextArea", "number": "Number",
    "rating": "Rating", "taxonomy": "Taxonomy", "datetime": "DateTime",
}  # fmt: skip


def _note_controls(task: dict, controls: dict) -> None:
    """(from_name, type, to_name, data key) -> label names, for every result of a written task."""
    image_key = next(iter(k for k, v in task["data"].items() if isinstance(v, str)), "image")
    for unit in [*task.get("annotations", []), *task.get("predictions", [])]:
        for result in unit.get("result") or []:
            kind = result.get("type")
            if kind not in _CONTROL_TAGS or not isinstance(result.get("from_name"), str):
                continue
            to_name = result.get("to_name") if isinstance(result.get("to_name"), str) else "image"
            key = (result["from_name"], kind, to_name, to_name if to_name in task["data"] else image_key)
            value = result.get("value") if isinstance(result.get("value"), dict) else {}
            names = value.get(kind) if kind.endswith("labels") or kind == "choices" else None
            controls.setdefault(key, set()).update(n for n in names or [] if isinstance(n, str))


def labeling_config(controls: dict) -> bytes:
    """The labeling config XML for the controls used (an Image per to_name, then the controls)."""
    from xml.sax.saxutils import quoteattr

    images = sorted({(to_name, key) for _, _, to_name, key in controls})
    lines = ["<View>"]
    lines += [f"  <Image name={quoteattr(name)} value={quoteattr('$' + key)}/>" for name, key in images]
    for (from_name, kind, to_name, _), labels in sorted(controls.items()):
        tag = _CONTROL_TAGS[kind]
        attrs = f"name={quoteattr(from_name)} toName={quoteattr(to_name)}"
        if kind == "choices":
            attrs += ' choice="multiple"'
        if kind.endswith("labels") or kind == "choices":
            child = "Choice" if kind == "choices" else "Label"
            lines.append(f"  <{tag} {attrs}>")
            # keypoints carry their position in COCO's keypoint list (what exporters read)
            index = (lambda i: f' model_index="{i}"') if kind == "keypointlabels" else (lambda i: "")
            lines += [f"    <{child} value={quoteattr(label)}{index(i)}/>" for i, label in enumerate(sorted(labels))]
            lines.append(f"  </{tag}>")
        else:
            lines.append(f"  <{tag} {attrs}/>")
    lines.append("</View>")
    return ("\n".join(lines) + "\n").encode()
