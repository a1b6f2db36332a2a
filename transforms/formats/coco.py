"""COCO instances files (write only): what pycocotools, torchvision, Detectron2, MMDetection,
datumaro (`coco_instances`) and FiftyOne load.

One document per split and origin, in COCO's own layout:
`annotations/instances_<split>.json` for ground truth and `annotations/results_<split>.json` for
predictions (a COCO results file: the JSON array of annotations that pycocotools'
`COCO.loadRes` reads beside the instances file of the same split). Columns other than split
and origin that the manifests are partitioned by stay folders above `annotations/`.

Written in two steps, so memory stays flat at any size:

1. each bundle streams its rows into one *part* per partition (`CocoDocument`): one line per
   record holding its annotations, then one line per image. A part numbers its categories in
   the order it meets them, negative (`"category_id":-N`, a text no output id has, so it can be
   replaced without parsing the rest) and lists their names in its summary;
2. the finalize step (`assemble`) streams the parts of each partition into the one document:
   `categories` from the names every part carries (sorted, so ids are equal in every split and
   origin; a pinned `coco.categories` list wins), the annotations with the part's ids replaced
   by the output's, the images once each (an image whose records landed in several parts is
   written once: the ids seen so far are a sorted numpy array, 8 bytes an image), then `info`,
   which says how many records the file holds (a results file holds one line per record).

What a record becomes (`CocoDocument._encode`): one annotation per object (box, polygon rings,
brush RLE as COCO RLE), one per class of a semantic mask PNG (its COCO RLE, box and pixel
count), keypoints as COCO defines them (a region's linked points in its annotation; a record's
free points in one annotation of category `keypoints`; each category's point names, the pinned
`coco.keypoints` or the sorted union over the whole output, written at assembly), and the
image-level labels on the image entry (`image_labels`, which COCO readers ignore). An object
COCO cannot hold is refused alone (WriteContext.reject_object); the image is written with the
rest, or without annotations (a negative example) when nothing is left.


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
from pycocotools import mask as mask_utils

from transforms import errors
from transforms.checks.masks import ClassMasks, MaskRejected
from transforms.checks.rle import decode_rle
from transforms.formats._coco_keypoints import FREE_KEYPOINTS_CATEGORY, group_keypoints, keypoint_triples, named_points
from transforms.formats._mask_pixels import has_mask, reader_of, refuse_mask
from transforms.formats.base import OutputFormat, WriteContext, register
from transforms.partitions import folder_path, folder_value, partition_values
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


class _PartCategories:
    """The category ids of one part: its own numbering, negative (-1, -2, ... in the order names
    are met) so that no written id can be taken for another, replaced by the output's at
    assembly. With a pinned list, a name outside it has no id."""

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
PART_CLASSES = "classes"  # the part's category names, in its id order
PART_IMAGES_AT = "images_at"  # the byte offset where its image lines start
PART_CATEGORY_FIELDS = "category_fields"  # extra fields of a category, by name
PART_KEYPOINTS = "keypoints"  # the point names each category's annotations hold, by category name
PART_OBJECTS = "objects"  # the record objects its annotations hold
_POINTS = "_points"  # an annotation's named points in a part, made COCO triples at assembly


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
        self.summary = summary if summary is not None else {}
        self.images = tempfile.SpooledTemporaryFile(max_size=16 << 20)
        self.count = 0
        self.annotations_written = 0  # annotations, in the units count_objects reads back
        self.objects_written = 0  # the record objects those annotations hold
        self.size = 0  # bytes written to handle

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
        text = b"".join(lines)
        self.handle.write(text)
        self.size += len(text)
        self.images.write(b"".join(images))

    def close(self) -> dict:
        """Appends the image lines; -> the part's summary (what `assemble` needs of it)."""
        self.summary[PART_IMAGES_AT] = self.size
        self.images.seek(0)
        while chunk := self.images.read(8 << 20):
            self.handle.write(chunk)
        self.images.close()
        self.summary[PART_CLASSES] = self.category_ids.names()
        self.summary[PART_OBJECTS] = self.objects_written
        if self.category_fields:
            self.summary[PART_CATEGORY_FIELDS] = self.category_fields
        if self.keypoint_names:
            self.summary[PART_KEYPOINTS] = {name: sorted(points) for name, points in self.keypoint_names.items()}
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
            annotation[_POINTS] = points
            self.keypoint_names.setdefault(name, set()).update(points)

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


