"""COCO instances files (write only): what pycocotools, torchvision, Detectron2, MMDetection and
FiftyOne load.

One JSON document per partition file, written streaming: `categories` first (from every class
name of the output, which the write stage knows before the first line, so ids are equal in
every split: transforms/stages/write.py), then `annotations` as
rows arrive, then `images` (spooled to a temporary file as they arrive: one entry per image even
when several records share it), then `info`, which says how many records the file holds.

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
from transforms.formats._mask_pixels import has_mask, reader_of, refuse_mask
from transforms.errors import RecordError
from transforms.formats.base import ManifestFormat, ParseContext, Parsed, WriteContext, register
from transforms.settings import setting

# info.labelbeam.records: the records a file holds (write.count_elements reads it back)
RECORDS_KEY = "records"
TAIL_BYTES = 4096


def _class_list(value) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(item).strip() for item in items if str(item).strip()]


@dataclasses.dataclass(frozen=True)
class CocoOptions:
    categories: list[str] = setting([], help="class names in category id order (id = position + 1); default: the output's class names, sorted", flag=None, parse=_class_list)
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
    """One COCO file being written. Memory: the set of image ids seen in this file."""

    def __init__(self, handle, options: CocoOptions, classes: list[str] | None):
        self.handle = handle
        self.options = options
        names = options.categories or classes or []
        self.category_ids = {name: i + 1 for i, name in enumerate(names)}
        self.fixed = bool(options.categories)
        self.images = tempfile.SpooledTemporaryFile(max_size=16 << 20)
        self.image_ids: set[int] = set()
        self.count = 0
        self.annotations = 0
        categories = [{"id": i, "name": name, "supercategory": ""} for name, i in self.category_ids.items()]
        handle.write(b'{"categories":' + orjson.dumps(categories) + b',\n"annotations":[')

    def write(self, rows: list[dict], ctx: WriteContext) -> None:
        for row in rows:
            try:
                image, annotations, mask_refusal = self._encode(row, ctx)
            except _Refused as why:
                ctx.reject(row, why.code, str(why))
                continue
            except Exception as exc:  # noqa: BLE001 - a writer bug refuses the row, not the file
                ctx.reject(row, errors.INTERNAL_ERROR, f"the writer failed: {exc!r}")
                continue
            if mask_refusal:
                refuse_mask(ctx, row, *mask_refusal)
            for annotation in annotations:
                self.handle.write((b",\n" if self.annotations else b"\n") + orjson.dumps(annotation))
                self.annotations += 1
            if image["id"] not in self.image_ids:
                self.images.write((b",\n" if self.image_ids else b"\n") + orjson.dumps(image))
                self.image_ids.add(image["id"])
            self.count += 1

    def close(self) -> None:
        self.handle.write(b"\n],\n\"images\":[")
        self.images.seek(0)
        while chunk := self.images.read(8 << 20):
            self.handle.write(chunk)
        self.images.close()
        info = {"description": "written by labelbeam", "labelbeam": {RECORDS_KEY: self.count}}
        self.handle.write(b"\n],\n\"info\":" + orjson.dumps(info) + b"}\n")

    def _encode(self, row: dict, ctx: WriteContext) -> tuple[dict, list[dict], tuple | None]:
        """(the image entry, its annotations, why its mask is refused or None)."""
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
        annotations = [self._annotation(row, index, obj, image_id, width, height) for index, obj in enumerate(objects)]
        if decoded is not None:
            written, refusal = self._mask_annotations(row, decoded, image_id)
            annotations += written
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

    def _annotation(self, row: dict, index: int, obj: dict, image_id: int, width: int, height: int) -> dict:
        label = obj.get("label")
        if label is None:
            raise _Refused(errors.OUTPUT_UNREPRESENTABLE, f"object {index} has no label: COCO needs a category")
        category = self.category_ids.get(label)
        if category is None:
            raise _Refused(errors.OUTPUT_UNREPRESENTABLE, f"class {label!r} is not in formats.coco.categories")
        if obj.get("keypoints"):
            raise _Refused(errors.OUTPUT_UNREPRESENTABLE, "COCO keypoints (per-category skeletons) are not written")
        segmentation: Any = []
        area = obj.get("area")
        for ring in obj.get("polygon") or []:
            segmentation.append([_pixels(v * (width if i % 2 == 0 else height)) for i, v in enumerate(ring)])
        box = obj.get("bbox")
        if obj.get("mask_rle") is not None and not segmentation:  # a Label Studio brush
            try:
                foreground = decode_rle(obj["mask_rle"], width, height)[:, :, 3] >= self.options.brush_alpha_threshold
            except ValueError as exc:
                raise _Refused(errors.OUTPUT_UNREPRESENTABLE, f"object {index}: the brush RLE does not decode: {exc}") from None
            segmentation = coco_rle(foreground)
            area = float(foreground.sum())
        if box is None and segmentation and isinstance(segmentation, list):
            xs = [v for ring in obj["polygon"] for v in ring[0::2]]
            ys = [v for ring in obj["polygon"] for v in ring[1::2]]
            box = {"x_min": min(xs), "y_min": min(ys), "x_max": max(xs), "y_max": max(ys)}
        if box is None:
            raise _Refused(errors.OUTPUT_UNREPRESENTABLE, f"object {index} has no box, polygon or mask")
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


def records_in(tail: bytes) -> int:
    """The record count of a COCO file from its last bytes (the `info` object)."""
    start = tail.rfind(b'"info":')
    if start < 0:
        raise ValueError("not a labelbeam COCO file: no info at its end")
    info = orjson.loads(tail[start + len(b'"info":') :].rstrip()[:-1])
    return int(info["labelbeam"][RECORDS_KEY])


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
