"""Label Studio image regions <-> canonical objects: the geometry half of the label_studio format.

Label Studio gives every region in percent of the original image (0..100); canonical objects
are in [0, 1]. Rotated rectangles turn about their top-left corner, so their corners are
computed in pixel space when the image size is known (a rotation is not rigid in percent
space unless the image is square), the way label-studio-sdk's YOLO-OBB exporter does.

Lossless: an object's `attributes` keep the region's raw results under "ls" (the region result
first, then results sharing its id: labels, per-region text, numbers...), without `value.rle`,
which lives in `mask_rle` as bytes. Relations leaving the region are kept under "relations".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from transforms import errors
from transforms.checks.rle import mask_area, mask_stats, rle_bytes
from transforms.errors import (
    REGION_OUT_OF_RANGE,
    RLE_INVALID,
    RecordError,
)
from transforms.formats.values import number
from transforms.schema import issue, object_attributes

RECTANGLE, POLYGON, ELLIPSE, KEYPOINT, BRUSH = (
    "rectangle",
    "polygon",
    "ellipse",
    "keypoint",
    "brush",
)
# Region result types, in their label-carrying and their plain (older split) forms.
REGION_KINDS = {kind: kind for kind in (RECTANGLE, POLYGON, ELLIPSE, KEYPOINT, BRUSH)}
REGION_KINDS.update(
    {f"{kind}labels": kind for kind in (RECTANGLE, POLYGON, ELLIPSE, KEYPOINT, BRUSH)}
)
# Region tools that draw an RLE mask with a paired `labels` result (same id), read as brushes.
REGION_KINDS["magicwand"] = BRUSH
# Non-region result types this format knows; any other type is kept raw with a warning.
PLAIN_TYPES = frozenset(
    {"choices", "labels", "textarea", "relation", "number", "rating", "taxonomy", "datetime"}
)


def region_kind(result: dict) -> str | None:
    """The region kind of a result, else None: the known region types, and any other type
    whose value is an RLE mask (`format: rle` or an `rle` list), as Label Studio's brush and
    magic wand write, read as a brush."""
    kind = result_type(result)
    if kind in REGION_KINDS:
        return REGION_KINDS[kind]
    if kind in PLAIN_TYPES:
        return None
    value = result.get("value")
    if isinstance(value, dict) and (value.get("format") == "rle" or isinstance(value.get("rle"), list)):
        return BRUSH
    return None



@dataclass
class RegionContext:
    """Per-annotation facts the geometry needs, and the warnings it finds."""

    width: int | None
    height: int | None
    tolerance: float  # percentage points a region may leave the image by without a warning
    alpha_threshold: int  # brush pixels with alpha >= this are foreground
    issues: list[dict] = field(default_factory=list)

    @property
    def sized(self) -> bool:
        return bool(self.width) and bool(self.height)


def result_type(result: dict) -> str:
    kind = result.get("type")
    return kind.lower() if isinstance(kind, str) else ""


def region_object(
    region: dict, members: list[dict], relations: list[dict], ctx: RegionContext
) -> tuple[dict, str]:
    """One region result (+ results sharing its id) -> (canonical object, region kind)."""
    kind = region_kind(region)
    value = region.get("value")
    if not isinstance(value, dict):
        raise RecordError(
            errors.INVALID_FIELD_TYPE, f"region {region.get('id')!r} has no value object"
        )
    labels = _labels_of(region, members)
    obj: dict[str, Any] = {"label": labels[0] if labels else None}
    if region.get("score") is not None:
        obj["score"] = number(region["score"], "result score")
    raw_region = region
    if kind == RECTANGLE:
        obj.update(_rectangle(value, ctx))
    elif kind == POLYGON:
        obj.update(_polygon(value, ctx))
    elif kind == ELLIPSE:
        obj.update(_ellipse(value, ctx))
    elif kind == KEYPOINT:
        obj["keypoints"] = [
            {
                "label": obj["label"],
                "x": number(value.get("x"), "keypoint x") / 100,
                "y": number(value.get("y"), "keypoint y") / 100,
                "visible": True,
            }
        ]
    else:
        brush, raw_region = _brush(region, value, ctx)
        obj.update(brush)
    _check_range(obj, region.get("id"), ctx)
    attributes: dict[str, Any] = {"ls": [without_size(r, ctx.width, ctx.height) if ctx.sized else r for r in (raw_region, *members)]}
    if region.get("parentID") is not None:
        attributes["parent_id"] = region["parentID"]
    texts = [t for m in members if result_type(m) == "textarea" for t in _list(m, "text")]
    if texts:
        attributes["text"] = texts
    if relations:
        attributes["relations"] = relations
    obj["attributes"] = orjson.dumps(attributes, option=orjson.OPT_SORT_KEYS).decode()
    return obj, kind


def without_size(result: dict, width: Any, height: Any) -> dict:
    """A raw result without original_width / _height when they are the row's image size (the
    writer puts the row's size on every region result: a prediction sized by its task's
    annotation then reads back the same)."""
    if result.get("original_width") == width and result.get("original_height") == height:
        result = result.copy()  # a copy and two deletes: a few times faster than rebuilding it
        del result["original_width"], result["original_height"]
    return result


def _list(result: dict, key: str) -> list:
    value = result.get("value")
    items = value.get(key) if isinstance(value, dict) else None
    return items if isinstance(items, list) else []


def _labels_of(region: dict, members: list[dict]) -> list[str]:
    """Label names: the region's own `<type>` / `labels` list, then merged `labels` results."""
    names = _list(region, result_type(region)) if result_type(region).endswith("labels") else []
    names = names or _list(region, "labels")
    for member in members:
        if result_type(member) == "labels":
            names = names + _list(member, "labels")
    return [str(name) for name in names]


