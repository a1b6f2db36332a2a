"""COCO instances files (write only): what pycocotools, torchvision, Detectron2, MMDetection,
datumaro (`coco_instances`) and FiftyOne load.

One document per split and origin, in COCO's own layout:
`annotations/instances_<split>.json` for ground truth and `annotations/results_<split>.json` for
predictions (a COCO results file: the JSON array of annotations that pycocotools'
`COCO.loadRes` reads beside the instances file of the same split). Columns other than split
and origin that the manifests are partitioned by stay folders above `annotations/`.

Written in two steps, so memory stays flat at any size:

1. each bundle streams its rows into one *part* per partition (`CocoDocument`): one line per
   record holding its annotations, then one line per image. As it writes, a part numbers its
   categories in the order it meets them, negative (`"category_id":-N`, a text no other
   member has, so it can be replaced without parsing the rest); the annotation lines are spooled
   until the part closes, and then written with the ids every output would give them, as far as
   the part knows: position + 1 in its sorted class names (or in a pinned `coco.categories`,
   which are the output's). The worker that wrote the part does this, not the one finalize step;
2. the finalize step (`assemble`) streams the parts of each partition into the one document:
   `categories` from the names every part carries (sorted, so ids are equal in every split and
   origin; a pinned `coco.categories` list wins), the annotations as the part wrote them when
   its ids are the output's (a part that met every class, or a pinned list), else renumbered,
   the images once each (an image whose records landed in several parts is
   written once: the ids seen so far are sorted numpy arrays, 8 bytes an image), then `info`,
   which says how many records the file holds (a results file holds one line per record).

What a record becomes (`CocoDocument._encode`): one annotation per object (box, polygon rings,
brush RLE as COCO RLE), one per class of a semantic mask PNG (its COCO RLE, box and pixel
count), keypoints as COCO defines them (a region's linked points in its annotation; a record's
free points in one annotation of category `keypoints`; each category's point names, the pinned
`coco.keypoints` or the sorted union over the whole output, written at assembly), and the
image-level labels on the image entry (`image_labels`, which COCO readers ignore). An object
COCO cannot hold is refused alone (WriteContext.reject_object); the image is written with the
rest, or without annotations (a negative example) when nothing is left.


A bundle hands a part whole RecordBatches (`CocoDocument.write_batch`): the rows of the common
shape (an image of known size, objects with a label and a box, nothing else) are built from the
batch's columns (coco/boxes.py), every other row through `_encode` as a dict, in the batch's
order; the part is byte for byte the one `write` makes of the same rows.

Ids are stable across runs: a category's id is its position + 1 in the sorted class names (or in
`coco.categories`), an image's id comes from its URI and size, an annotation's from its record
and index, all below 2**53 so JSON readers in any language keep them exact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tempfile
from typing import Any, Callable, Iterator

import numpy as np
import orjson

from transforms import errors
from transforms.checks.masks import ClassMasks, MaskRejected
from transforms.checks.rle import decode_rle
from transforms.formats._mask_pixels import has_mask, reader_of, refuse_mask
from transforms.formats.base import WriteContext
from transforms.formats.coco.boxes import BOX_COLUMNS, box_lines, box_rows
from transforms.formats.coco.keypoints import FREE_KEYPOINTS_CATEGORY, group_keypoints, named_points, precedence_pairs
from transforms.settings import setting

# info.labelbeam.records / .annotations: what an instances file holds (write.count_elements and
# count_objects read them back; a results file is counted line by line)
RECORDS_KEY = "records"
ANNOTATIONS_KEY = "annotations"
OBJECTS_KEY = "objects"  # the record objects the annotations hold (a region's linked points are in its annotation)
PREDICTION = "prediction"  # the origin whose documents are COCO results files
GROUND_TRUTH = "ground_truth"
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
    # the first 52 bits of the digest (what its first 13 hex digits spell)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest()[:7], "big") >> 4 or 1


def coco_rle(foreground: np.ndarray) -> dict:
    """A boolean (height, width) mask -> COCO's compressed RLE, encoded by pycocotools itself
    (`counts` as its ASCII string): what `COCO.annToMask` decodes back to the same pixels."""
    from pycocotools import mask as mask_utils  # here: a worker that writes no mask never imports pycocotools

    encoded = mask_utils.encode(np.asfortranarray(np.asarray(foreground, np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def rle_box(rle: dict) -> list[float]:
    """[x, y, width, height] in pixels of a COCO RLE (pycocotools' toBbox)."""
    from pycocotools import mask as mask_utils

    encoded = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return [float(v) for v in mask_utils.toBbox(encoded)]


class _Refused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _pixels(value: float) -> float:
    return round(float(value), 3)


class _PartCategories:
    """The category ids of one part: its own numbering, negative (-1, -2, ... in the order names
    are met) so that no written id can be taken for another. The part rewrites them when it
    closes (position + 1 in its sorted names, or in the pinned list); assembly renumbers only a
    part whose numbering is not the output's. With a pinned list, a name outside it has no id."""

    def __init__(self, pinned: list[str]):
        self.pinned = set(pinned) if pinned else None
        self.ids: dict[str, int] = {}

    def get(self, name: str, default: int | None = None) -> int | None:
        found = self.ids.get(name)
        if found is None:
            if self.pinned is not None and name not in self.pinned:
                return default
            found = self.ids[name] = -(len(self.ids) + 1)
        return found

    def names(self) -> list[str]:
        """Names in the order of their part ids (id = -(position + 1))."""
        return list(self.ids)


# A part's summary (published with its temporary file to the finalize step)
PART_CLASSES = "classes"  # the part's category names, in the order it met them
PART_ID_NAMES = "id_names"  # the names of the ids its annotations hold: id = position + 1
PART_IMAGES_AT = "images_at"  # the byte offset where its image lines start
PART_CATEGORY_FIELDS = "category_fields"  # extra fields of a category, by name
PART_KEYPOINTS = "keypoints"  # the point names each category's annotations hold, by category name
PART_KEYPOINT_ORDER = "keypoint_order"  # [before, after] name pairs the annotations of a category hold them in
PART_OBJECTS = "objects"  # the record objects its annotations hold
PART_POINTS = "_points"  # an annotation's named points in a part, made COCO triples at assembly


# a category id as a part writes it at first (negative: no output id is; a quote inside a JSON
# string is escaped, so the text cannot occur inside one)
_PART_CATEGORY = re.compile(rb'"category_id":-(\d+)')
_PART_CATEGORY_TEXT = b'"category_id":-%d'
CATEGORY_TEXT = b'"category_id":%d'
# bytes.replace per category (a fast scan each) up to this many categories in a part, else one
# regex pass with a callback per annotation
_REPLACE_UP_TO = 32
CHUNK_BYTES = 8 << 20


def part_renumbering(new_ids: list[int]) -> Callable[[bytes], bytes]:
    """Text with a part's first ids (-1, -2, ...) -> with `new_ids` (in the part's order).
    Replaced from the longest number down, so the text of -1 is never taken from within -12's
    (a new id has no minus sign: no replacement makes a part id)."""
    if len(new_ids) <= _REPLACE_UP_TO:
        pairs = [(_PART_CATEGORY_TEXT % (position + 1), CATEGORY_TEXT % new_id) for position, new_id in enumerate(new_ids)]
        pairs.reverse()

        def replace_each(chunk: bytes) -> bytes:
            for part_text, new_text in pairs:
                chunk = chunk.replace(part_text, new_text)
            return chunk

        return replace_each

    def replace(match):
        return CATEGORY_TEXT % new_ids[int(match.group(1)) - 1]

    return lambda chunk: _PART_CATEGORY.sub(replace, chunk)


class CocoDocument:
    """One part of a COCO document, written by one bundle: one line per record (its
    annotations, comma-separated), then one line per image. Memory: the point names of each
    category; images are spooled to a temporary file until the part closes. `assemble` joins
    the parts."""

    def __init__(self, handle, options: CocoOptions, classes: list[str] | None = None, summary: dict | None = None):
        self.handle = handle
        self.options = options
        self.category_ids = _PartCategories(options.categories)
        # fields a category needs besides id and name, by class name: carried in the summary to
        # the categories written at assembly
        self.category_fields: dict[str, dict] = {}
        self.keypoint_names: dict[str, set[str]] = {}  # category name -> the point names it holds
        self.keypoint_order: dict[str, set[tuple[str, str]]] = {}  # category name -> precedence_pairs seen
        self.summary = summary if summary is not None else {}
        self.annotations = tempfile.SpooledTemporaryFile(max_size=4 << 20)  # with the part's first ids
        self.images = tempfile.SpooledTemporaryFile(max_size=16 << 20)
        self.count = 0
        self.annotations_written = 0  # annotations, in the units count_objects reads back
        self.objects_written = 0  # the record objects those annotations hold

    def write(self, rows: list[dict], ctx: WriteContext) -> None:
        lines, images = [], []
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
            lines.append(b",".join([orjson.dumps(annotation) for annotation, _ in annotations]) + b"\n")
            self.annotations_written += len(annotations)
            self.objects_written += sum(objects for _, objects in annotations)
            images.append(orjson.dumps(image) + b"\n")
            self.count += 1
        self.annotations.write(b"".join(lines))
        self.images.write(b"".join(images))

    def write_batch(self, batch, ctx: WriteContext, rows_of) -> None:
        """A RecordBatch's rows, in order: the box-only rows built from its columns
        (coco/boxes.py), the others through `write` as dicts (`rows_of(sub_batch)`). The part
        is byte for byte the one `write` makes of all rows."""
        if not batch.num_rows:
            return
        if not BOX_COLUMNS.issubset(batch.schema.names):  # not the record schema: every row as a dict
            self.write(rows_of(batch), ctx)
            return
        fast = box_rows(batch, self.options.categories)
        cuts = np.flatnonzero(np.diff(fast.astype(np.int8))) + 1
        for start, end in zip([0, *cuts.tolist()], [*cuts.tolist(), batch.num_rows]):
            part = batch.slice(start, end - start)
            if fast[start]:
                self._write_boxes(part)
            else:
                self.write(rows_of(part), ctx)

    def _write_boxes(self, batch) -> None:
        text, images, annotations = box_lines(batch, self.category_ids.get)
        self.annotations.write(text)
        self.images.write(images)
        self.count += batch.num_rows
        self.annotations_written += annotations
        self.objects_written += annotations

    def close(self) -> dict:
        """Writes the annotation lines with their ids (position + 1 in the sorted names, or in
        the pinned list), then the image lines; -> the part's summary (what `assemble` needs)."""
        names = self.category_ids.names()
        id_names = list(self.options.categories) or sorted(names)
        position = {name: i + 1 for i, name in enumerate(id_names)}
        renumber = part_renumbering([position[name] for name in names])
        self.summary[PART_IMAGES_AT] = _copy_lines(self.annotations, self.handle, renumber)
        _copy_lines(self.images, self.handle)
        self.summary[PART_CLASSES] = names
        self.summary[PART_ID_NAMES] = id_names
        self.summary[PART_OBJECTS] = self.objects_written
        if self.category_fields:
            self.summary[PART_CATEGORY_FIELDS] = self.category_fields
        if self.keypoint_names:
            self.summary[PART_KEYPOINTS] = {name: sorted(points) for name, points in self.keypoint_names.items()}
            self.summary[PART_KEYPOINT_ORDER] = {name: sorted(pairs) for name, pairs in self.keypoint_order.items()}
        return self.summary

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
            self._add_points(annotation, obj.get("label"), named_points(with_points, width, height))
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

    def _add_points(self, annotation: dict, name: str, points: dict[str, list[float]]) -> None:
        if points:
            annotation[PART_POINTS] = points
            self.keypoint_names.setdefault(name, set()).update(points)
            self.keypoint_order.setdefault(name, set()).update(precedence_pairs(list(points)))

    def _free_keypoints(self, row: dict, objects: list[dict], image_id: int, width: int, height: int) -> dict | None:
        """A record's keypoints that belong to no region: one annotation, boxed by the points."""
        category = self.category_ids.get(FREE_KEYPOINTS_CATEGORY)
        if category is None:  # a pinned category list without it
            return None
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
        self._add_points(annotation, FREE_KEYPOINTS_CATEGORY, points)
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


def _copy_lines(spool, handle, edit: Callable[[bytes], bytes] | None = None) -> int:
    """A spool's lines (each ending in a newline) -> `handle`, a few MB at a time, each chunk
    of whole lines through `edit`; closes the spool; -> the bytes written."""
    spool.seek(0)
    written = 0
    for chunk in line_chunks(spool, 1 << 62, CHUNK_BYTES):
        text = edit(chunk) if edit else chunk
        handle.write(text)
        written += len(text)
    spool.close()
    return written


def line_chunks(handle, end: int, chunk_bytes: int) -> Iterator[bytes]:
    """Whole lines of handle's bytes up to `end`, about `chunk_bytes` at a time (a last line
    without its newline gets one)."""
    left, carry = end, b""
    while left > 0:
        chunk = handle.read(min(chunk_bytes, left))
        if not chunk:
            break
        left -= len(chunk)
        chunk = carry + chunk
        cut = chunk.rfind(b"\n") + 1
        carry = chunk[cut:]
        if cut:
            yield chunk[:cut]
    if carry:
        yield carry + b"\n"


IMAGE_LABELS_KEY = "image_labels"


def _image_label(label: dict) -> dict:
    """An image-level label on the image entry: {"name"} and "score" when it has one."""
    out = {"name": label.get("name")}
    if label.get("score") is not None:
        out["score"] = float(f"{label['score']:.7g}")
    return out
