"""COCO keypoints as COCO defines them: per category a list of keypoint names (and a skeleton),
per annotation `[x, y, v]` triples in that order and `num_keypoints`.

Which points belong to which annotation (docs/formats.md, COCO keypoints):
- a keypoint object linked to a region of its record (Label Studio's `parentID`) is written in
  that region's annotation;
- an object that carries its own keypoints and a geometry keeps them in its own annotation;
- the other keypoints of a record ("free" keypoints) form one annotation of their own, in the
  category `keypoints` (as label-studio-sdk's COCO exporter groups a task's keypoints in one).

A category's keypoint names are the sorted names of the points written with it in one file, so
they are known only once every annotation of the file is: `category_entries` builds the
categories from them, for whichever code writes the categories (a file's end, or a finalize
step that assembles several files, which then passes the union of their names).
"""

from __future__ import annotations

from typing import Any

import orjson

#: the category of a record's keypoints that belong to no region
FREE_KEYPOINTS_CATEGORY = "keypoints"


def is_point_only(obj: dict) -> bool:
    """An object that is keypoints and nothing else (no box, polygon or mask)."""
    return bool(obj.get("keypoints")) and obj.get("bbox") is None and not obj.get("polygon") and obj.get("mask_rle") is None


def _attributes(obj: dict) -> dict:
    text = obj.get("attributes")
    if not text or ("parent_id" not in text and '"ls"' not in text):
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _region_id(attributes: dict) -> Any:
    raw = attributes.get("ls")
    if isinstance(raw, list) and raw and isinstance(raw[0], dict):
        return raw[0].get("id")
    return None


def group_keypoints(objects: list[dict]) -> tuple[dict[int, list[int]], list[int]]:
    """Point-only objects -> ({index of the region they belong to: [their indexes]}, [free indexes])."""
    attributes = [_attributes(obj) for obj in objects]
    regions = {}
    for index, (obj, attrs) in enumerate(zip(objects, attributes)):
        region_id = _region_id(attrs)
        if region_id is not None and not is_point_only(obj):
            regions.setdefault(region_id, index)
    attached: dict[int, list[int]] = {}
    free: list[int] = []
    for index, (obj, attrs) in enumerate(zip(objects, attributes)):
        if not is_point_only(obj):
            continue
        parent = regions.get(attrs.get("parent_id"))
        if parent is None:
            free.append(index)
        else:
            attached.setdefault(parent, []).append(index)
    return attached, free


def named_points(objects: list[dict], width: float, height: float) -> dict[str, list[float]]:
    """The keypoints of some objects -> {name: [x, y, v]} in pixels (v 2 visible, 1 not); a
    point without a name takes its object's label; a name seen twice keeps its first point."""
    points: dict[str, list[float]] = {}
    for obj in objects:
        for point in obj.get("keypoints") or []:
            name = point.get("label") or obj.get("label") or ""
            if name in points or point.get("x") is None or point.get("y") is None:
                continue
            visible = 1 if point.get("visible") is False else 2
            points[name] = [round(point["x"] * width, 3), round(point["y"] * height, 3), visible]
    return points


def keypoint_triples(points: dict[str, list[float]], names: list[str]) -> tuple[list[float], int]:
    """{name: [x, y, v]} -> COCO's flat `keypoints` in the order of `names` (0, 0, 0 for a name
    the annotation lacks) and `num_keypoints` (the points labelled, v > 0)."""
    flat: list[float] = []
    for name in names:
        flat.extend(points.get(name) or [0, 0, 0])
    return flat, sum(1 for name in names if name in points)


def category_entries(category_ids: dict[str, int], keypoint_names: dict[int, set[str]], pinned: list[str] | None = None) -> list[dict]:
    """COCO `categories`: id, name, supercategory; with `keypoints` (the pinned names, else the
    sorted names seen) and `skeleton` (no source this project reads gives the links between
    points: empty) for the categories that hold keypoints."""
    entries = []
    for name, category_id in category_ids.items():
        entry: dict[str, Any] = {"id": category_id, "name": name, "supercategory": ""}
        if keypoint_names.get(category_id):
            entry["keypoints"] = list(pinned) if pinned else sorted(keypoint_names[category_id])
            entry["skeleton"] = []
        entries.append(entry)
    return entries