def _scale(ctx: RegionContext) -> tuple[float, float]:
    """Percent -> pixels; without an image size, percent itself (aspect ratio unknown)."""
    return (ctx.width / 100, ctx.height / 100) if ctx.sized else (1.0, 1.0)


def _extent(ctx: RegionContext) -> tuple[float, float]:
    return (float(ctx.width), float(ctx.height)) if ctx.sized else (100.0, 100.0)


def rectangle_corners(x, y, width, height, rotation, image_width, image_height) -> list[float]:
    """Corners (clockwise from the anchor) of a Label Studio rectangle, in pixels.

    x, y, width, height are percent; the box turns by `rotation` degrees about (x, y).
    """
    sx, sy = image_width / 100, image_height / 100
    x0, y0, w, h = x * sx, y * sy, width * sx, height * sy
    cos, sin = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    return [
        x0, y0,
        x0 + w * cos, y0 + w * sin,
        x0 + w * cos - h * sin, y0 + w * sin + h * cos,
        x0 - h * sin, y0 + h * cos,
    ]  # fmt: skip


def _rectangle(value: dict, ctx: RegionContext) -> dict:
    x, y = number(value.get("x"), "rectangle x"), number(value.get("y"), "rectangle y")
    w, h = number(value.get("width"), "rectangle width"), number(
        value.get("height"), "rectangle height"
    )
    rotation = number(value.get("rotation", 0) or 0, "rectangle rotation")
    out: dict[str, Any] = {"rotation": rotation}
    if ctx.sized:
        out["area"] = abs(w * ctx.width / 100 * h * ctx.height / 100)
    if rotation == 0:
        out["bbox"] = _box([x / 100, (x + w) / 100], [y / 100, (y + h) / 100])
        return out
    ext_w, ext_h = _extent(ctx)
    corners = rectangle_corners(x, y, w, h, rotation, ext_w, ext_h)
    ring = [c / (ext_w if i % 2 == 0 else ext_h) for i, c in enumerate(corners)]
    out["polygon"] = [ring]
    out["bbox"] = _box(ring[0::2], ring[1::2])
    return out


def _polygon(value: dict, ctx: RegionContext) -> dict:
    points = value.get("points")
    if not isinstance(points, list) or not all(isinstance(p, list) and len(p) == 2 for p in points):
        raise RecordError(
            errors.INVALID_FIELD_TYPE, "polygon points must be a list of [x, y] pairs"
        )
    xs = [number(p[0], "polygon x") / 100 for p in points]
    ys = [number(p[1], "polygon y") / 100 for p in points]
    ring = [c for pair in zip(xs, ys) for c in pair]
    out: dict[str, Any] = {"polygon": [ring]}
    if points:
        out["bbox"] = _box(xs, ys)
    if ctx.sized and len(points) >= 3:
        twice = sum(xs[i - 1] * ys[i] - xs[i] * ys[i - 1] for i in range(len(xs)))
        out["area"] = abs(twice) / 2 * ctx.width * ctx.height
    return out


