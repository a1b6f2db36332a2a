"""Canonical rows -> Label Studio tasks: one importable task per row, the task as it was read
when the row came from Label Studio (extra.label_studio), else built from the columns."""

from __future__ import annotations

import datetime as dt
from typing import Iterator

import orjson

from transforms import errors
from transforms.checks.masks import ClassMasks, MaskRejected
from transforms.checks.rle import encode_mask
from transforms.dates import format_timestamp
from transforms.formats._mask_pixels import has_mask, reader_of, refuse_mask
from transforms.formats.base import WriteContext
from transforms.formats.label_studio import regions
from transforms.formats.label_studio.labeling_config import CONTROLS, note_controls, with_control_name
from transforms.formats.label_studio.parse import NAMESPACE
from transforms.schema import loads_extra


def write_tasks(rows: list[dict], ctx: WriteContext) -> Iterator[bytes]:
    """Rows -> encoded tasks; notes the controls each task uses (for labeling_config.xml) and
    counts the region results written."""
    controls = ctx.summary.setdefault(CONTROLS, {})
    for row in rows:
        task = task_of_row(row, ctx)
        if task is not None:
            note_controls(task, controls)
            ctx.objects_written += regions_in(task)
            yield orjson.dumps(task)


def regions_in(task: dict) -> int:
    """Region results (boxes, polygons, keypoints, brushes...) of a task's annotations and
    predictions: Label Studio's units, one object may give several (a box and its points)."""
    return sum(
        1
        for unit in [*(task.get("annotations") or []), *(task.get("predictions") or [])]
        for result in unit.get("result") or []
        if isinstance(result, dict) and regions.region_kind(result) is not None
    )


def task_of_row(row: dict, ctx: WriteContext) -> dict | None:
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
    unit["result"] = [with_control_name(r) for r in results]
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
