"""COCO keypoints as COCO defines them: per category a list of keypoint names (and a skeleton),
per annotation `[x, y, v]` triples in that order and `num_keypoints`.

Which points belong to which annotation (docs/formats.md, COCO keypoints):
- a keypoint object linked to a region of its record (Label Studio's `parentID`) is written in
  that region's annotation;
- an object that carries its own keypoints and a geometry keeps them in its own annotation;
- the other keypoints of a record ("free" keypoints) form one annotation of their own, in the
  category `keypoints` (as label-studio-sdk's COCO exporter groups a task's keypoints in one).

A category's keypoint names are the names of the points written with it, known only once every
annotation of the output is: the finalize step lists them (`point_order`) in the order the
records hold them (a COCO person's `nose, left_eye, right_eye, ...` stays in that order, which
flip pairs and skeletons index), whichever part met which record first.
"""

from __future__ import annotations

from typing import Any

from transforms.schema import object_attributes

#: the category of a record's keypoints that belong to no region
FREE_KEYPOINTS_CATEGORY = "keypoints"


def is_point_only(obj: dict) -> bool:
    """An object that is keypoints and nothing else (no box, polygon or mask)."""
    return bool(obj.get("keypoints")) and obj.get("bbox") is None and not obj.get("polygon") and obj.get("mask_rle") is None


def _attributes(obj: dict) -> dict:
    """What links a point to its region: only attributes naming a parent or a Label Studio
    region are decoded."""
    text = obj.get("attributes")
    if not text or ("parent_id" not in text and '"ls"' not in text):
        return {}
    return object_attributes(obj)


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


def precedence_pairs(names: list[str]) -> set[tuple[str, str]]:
    """What one annotation says of its points' order: each name comes before the next."""
    return set(zip(names, names[1:]))


def point_order(names: set[str], pairs: set[tuple[str, str]]) -> list[str]:
    """The names in an order every annotation agrees with (a topological order of `pairs`), the
    alphabetically first name whenever several may come next, so the order is the same however
    the records were split into parts. Annotations that disagree (a cycle): the alphabetically
    first of the names left goes next."""
    after: dict[str, set[str]] = {name: set() for name in names}
    before_count = dict.fromkeys(names, 0)
    for first, second in pairs:
        if first in after and second in after and second not in after[first] and first != second:
            after[first].add(second)
            before_count[second] += 1
    order: list[str] = []
    left = set(names)
    while left:
        ready = [name for name in left if before_count[name] == 0]
        name = min(ready) if ready else min(left)
        order.append(name)
        left.discard(name)
        for following in after[name]:
            before_count[following] -= 1
    return order