def _ellipse(value: dict, ctx: RegionContext) -> dict:
    """Centre x, y and radii in percent; the envelope of the turned ellipse, in pixel space."""
    ext_w, ext_h = _extent(ctx)
    cx, cy = (
        number(value.get("x"), "ellipse x") * ext_w / 100,
        number(value.get("y"), "ellipse y") * ext_h / 100,
    )
    rx = number(value.get("radiusX"), "ellipse radiusX") * ext_w / 100
    ry = number(value.get("radiusY"), "ellipse radiusY") * ext_h / 100
    rotation = number(value.get("rotation", 0) or 0, "ellipse rotation")
    cos, sin = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    half_w, half_h = math.hypot(rx * cos, ry * sin), math.hypot(rx * sin, ry * cos)
    out: dict[str, Any] = {
        "rotation": rotation,
        "bbox": _box(
            [(cx - half_w) / ext_w, (cx + half_w) / ext_w],
            [(cy - half_h) / ext_h, (cy + half_h) / ext_h],
        ),
    }
    if ctx.sized:
        out["area"] = math.pi * abs(rx * ry)
    return out


def _brush(region: dict, value: dict, ctx: RegionContext) -> tuple[dict, dict]:
    """mask_rle holds the RLE bytes (Label Studio's int list, each 0..255, as bytes)."""
    rle = value.get("rle", region.get("rle"))
    where = f"brush region {region.get('id')!r}"
    if value.get("format", "rle") != "rle" or rle is None:
        ctx.issues.append(
            issue(RLE_INVALID, f"{where} has no RLE (format {value.get('format')!r})")
        )
        return {}, region
    try:
        data = rle_bytes(rle)
    except ValueError as exc:  # kept raw in attributes, so nothing is lost
        ctx.issues.append(issue(RLE_INVALID, f"{where}: {exc}"))
        return {}, region
    raw = dict(region)
    if "rle" in value:  # an older top-level `rle` stays raw where it was
        raw["value"] = {k: v for k, v in value.items() if k != "rle"}
    out: dict[str, Any] = {"mask_rle": data}
    if not ctx.sized:  # the area needs no size (the RLE holds 4 values a pixel); the box does
        try:
            out["area"] = float(mask_area(data, ctx.alpha_threshold))
        except ValueError as exc:
            ctx.issues.append(issue(RLE_INVALID, f"{where}: {exc}"))
        return out, raw
    if ctx.sized:
        try:
            area, box = mask_stats(data, ctx.width, ctx.height, ctx.alpha_threshold)
        except ValueError as exc:
            ctx.issues.append(issue(RLE_INVALID, f"{where}: {exc}"))
            return out, raw
        out["area"] = float(area)
        if box:
            out["bbox"] = _box(box[0::2], box[1::2])
    return out, raw


def _box(xs, ys) -> dict:
    return {"x_min": min(xs), "y_min": min(ys), "x_max": max(xs), "y_max": max(ys)}


def _check_range(obj: dict, region_id: Any, ctx: RegionContext) -> None:
    """REGION_OUT_OF_RANGE when the region leaves the image by more than the tolerance."""
    box = obj.get("bbox")
    low, high = -ctx.tolerance / 100, 1 + ctx.tolerance / 100
    if box and not obj.get("keypoints") and low <= box["x_min"] and box["x_max"] <= high and low <= box["y_min"] and box["y_max"] <= high:
        return  # the usual region: a box inside the image (x_min <= x_max, y_min <= y_max)
    xs = [box["x_min"], box["x_max"]] if box else []
    ys = [box["y_min"], box["y_max"]] if box else []
    for point in obj.get("keypoints") or []:
        xs.append(point["x"])
        ys.append(point["y"])
    outside = [v for v in xs + ys if not low <= v <= high]
    if outside:
        ctx.issues.append(
            issue(
                REGION_OUT_OF_RANGE,
                f"region {region_id!r} reaches {max(outside, key=lambda v: abs(v - 0.5)) * 100:.4g}% "
                f"of the image (tolerance {ctx.tolerance:g} points)",
            )
        )