IMAGE_LABELS_KEY = "image_labels"


def _image_label(label: dict) -> dict:
    """An image-level label on the image entry: {"name"} and "score" when it has one."""
    out = {"name": label.get("name")}
    if label.get("score") is not None:
        out["score"] = float(f"{label['score']:.7g}")
    return out


# an annotation's part category id (negative: no output id is; a quote inside a JSON string is
# escaped, so the text cannot occur inside one)
_PART_CATEGORY = re.compile(rb'"category_id":-(\d+)([,}])')
_PART_CATEGORY_TEXT = b'"category_id":-%d%s'
_OUTPUT_CATEGORY_TEXT = b'"category_id":%d%s'
# bytes.replace per category (a fast scan each) up to this many categories in a part, else one
# regex pass with a callback per annotation
_REPLACE_UP_TO = 32
# an image line's id, its first member as the part writer writes it
_IMAGE_ID = re.compile(rb'^\{"id":(\d+)[,}]', re.MULTILINE)
CHUNK_BYTES = 2 << 20
# every annotation has one image_id member, and no other entry of a COCO file has one (a quote
# inside a JSON string is escaped): annotations are counted as this text
_ANNOTATION_TEXT = b'"image_id":'
RESULTS = "results"
INSTANCES = "instances"
ANNOTATIONS_FOLDER = "annotations"


def document_name(partition: str) -> str:
    """A partition's folders -> the document's path: 'split=train/origin=ground_truth' ->
    'annotations/instances_train.json', predictions -> 'annotations/results_train.json';
    other partition columns stay folders above `annotations/`."""
    values = partition_values(partition)
    split = values.pop("split", None) if "split" in values else None
    origin = values.pop("origin", None)
    stem = RESULTS if origin == PREDICTION else INSTANCES
    if origin not in (None, PREDICTION, GROUND_TRUTH):  # an origin of its own: a document of its own
        stem = f"{stem}-{folder_value(origin)}"
    name = f"{stem}_{folder_value(split)}.json" if split is not None else f"{stem}.json"
    folders = folder_path(tuple(values), tuple(values.values()))
    return "/".join(filter(None, (folders, ANNOTATIONS_FOLDER, name)))


def output_categories(summaries: list[dict], options: CocoOptions) -> list[dict]:
    """The categories of every document of the output: the pinned list, else the sorted names
    every part used; with the extra fields a part noted for a name (the first wins), and for a
    category with keypoints their names (the pinned `coco.keypoints`, else the sorted union over
    every part, so every split lists the same) and `skeleton` (no source gives the links between
    points: empty)."""
    names = list(options.categories) or sorted({name for s in summaries for name in s.get(PART_CLASSES, ())})
    fields: dict[str, dict] = {}
    points: dict[str, set[str]] = {}
    for summary in summaries:
        for name, extra in (summary.get(PART_CATEGORY_FIELDS) or {}).items():
            fields.setdefault(name, extra)
        for name, found in (summary.get(PART_KEYPOINTS) or {}).items():
            points.setdefault(name, set()).update(found)
    for name, found in points.items():
        fields[name] = {**fields.get(name, {}), "keypoints": list(options.keypoints) or sorted(found), "skeleton": []}
    return [{"id": i + 1, "name": name, "supercategory": "", **fields.get(name, {})} for i, name in enumerate(names)]


def _with_keypoint_triples(line: bytes, order_by_id: dict[int, list[str]]) -> bytes:
    """A record's annotations (one part line, renumbered) with their named points made COCO's
    `keypoints` [x, y, v, ...] in their category's order and `num_keypoints`."""
    annotations = orjson.loads(b"[" + line + b"]")
    for annotation in annotations:
        points = annotation.pop(_POINTS, None)
        if points is not None:
            annotation["keypoints"], annotation["num_keypoints"] = keypoint_triples(points, order_by_id[annotation["category_id"]])
    return b",".join(orjson.dumps(annotation) for annotation in annotations)


