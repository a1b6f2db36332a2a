"""COCO instances files (write only): what pycocotools, torchvision, Detectron2, MMDetection and
FiftyOne load.

One JSON document per partition file, written streaming: `annotations` as rows arrive (those
with keypoints held back until the file's end, when each category's keypoint names are known:
_coco_keypoints), then `categories` (from every class name of the output, which the write stage
knows before the first line, so ids are equal in every split: transforms/stages/write.py), then
`images` (spooled to a temporary file as they arrive: one entry per image even when several
records share it), then `info`, which says how many records, annotations and objects the file
holds. An object COCO cannot hold is refused alone (WriteContext.reject_object); the image is
written with the rest, or without annotations (a negative example) when nothing is left.

Ids are stable across runs: a category's id is its position + 1 in the sorted class names (or in
`coco_categories`), an image's id comes from its URI, an annotation's from its record and index,
all below 2**53 so JSON readers in any language keep them exact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from typing import Any, Iterator

import numpy as np
import orjson
from pycocotools import mask as mask_utils

from transforms import errors
from transforms.checks.masks import ClassMasks, MaskRejected
from transforms.checks.rle import decode_rle
from transforms.errors import RecordError
from transforms.formats._coco_keypoints import (
    FREE_KEYPOINTS_CATEGORY,
    category_entries,
    group_keypoints,
    keypoint_triples,
    named_points,
)
from transforms.formats._mask_pixels import has_mask, reader_of, refuse_mask
from transforms.formats.base import ManifestFormat, ParseContext, Parsed, WriteContext, register
from transforms.settings import setting

# info.labelbeam.records: the records a file holds (write.count_elements reads it back)
RECORDS_KEY = "records"
# info.labelbeam.annotations / .objects: annotations written, and the record objects they hold
# (a region's linked keypoints are in its annotation): run.json's objects landed
ANNOTATIONS_KEY = "annotations"
OBJECTS_KEY = "objects"
TAIL_BYTES = 4096


def _class_list(value) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(item).strip() for item in items if str(item).strip()]


@dataclasses.dataclass(frozen=True)
class CocoOptions:
    categories: list[str] = setting([], help="class names in category id order (id = position + 1); default: the output's class names, sorted", flag=None, parse=_class_list)
    keypoints: list[str] = setting([], help="keypoint names in COCO order, for every category with keypoints (the same in every file); default: per file, the sorted names of the points written with each category", flag=None, parse=_class_list)
    brush_alpha_threshold: int = setting(128, help="brush RLE pixels with alpha at least this are the COCO mask", minimum=0, maximum=255)


def stable_id(text: str) -> int:
    """A positive integer below 2**52 from a text: the same on every run and machine."""
    return int(hashlib.blake2b(text.encode(), digest_size=8).hexdigest()[:13], 16) or 1


def coco_rle(foreground: np.ndarray) -> dict:
    """A boolean (height, width) mask -> COCO's compressed RLE, encoded by pycocotools itself
    (`counts` as its ASCII string): what `COCO.annToMask` decodes back to the same pixels."""
    encoded = mask_utils.encode(np.asfortranarray(np.asarray(foreground, np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def rle_box(rle: dict) -> list[float]:
    """[x, y, width, height] in pixels of a COCO RLE (pycocotools' toBbox)."""
    encoded = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return [float(v) for v in mask_utils.toBbox(encoded)]


class _Refused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _pixels(value: float) -> float:
    return round(float(value), 3)


class CocoDocument:
    """One COCO file being written. Memory: the set of image ids seen in this file, and the
    keypoint names of each category."""

    def __init__(self, handle, options: CocoOptions, classes: list[str] | None):
        self.handle = handle
        self.options = options
        names = options.categories or classes or []
        self.category_ids = {name: i + 1 for i, name in enumerate(names)}
        self.fixed = bool(options.categories)
        self.images = tempfile.SpooledTemporaryFile(max_size=16 << 20)
        # annotations with keypoints wait for their category's names (known at the file's end)
        self.with_keypoints = tempfile.SpooledTemporaryFile(max_size=16 << 20)
        self.keypoint_names: dict[int, set[str]] = {}
        self.image_ids: set[int] = set()
        self.count = 0
        self.annotations = 0
        self.objects_written = 0  # record objects held by the annotations
        self.annotations_written = 0  # annotations, those held back for their keypoints included
        handle.write(b'{"annotations":[')

    def write(self, rows: list[dict], ctx: WriteContext) -> None:
        for row in rows:
            refused: list[tuple[int, str, str]] = []
            try:
                image, annotations, mask_refusal = self._encode(row, ctx, refused)
            except _Refused as why:
                ctx.reject(row, why.code, str(why))
                continue
            except Exception as exc:  # noqa: BLE001 - a writer bug refuses the row, not the file
                ctx.reject(row, errors.INTERNAL_ERROR, f"the writer failed: {exc!r}")
                continue
            for index, code, message in refused:
                ctx.reject_object(row, index, code, message)
            if mask_refusal:
                refuse_mask(ctx, row, *mask_refusal)
            for annotation, objects in annotations:
                if "_points" in annotation:
                    self.with_keypoints.write(orjson.dumps(annotation) + b"\n")
                else:
                    self._write_annotation(annotation)
                self.objects_written += objects
                self.annotations_written += 1
            if image["id"] not in self.image_ids:
                self.images.write((b",\n" if self.image_ids else b"\n") + orjson.dumps(image))
                self.image_ids.add(image["id"])
            self.count += 1

    def _write_annotation(self, annotation: dict) -> None:
        self.handle.write((b",\n" if self.annotations else b"\n") + orjson.dumps(annotation))
        self.annotations += 1

    def close(self) -> None:
        pinned = self.options.keypoints
        names = {category: list(pinned) if pinned else sorted(points) for category, points in self.keypoint_names.items()}
        self.with_keypoints.seek(0)
        for line in self.with_keypoints:
            annotation = orjson.loads(line)
            points = annotation.pop("_points")
            order = names[annotation["category_id"]]
            annotation["keypoints"], annotation["num_keypoints"] = keypoint_triples(points, order)
            self._write_annotation(annotation)
        self.with_keypoints.close()
        categories = category_entries(self.category_ids, self.keypoint_names, self.options.keypoints or None)
        self.handle.write(b"\n],\n\"categories\":" + orjson.dumps(categories) + b",\n\"images\":[")
        self.images.seek(0)
        while chunk := self.images.read(8 << 20):
            self.handle.write(chunk)
        self.images.close()
        info = {
            "description": "written by labelbeam",
            "labelbeam": {RECORDS_KEY: self.count, ANNOTATIONS_KEY: self.annotations, OBJECTS_KEY: self.objects_written},
        }
        self.handle.write(b"\n],\n\"info\":" + orjson.dumps(info) + b"}\n")

    def _encode(self, row: dict, ctx: WriteContext, refused: list) -> tuple[dict, list[tuple[dict, int]], tuple | None]:
        """The image entry, [(annotation, record objects it holds)] and why its mask is refused
        (or None); objects COCO cannot hold go to `refused` as (index, code, message); an image
        left without any is written without annotations (COCO's negative example)."""
        image = row.get("image") or {}
        uri = image.get("uri")
        if not uri:
            raise _Refused(errors.OUTPUT_UNREPRESENTABLE, "the record has no image uri")
        objects = row.get("objects") or []
        width, height = image.get("width"), image.get("height")
        decoded, refusal = None, None
        if has_mask(row):
            try:
                decoded = reader_of(ctx).read(row)
            except MaskRejected as exc:
                refusal = (exc.finding.message,)
        if decoded is not None:
            if not (width and height):  # a semantic mask covers its image: its size is the image's
                width, height = decoded.width, decoded.height
            elif (int(width), int(height)) != (decoded.width, decoded.height):
                decoded, refusal = None, (f"mask is {decoded.width}x{decoded.height}, image is {width}x{height}: a COCO mask is in image pixels",)
        if not (width and height) and objects:
            raise _Refused(errors.IMAGE_SIZE_REQUIRED, "COCO is in pixels and the image size is unknown (try --probe_images)")
        # from the URI, and the size: sources that disagree on an image's size give two images,
        # each with the annotations in its own pixels. An image with nothing in pixels and no
        # known size is still written (width and height null): see docs/formats.md.
        size = (int(width), int(height)) if width and height else (None, None)
        image_id = stable_id(f"{uri}\x00{size[0]}x{size[1]}")
        entry = {"id": image_id, "file_name": uri, "width": size[0], "height": size[1]}
        if row.get("labels"):
            entry[IMAGE_LABELS_KEY] = [_image_label(label) for label in row["labels"]]
        attached, free = group_keypoints(objects) if any(o.get("keypoints") for o in objects) else ({}, [])
        if self.options.keypoints:  # a point named outside the pinned list has no place
            for index in [i for i in free] + [i for indexes in attached.values() for i in indexes]:
                name = objects[index]["keypoints"][0].get("label") or objects[index].get("label")
                if name not in self.options.keypoints:
                    refused.append((index, errors.OBJECT_UNREPRESENTABLE, f"keypoint {name!r} is not in formats.coco.keypoints"))
            unnamed = {i for i, _, _ in refused}
            free = [i for i in free if i not in unnamed]
            attached = {parent: [i for i in indexes if i not in unnamed] for parent, indexes in attached.items()}
            points_of = unnamed
        else:
            points_of = set()
        points_of |= {i for indexes in attached.values() for i in indexes} | set(free)
        annotations = []
        for index, obj in enumerate(objects):
            if index in points_of:
                continue
            try:
                annotation = self._annotation(row, index, obj, image_id, width, height)
            except _Refused as why:
                refused.append((index, why.code, str(why)))
                refused.extend((i, why.code, f"keypoint of object {index}, which is refused") for i in attached.get(index, ()))
                continue
            with_points = [obj] + [objects[i] for i in attached.get(index, ())]
            self._add_points(annotation, named_points(with_points, width, height))
            annotations.append((annotation, len(with_points)))
        if free:
            annotation = self._free_keypoints(row, [objects[i] for i in free], image_id, width, height)
            if annotation is None:
                refused.extend(
                    (i, errors.OBJECT_UNREPRESENTABLE, f"a keypoint of no region goes to category {FREE_KEYPOINTS_CATEGORY!r}, which is not in formats.coco.categories")
                    for i in free
                )
            else:
                annotations.append((annotation, len(free)))
        if decoded is not None:
            written, refusal = self._mask_annotations(row, decoded, image_id)
            annotations += [(annotation, 0) for annotation in written]  # a mask is no record object
        return entry, annotations, refusal

    def _mask_annotations(self, row: dict, decoded: ClassMasks, image_id: int) -> tuple[list[dict], tuple | None]:
        """One annotation per class of a semantic mask: its COCO RLE, box and pixel count."""
        annotations, unknown = [], []
        for name, foreground in sorted(decoded.masks.items()):
            category = self.category_ids.get(name)
            if category is None:
                unknown.append(name)
                continue
            rle = coco_rle(foreground)
            annotations.append({
                "id": stable_id(f"{row.get('record_id')}\x00mask\x00{name}"),
                "image_id": image_id,
                "category_id": category,
                "bbox": rle_box(rle),
                "area": float(np.count_nonzero(foreground)),
                "iscrowd": 0,
                "segmentation": rle,
            })  # fmt: skip
        if unknown:
            return annotations, (f"mask classes {unknown} are not in formats.coco.categories", errors.OUTPUT_UNREPRESENTABLE)
        return annotations, None

    def _add_points(self, annotation: dict, points: dict[str, list[float]]) -> None:
        if points:
            annotation["_points"] = points
            self.keypoint_names.setdefault(annotation["category_id"], set()).update(points)

    def _free_keypoints(self, row: dict, objects: list[dict], image_id: int, width: int, height: int) -> dict | None:
        """A record's keypoints that belong to no region: one annotation, boxed by the points."""
        category = self.category_ids.get(FREE_KEYPOINTS_CATEGORY)
        if category is None:
            if self.fixed:
                return None
            category = self.category_ids[FREE_KEYPOINTS_CATEGORY] = len(self.category_ids) + 1
        points = named_points(objects, width, height)
        xs = [p[0] for p in points.values()] or [0.0]
        ys = [p[1] for p in points.values()] or [0.0]
        bbox = [min(xs), min(ys), _pixels(max(xs) - min(xs)), _pixels(max(ys) - min(ys))]
        annotation = {
            "id": stable_id(f"{row.get('record_id')}\x00{FREE_KEYPOINTS_CATEGORY}"),
            "image_id": image_id,
            "category_id": category,
            "bbox": bbox,
            "area": bbox[2] * bbox[3],
            "iscrowd": 0,
            "segmentation": [],
        }
        self._add_points(annotation, points)
        return annotation

    def _annotation(self, row: dict, index: int, obj: dict, image_id: int, width: int, height: int) -> dict:
        label = obj.get("label")
        if label is None:
            raise _Refused(errors.OBJECT_UNREPRESENTABLE, f"object {index} has no label: COCO needs a category")
        category = self.category_ids.get(label)
        if category is None:
            raise _Refused(errors.OBJECT_UNREPRESENTABLE, f"class {label!r} is not in formats.coco.categories")
        segmentation: Any = []
        area = obj.get("area")
        for ring in obj.get("polygon") or []:
            segmentation.append([_pixels(v * (width if i % 2 == 0 else height)) for i, v in enumerate(ring)])
        box = obj.get("bbox")
        if obj.get("mask_rle") is not None and not segmentation:
            try:
                foreground = decode_rle(obj["mask_rle"], width, height)[:, :, 3] >= self.options.brush_alpha_threshold
            except ValueError as exc:
                raise _Refused(errors.OBJECT_UNREPRESENTABLE, f"object {index}: the brush RLE does not decode: {exc}") from None
            segmentation = coco_rle(foreground)
            area = float(foreground.sum())
            if box is None and area:  # a brush read without the image size has no box yet
                x, y, w, h = rle_box(segmentation)
                box = {"x_min": x / width, "y_min": y / height, "x_max": (x + w) / width, "y_max": (y + h) / height}
        if box is None and segmentation and isinstance(segmentation, list):
            xs = [v for ring in obj["polygon"] for v in ring[0::2]]
            ys = [v for ring in obj["polygon"] for v in ring[1::2]]
            box = {"x_min": min(xs), "y_min": min(ys), "x_max": max(xs), "y_max": max(ys)}
        if box is None:
            raise _Refused(errors.OBJECT_UNREPRESENTABLE, f"object {index} has no box, polygon or mask")
        bbox = [
            _pixels(box["x_min"] * width),
            _pixels(box["y_min"] * height),
            _pixels((box["x_max"] - box["x_min"]) * width),
            _pixels((box["y_max"] - box["y_min"]) * height),
        ]
        annotation = {
            "id": stable_id(f"{row.get('record_id')}\x00{index}"),
            "image_id": image_id,
            "category_id": category,
            "bbox": bbox,
            "area": float(area) if area is not None else bbox[2] * bbox[3],
            "iscrowd": int(bool(obj.get("is_crowd"))),
            "segmentation": segmentation,
        }
        if obj.get("score") is not None:
            annotation["score"] = float(f"{obj['score']:.7g}")
        return annotation


IMAGE_LABELS_KEY = "image_labels"


def _image_label(label: dict) -> dict:
    """An image-level label on the image entry: {"name"} and "score" when it has one."""
    out = {"name": label.get("name")}
    if label.get("score") is not None:
        out["score"] = float(f"{label['score']:.7g}")
    return out


def records_in(tail: bytes, key: str = RECORDS_KEY) -> int:
    """The record (or annotation: ANNOTATIONS_KEY) count of a COCO file from its last bytes
    (the `info` object)."""
    start = tail.rfind(b'"info":')
    if start < 0:
        raise ValueError("not a labelbeam COCO file: no info at its end")
    info = orjson.loads(tail[start + len(b'"info":') :].rstrip()[:-1])
    return int(info["labelbeam"].get(key, 0))


@register
class CocoFormat(ManifestFormat):
    """COCO instances JSON (output only)."""

    name = "coco"
    extension = ".json"
    file_layout = "document"
    readable = False
    uses_class_names = True
    partition_columns = ("split", "origin")
    required_partition_columns = ("origin",)  # predictions never share a file with ground truth
    Options = CocoOptions

    def detect(self, sample: list[Any]) -> float:
        return 0.0  # never read: COCO is an output format

    def parse(self, obj: Any, ctx: ParseContext) -> Parsed:
        raise RecordError(errors.UNKNOWN_FORMAT, "coco is written, not read")

    def needs_class_names(self, options: Any) -> bool:
        return not self.options(options).categories  # a pinned list needs no first pass

    def write(self, rows: list[dict], ctx: WriteContext) -> Iterator[bytes]:
        raise NotImplementedError("coco writes whole documents: see open_document")

    def open_document(self, handle, options: CocoOptions, classes: list[str] | None) -> CocoDocument:
        return CocoDocument(handle, options, classes)