# ---- writing: canonical objects -> Label Studio results -------------------------------------


def raw_results(obj: dict) -> list[dict] | None:
    """The raw results of an object read from Label Studio (rle restored), else None."""
    attributes = object_attributes(obj)
    raw = attributes.get("ls")
    if not isinstance(raw, list) or not raw:
        return None
    region = dict(raw[0])
    if obj.get("mask_rle") is not None and region_kind(region) == BRUSH:
        value = region.get("value")
        if isinstance(value, dict) and "rle" not in value and "rle" not in region:
            region["value"] = {**value, "rle": list(obj["mask_rle"])}
    return [region, *raw[1:]] + list(attributes.get("relations") or [])


# One control per region type in the labeling config written beside the tasks (no Label Studio
# control takes both boxes and polygons): result type -> from_name.
FROM_NAMES = {
    "rectanglelabels": "box",
    "polygonlabels": "polygon",
    "keypointlabels": "keypoint",
    "brushlabels": "brush",
    "choices": "choice",
}


def results_from_columns(
    obj: dict, index: int, image: dict, origin_score: bool
) -> list[dict] | None:
    """A canonical object of any format -> Label Studio results; None if it has no geometry."""
    width, height = image.get("width"), image.get("height")
    region_id = f"lb{index}"
    base: dict[str, Any] = {"to_name": "image"}
    if width and height:
        base.update(original_width=int(width), original_height=int(height), image_rotation=0)
    if obj.get("score") is not None and origin_score:
        base["score"] = obj["score"]
    labels = [obj["label"]] if obj.get("label") is not None else []
    results = []
    corners = (obj.get("polygon") or [None])[0]
    if obj.get("rotation") and corners and len(corners) == 8 and width and height:
        value = _rotated_rectangle_value(corners, width, height)
        results.append(
            {
                **base,
                "id": region_id,
                "from_name": FROM_NAMES["rectanglelabels"],
                "type": "rectanglelabels",
                "value": {**value, "rectanglelabels": labels},
            }
        )
    elif obj.get("polygon"):
        for ring_index, ring in enumerate(obj["polygon"]):
            points = [[ring[i] * 100, ring[i + 1] * 100] for i in range(0, len(ring) - 1, 2)]
            rid = region_id if ring_index == 0 else f"{region_id}_{ring_index}"
            results.append(
                {
                    **base,
                    "id": rid,
                    "from_name": FROM_NAMES["polygonlabels"],
                    "type": "polygonlabels",
                    "value": {"points": points, "polygonlabels": labels},
                }
            )
    elif obj.get("bbox"):
        box = obj["bbox"]
        value = {
            "x": box["x_min"] * 100,
            "y": box["y_min"] * 100,
            "width": (box["x_max"] - box["x_min"]) * 100,
            "height": (box["y_max"] - box["y_min"]) * 100,
            "rotation": 0,
            "rectanglelabels": labels,
        }
        results.append({**base, "id": region_id, "from_name": FROM_NAMES["rectanglelabels"], "type": "rectanglelabels", "value": value})
    for point_index, point in enumerate(obj.get("keypoints") or []):
        result = {
            **base,
            "id": f"{region_id}_kp{point_index}",
            "from_name": FROM_NAMES["keypointlabels"],
            "type": "keypointlabels",
            "value": {"x": point["x"] * 100, "y": point["y"] * 100, "width": 0.5,
                      "keypointlabels": [point.get("label") or obj.get("label") or ""]},
        }  # fmt: skip
        if results:
            result["parentID"] = region_id
        results.append(result)
    return results or None


def _rotated_rectangle_value(corners: list[float], width: int, height: int) -> dict:
    """Four normalized corners (anchor first) -> Label Studio x, y, width, height, rotation."""
    px = [corners[i] * width for i in range(0, 8, 2)]
    py = [corners[i] * height for i in range(1, 8, 2)]
    box_w = math.hypot(px[1] - px[0], py[1] - py[0])
    box_h = math.hypot(px[3] - px[0], py[3] - py[0])
    return {
        "x": px[0] / width * 100,
        "y": py[0] / height * 100,
        "width": box_w / width * 100,
        "height": box_h / height * 100,
        "rotation": math.degrees(math.atan2(py[1] - py[0], px[1] - px[0])) % 360,
    }