def _line_chunks(handle, end: int) -> Iterator[bytes]:
    """Whole lines of handle's bytes up to `end`, a few MB at a time."""
    left, carry = end, b""
    while left > 0:
        chunk = handle.read(min(CHUNK_BYTES, left))
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


class _UniqueImages:
    """Image lines -> the ones whose id was not written yet. Memory: 8 bytes an image."""

    def __init__(self):
        self.seen = np.empty(0, np.uint64)

    def new_lines(self, chunk: bytes) -> list[bytes]:
        lines = chunk.splitlines(keepends=True)
        found = _IMAGE_ID.findall(chunk)
        if len(found) != len(lines):  # an image whose id is not its first member: parse them
            found = [orjson.loads(line)["id"] for line in lines]
        ids = np.array([int(m) for m in found], np.uint64)
        unique, first = np.unique(ids, return_index=True)
        fresh = ~np.isin(unique, self.seen, assume_unique=True)
        if not fresh.any():
            return []
        self.seen = np.union1d(self.seen, unique[fresh])
        return [lines[i] for i in np.sort(first[fresh])]


def _renumbering(output_ids: list[int]) -> Callable[[bytes], bytes]:
    """Text with a part's category ids (-1, -2, ...) -> with the output's (`output_ids` in the
    part's order)."""
    if len(output_ids) <= _REPLACE_UP_TO:

        def replace_each(chunk: bytes) -> bytes:
            for position, output_id in enumerate(output_ids):
                for end in (b",", b"}"):
                    chunk = chunk.replace(_PART_CATEGORY_TEXT % (position + 1, end), _OUTPUT_CATEGORY_TEXT % (output_id, end))
            return chunk

        return replace_each

    def replace(match):
        return _OUTPUT_CATEGORY_TEXT % (output_ids[int(match.group(1)) - 1], match.group(2))

    return lambda chunk: _PART_CATEGORY.sub(replace, chunk)


def assemble(out, parts: list[tuple[Callable[[], Any], dict]], categories: list[dict], results: bool) -> None:
    """Streams parts (an opener of each part's file, its summary) into one COCO document on
    `out`: an instances file, or a results file (`results`). Reads each part twice (its
    annotations, then its images); holds one chunk and the image ids."""
    ids = {category["name"]: category["id"] for category in categories}
    order_by_id = {category["id"]: category["keypoints"] for category in categories if "keypoints" in category}
    points_text = b'"' + _POINTS.encode() + b'":'
    records = annotations = 0
    if results:
        out.write(b"[\n")
    else:
        out.write(b'{"categories":' + orjson.dumps(categories) + b',\n"annotations":[\n')
    written = False
    for opener, summary in parts:
        renumber = _renumbering([ids[name] for name in summary.get(PART_CLASSES, [])])
        with opener() as handle:
            for chunk in _line_chunks(handle, summary[PART_IMAGES_AT]):
                chunk = renumber(chunk)
                lines = chunk.split(b"\n")[:-1]
                if points_text in chunk:
                    lines = [_with_keypoint_triples(line, order_by_id) if points_text in line else line for line in lines]
                annotations += chunk.count(_ANNOTATION_TEXT)
                records += len(lines)
                if results:  # one line per record, blank when it found nothing
                    pieces = []
                    for line in lines:
                        pieces.append((b"," if written and line else b"") + line + b"\n")
                        written = written or bool(line)
                    text = b"".join(pieces)
                else:
                    filled = [line for line in lines if line]
                    if not filled:
                        continue
                    text = (b",\n" if written else b"") + b",\n".join(filled)
                    written = True
                out.write(text)
    if results:
        out.write(b"]\n")
        return
    out.write(b'\n],\n"images":[\n')
    unique, written = _UniqueImages(), False
    for opener, summary in parts:
        with opener() as handle:
            handle.seek(summary[PART_IMAGES_AT])
            for chunk in _line_chunks(handle, 1 << 62):
                lines = unique.new_lines(chunk)
                if lines:
                    out.write((b",\n" if written else b"") + b",\n".join(line.rstrip(b"\n") for line in lines))
                    written = True
    objects = sum(summary.get(PART_OBJECTS, 0) for _, summary in parts)
    info = {"description": "written by labelbeam", "labelbeam": {RECORDS_KEY: records, ANNOTATIONS_KEY: annotations, OBJECTS_KEY: objects}}
    out.write(b"\n],\n\"info\":" + orjson.dumps(info) + b"}\n")


def records_in(tail: bytes, key: str = RECORDS_KEY) -> int:
    """The record (or annotation: ANNOTATIONS_KEY) count of a COCO instances file from its last
    bytes (the `info` object)."""
    start = tail.rfind(b'"info":')
    if start < 0:
        raise ValueError("not a labelbeam COCO file: no info at its end")
    info = orjson.loads(tail[start + len(b'"info":') :].rstrip()[:-1])
    return int(info["labelbeam"].get(key, 0))


def records_in_file(handle, size: int) -> int:
    """The records a written COCO document holds, read from it: an instances file says so in
    its `info`; a results file holds one line per record between `[` and `]`."""
    handle.seek(max(size - TAIL_BYTES, 0))
    tail = handle.read()
    if b'"info":' in tail:
        return records_in(tail)
    handle.seek(0)
    newlines = 0
    while chunk := handle.read(CHUNK_BYTES):
        newlines += chunk.count(b"\n")
    return max(newlines - 2, 0)


def document_of(rows: list[dict], ctx: WriteContext, results: bool = False) -> bytes:
    """Rows -> one COCO document in memory (one part, assembled as the finalize step does):
    the document the job writes for a split, for small inputs and tests."""
    import io

    options = ctx.options if ctx.options is not None else CocoOptions()
    part = io.BytesIO()
    document = CocoDocument(part, options)
    document.write(rows, ctx)
    summary = document.close()
    out = io.BytesIO()
    assemble(out, [(lambda: io.BytesIO(part.getvalue()), summary)], output_categories([summary], options), results)
    return out.getvalue()


def annotations_in_file(handle) -> int:
    """The annotations a written COCO document (instances or results) holds, counted in its
    text: one `"image_id":` each."""
    found, carry = 0, b""
    while chunk := handle.read(CHUNK_BYTES):
        text = carry + chunk
        found += text.count(_ANNOTATION_TEXT)
        carry = text[-(len(_ANNOTATION_TEXT) - 1):]  # shorter than a match: none counted twice
    return found


@register
class CocoFormat(OutputFormat):
    """COCO instances JSON (output only)."""

    name = "coco"
    extension = ".json"
    file_layout = "document"
    uses_class_names = True
    partition_columns = ("split", "origin")
    required_partition_columns = ("origin",)  # predictions never share a file with ground truth
    Options = CocoOptions


    def needs_class_names(self, options: Any) -> bool:
        return False  # category ids are given at assembly, from the names the parts carry

    def write(self, rows: list[dict], ctx: WriteContext) -> Iterator[bytes]:
        raise NotImplementedError("coco writes whole documents: see open_document")

    def open_document(self, handle, options: CocoOptions, classes: list[str] | None = None, summary: dict | None = None) -> CocoDocument:
        return CocoDocument(handle, options, classes, summary)

    def document_name(self, partition: str) -> str:
        return document_name(partition)

    def assemble_documents(self, documents: list[tuple[str, list[tuple[Callable[[], Any], dict]]]], options: CocoOptions, open_output: Callable[[str], Any]) -> None:
        """Every partition's parts -> its one document (the write stage's finalize step)."""
        options = self.options(options)
        categories = output_categories([summary for _, parts in documents for _, summary in parts], options)
        for partition, parts in documents:
            with open_output(partition) as out:
                assemble(out, parts, categories, results=partition_values(partition).get("origin") == PREDICTION)

    def records_in_file(self, handle, size: int) -> int:
        return records_in_file(handle, size)
