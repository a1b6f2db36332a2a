"""Reading COCO: a document planned in parts, its elements keyed by image id, joined, parsed.

A COCO instances file is one JSON object whose `images`, `annotations` and `categories` arrays
may hold millions of entries (gigabytes), so it is never loaded whole:

1. `plan_document` finds each member's array byte range (json_array.member_ranges, one pass
   with one read chunk of memory) and cuts it into parts at element boundaries (plan_parts), so
   many workers read one file; a results file (a top-level array of annotations with `score`)
   is planned as one member, `results`;
2. `key_batch` decodes the elements of a part and keys them: images and annotations by image
   id, categories by category id; what cannot be keyed is a dead letter where it was read;
3. after the entries are grouped by image id (spilled to files by bucket of the key, one bucket
   read at a time: transforms/spill.py), `join_image` makes each image's group one *joined* object (the
   image, its annotations, the categories they use) - one for its ground truth, one per
   results file for its predictions - and the coded dead letters of the group;
4. `record_of` (the plugin's parse) turns a joined object into the canonical row.

Counting (every element is a record, a dead letter, or folded into a record and counted `ok`):
an image's element is counted where its joined object is parsed; an annotation folded into a
record is counted `ok` by the join; a joined prediction object stands for its first result,
the join counts the others. Categories are counted when resolved.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np
import orjson
from pycocotools import mask as mask_utils

from transforms import errors
from transforms.checks.rle import encode_mask
from transforms.errors import Provenance, RecordError
from transforms.json_array import ByteRange, JsonArrayError, member_ranges, plan_parts

IMAGES, ANNOTATIONS, CATEGORIES, RESULTS = "images", "annotations", "categories", "results"
MEMBERS = (IMAGES, ANNOTATIONS, CATEGORIES)
PREDICTION, GROUND_TRUTH = "prediction", "ground_truth"
# The first member of a COCO instances file as the writers of the ecosystem order them
# (pycocotools' and COCO's own files start with info; datumaro's with licenses).
_FIRST_MEMBER = re.compile(rb'\A(?:\xef\xbb\xbf)?\s*\{\s*"(info|licenses|images|annotations|categories|type)"\s*:')


def pack(kind: str, uri: str, line: int, offset: int, raw: bytes) -> bytes:
    """An entry kept for the join as one bytes value (what a spill file holds): where it was
    read, a newline, its raw JSON."""
    return orjson.dumps([kind, uri, line, offset]) + b"\n" + raw


def unpack(packed: bytes) -> tuple[str, str, int, int, bytes]:
    """pack's inverse: (kind, uri, line, offset, raw)."""
    header, raw = packed.split(b"\n", 1)
    kind, uri, line, offset = orjson.loads(header)
    return kind, uri, line, offset, raw


Element = tuple  # an unpacked entry: (kind, uri, line, offset, raw bytes)


def claims_head(head: bytes) -> bool:
    """A COCO instances document from its first bytes: an object whose first member is one of
    COCO's own (a Label Studio task that starts with `annotations` holds no `image_id`)."""
    found = _FIRST_MEMBER.match(head)
    if not found:
        return False
    return found.group(1) != b"annotations" or b'"image_id"' in head


def looks_like_result(obj: Any) -> bool:
    """One element of a COCO results file (detection, segmentation or keypoints)."""
    return isinstance(obj, dict) and "image_id" in obj and "category_id" in obj and "score" in obj


def looks_like_document(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get(IMAGES), list) and (ANNOTATIONS in obj or CATEGORIES in obj)


def plan_document(open_file: Callable[[], Any], part_bytes: int) -> list[tuple[str, int, int, int, int]]:
    """The parts to read of one COCO file: [(member, start, end, elements before, elements)],
    `start`/`end` file offsets of the part's first element and after its last (ArrayPart reads
    them). Raises JsonArrayError when the file is neither a JSON object nor a JSON array, or a
    member read is not an array."""
    with open_file() as handle:
        first = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first == b"[":
        with open_file() as handle:
            return [(RESULTS, *part) for part in plan_parts(handle, part_bytes)]
    with open_file() as handle:
        ranges = member_ranges(handle)
    if IMAGES not in ranges:
        raise JsonArrayError("a COCO instances file has an `images` array; this object has none", 0)
    parts = []
    for member in MEMBERS:
        if member not in ranges:
            continue
        start, end = ranges[member]
        with open_file() as handle:
            handle.seek(start)
            if handle.read(1) != b"[":
                raise JsonArrayError(f"the COCO member {member!r} is not an array", start)
            member_parts = plan_parts(ByteRange(handle, start, end), part_bytes)
        parts += [(member, start + first, start + last, before, count) for first, last, before, count in member_parts]
    return parts


def _key_of(value: Any, what: str):
    """An id as COCO files write it (an integer; a string in some exports) -> the join key."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RecordError(errors.INVALID_FIELD_TYPE, f"{what} must be an integer (or a string), got {type(value).__name__}")
    return value


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def check_image(image: dict) -> None:
    """An image entry a record can be made of, or RecordError."""
    if not (image.get("file_name") or image.get("coco_url")):
        raise RecordError(errors.MISSING_SOURCE_REF, "a COCO image without file_name (or coco_url)")
    if not isinstance(image.get("file_name") or image.get("coco_url"), str):
        raise RecordError(errors.INVALID_FIELD_TYPE, "a COCO image's file_name must be a string")
    if not (_positive(image.get("width")) and _positive(image.get("height"))):
        raise RecordError(errors.INVALID_FIELD_TYPE, "a COCO image needs a positive width and height (annotations are in its pixels)")


def check_category(category: dict) -> None:
    if not isinstance(category.get("name"), str) or not category["name"]:
        raise RecordError(errors.INVALID_FIELD_TYPE, "a COCO category needs a name (a non-empty string)")
    if not isinstance(category.get("keypoints", []), list):
        raise RecordError(errors.INVALID_FIELD_TYPE, "a COCO category's keypoints must be a list of names")


def _numbers(value: Any, what: str, count: int | None = None) -> list[float]:
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise RecordError(errors.INVALID_FIELD_TYPE, f"{what} must be a list of numbers")
    if count is not None and len(value) != count:
        raise RecordError(errors.INVALID_FIELD_TYPE, f"{what} must hold {count} numbers, not {len(value)}")
    return value


def check_annotation(annotation: dict, image: dict) -> None:
    """An annotation a record object can be made of, or RecordError (its geometry's shape)."""
    if "bbox" in annotation:
        _numbers(annotation["bbox"], "bbox", 4)
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, list):
        for ring in segmentation:
            if len(_numbers(ring, "a segmentation polygon")) % 2:
                raise RecordError(errors.INVALID_FIELD_TYPE, "a segmentation polygon holds x, y pairs: an odd count of numbers")
    elif isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        _numbers(size, "segmentation.size", 2)
        if not isinstance(counts, (str, list)):
            raise RecordError(errors.INVALID_FIELD_TYPE, "segmentation.counts must be a string (compressed RLE) or a list (uncompressed)")
        if [int(v) for v in size] != [int(image["height"]), int(image["width"])]:
            raise RecordError(errors.INVALID_FIELD_TYPE, f"the RLE's size {size} is not its image's [height, width] {[image['height'], image['width']]}")
    elif segmentation is not None:
        raise RecordError(errors.INVALID_FIELD_TYPE, "segmentation must be a list of polygons or an RLE object")
    if "keypoints" in annotation and len(_numbers(annotation["keypoints"], "keypoints")) % 3:
        raise RecordError(errors.INVALID_FIELD_TYPE, "keypoints holds x, y, v triples: a count not a multiple of 3")
    if "bbox" not in annotation and not segmentation and not annotation.get("keypoints"):
        raise RecordError(errors.INVALID_FIELD_TYPE, "an annotation with no bbox, segmentation or keypoints")
    for name in ("score", "area"):
        if name in annotation and (isinstance(annotation[name], bool) or not isinstance(annotation[name], (int, float))):
            raise RecordError(errors.INVALID_FIELD_TYPE, f"{name} must be a number")


def _decode(raw: bytes) -> dict:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RecordError(errors.INVALID_JSON, str(exc)) from None
    if not isinstance(obj, dict):
        raise RecordError(errors.NOT_AN_OBJECT, f"a COCO entry must be a JSON object, got {type(obj).__name__}")
    return obj


class Counts:
    """Per file: elements folded into records (`ok`) and dead letters by stage and code."""

    def __init__(self):
        self.by_uri: dict[str, dict] = {}

    def ok(self, uri: str, n: int = 1) -> None:
        if n:
            entry = self.by_uri.setdefault(uri, {"ok": 0, "dead_letters": 0})
            entry["ok"] += n

    def dead(self, uri: str, letter: dict) -> dict:
        entry = self.by_uri.setdefault(uri, {"ok": 0, "dead_letters": 0})
        entry["dead_letters"] += 1
        codes = entry.setdefault("dead_letter_codes", {}).setdefault(letter["stage"], {})
        codes[letter["code"]] = codes.get(letter["code"], 0) + 1
        return letter


def _letter(counts: Counts, uri: str, line: int, offset: int, code: str, message: str, raw: bytes) -> dict:
    stage = errors.READ if errors.CATALOGUE[code].stage == errors.READ else errors.NORMALIZE
    letter = errors.dead_letter(Provenance(uri, line, offset, "coco"), stage, code, message, raw)
    return counts.dead(uri, letter)  # counted on the file as read (the letter's uri is redacted)


def key_batch(batch) -> tuple[list, list, list, dict]:
    """A RawBatch of one member's part -> ([(image key, packed entry)], [(category id, packed entry)],
    dead letters, counts by file). Images, annotations and results are keyed by image id."""
    keyed, categories, dead, counts = [], [], [], Counts()
    failures = {index: (code, message) for index, code, message in batch.failures}
    kind = batch.member
    for index, raw in enumerate(batch.raws):
        line, offset = batch.lines[index], batch.offsets[index]
        try:
            if index in failures:
                raise RecordError(*failures[index])
            obj = _decode(raw)
            if kind == CATEGORIES:
                check_category(obj)
                categories.append((_key_of(obj.get("id"), "a category's id"), pack(kind, batch.uri, line, offset, raw)))
            elif kind == IMAGES:
                key = _key_of(obj.get("id"), "an image's id")
                check_image(obj)
                keyed.append((key, pack(kind, batch.uri, line, offset, raw)))
            else:
                key = _key_of(obj.get("image_id"), "an annotation's image_id")
                _key_of(obj.get("category_id"), "an annotation's category_id")
                keyed.append((key, pack(kind, batch.uri, line, offset, raw)))
        except RecordError as exc:
            dead.append(_letter(counts, batch.uri, line, offset, exc.code, exc.message, raw))
    return keyed, categories, dead, counts.by_uri


def resolve_category(category_id, packed: list[bytes]) -> tuple[dict, list, dict]:
    """Every entry of one category id -> (the category, dead letters, counts): the first by
    file and offset names it; an equal repeat is counted ok, a different one is a conflict."""
    counts, dead = Counts(), []
    elements = sorted(map(unpack, packed), key=lambda e: (e[1], e[3]))
    first = orjson.loads(elements[0][4])
    counts.ok(elements[0][1])
    for _, uri, line, offset, raw in elements[1:]:
        other = orjson.loads(raw)
        if other == first:
            counts.ok(uri)
        else:
            message = f"category {category_id!r} is {first.get('name')!r} in {elements[0][1]} (byte {elements[0][3]}); this entry differs"
            dead.append(_letter(counts, uri, line, offset, errors.COCO_CATEGORY_CONFLICT, message, raw))
    return first, dead, counts.by_uri


def join_image(image_id, packed: list[bytes], categories: dict) -> tuple[list[tuple[Provenance, bytes]], list, dict]:
    """One image id's elements -> (joined objects with where each was read, dead letters,
    counts): the image with its ground-truth annotations, and one joined object per results
    file holding its predictions for the image."""
    counts, dead, joined = Counts(), [], []
    elements = sorted(map(unpack, packed), key=lambda e: (e[1], e[3]))
    images = [e for e in elements if e[0] == IMAGES]
    if not images:
        for _, uri, line, offset, raw in elements:
            message = f"no image with id {image_id!r} in the job's COCO instances files (a results file is read beside its instances file)"
            dead.append(_letter(counts, uri, line, offset, errors.COCO_IMAGE_MISSING, message, raw))
        return joined, dead, counts.by_uri
    _, image_uri, image_line, image_offset, image_raw = images[0]
    for _, uri, line, offset, raw in images[1:]:
        message = f"image id {image_id!r} is given first in {image_uri} (byte {image_offset}); this entry is not read"
        dead.append(_letter(counts, uri, line, offset, errors.COCO_IMAGE_ID_REPEATED, message, raw))
    image = orjson.loads(image_raw)
    truth: list[dict] = []
    predictions: dict[str, list[tuple[Element, dict]]] = {}
    for element in elements:
        kind, uri, line, offset, raw = element
        if kind == IMAGES:
            continue
        annotation = orjson.loads(raw)
        category = categories.get(annotation.get("category_id"))
        try:
            if category is None:
                raise RecordError(errors.COCO_CATEGORY_UNKNOWN, f"category_id {annotation.get('category_id')!r} names no category of the job's COCO files")
            check_annotation(annotation, image)
        except RecordError as exc:
            dead.append(_letter(counts, uri, line, offset, exc.code, exc.message, raw))
            continue
        if kind == RESULTS:
            predictions.setdefault(uri, []).append((element, annotation))
        else:
            truth.append(annotation)
            counts.ok(uri)
    joined.append((Provenance(image_uri, image_line, image_offset, "coco"), _joined(image, truth, categories, GROUND_TRUTH)))
    for uri, found in predictions.items():
        (_, _, line, offset, _), _ = found[0]
        counts.ok(uri, len(found) - 1)  # the first is counted where the joined object is parsed
        annotations = [annotation for _, annotation in found]
        joined.append((Provenance(uri, line, offset, "coco"), _joined(image, annotations, categories, PREDICTION)))
    return joined, dead, counts.by_uri


def _joined(image: dict, annotations: list[dict], categories: dict, origin: str) -> bytes:
    used = {annotation["category_id"] for annotation in annotations}
    return orjson.dumps({
        "image": image,
        "annotations": annotations,
        "categories": [categories[category_id] for category_id in sorted(used, key=str)],
        "origin": origin,
    })  # fmt: skip


def is_joined(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("image"), dict) and isinstance(obj.get("annotations"), list)


def _box(x: float, y: float, w: float, h: float, width: float, height: float) -> dict:
    return {"x_min": x / width, "y_min": y / height, "x_max": (x + w) / width, "y_max": (y + h) / height}


def _object(annotation: dict, category: dict, width: int, height: int) -> dict:
    """One COCO annotation -> one canonical object (normalized coordinates)."""
    obj: dict[str, Any] = {"label": category["name"], "is_crowd": bool(annotation.get("iscrowd"))}
    if annotation.get("score") is not None:
        obj["score"] = float(annotation["score"])
    segmentation = annotation.get("segmentation")
    box = annotation.get("bbox")
    if isinstance(segmentation, list) and segmentation:
        obj["polygon"] = [[v / (width if i % 2 == 0 else height) for i, v in enumerate(ring)] for ring in segmentation]
        if box is None:
            xs = [v for ring in segmentation for v in ring[0::2]]
            ys = [v for ring in segmentation for v in ring[1::2]]
            box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    elif isinstance(segmentation, dict):
        rle = segmentation
        if isinstance(rle["counts"], list):  # uncompressed: pycocotools compresses it
            rle = mask_utils.frPyObjects(rle, int(rle["size"][0]), int(rle["size"][1]))
        else:
            rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
        foreground = mask_utils.decode(rle).astype(bool)
        obj["mask_rle"] = encode_mask(foreground)
        if annotation.get("area") is None:
            obj["area"] = float(np.count_nonzero(foreground))
        if box is None:
            box = [float(v) for v in mask_utils.toBbox(rle)]
    if annotation.get("area") is not None:
        obj["area"] = float(annotation["area"])
    elif isinstance(segmentation, list) and segmentation:  # as pycocotools' loadRes gives a result without one
        obj["area"] = float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))))
    elif "area" not in obj and annotation.get("bbox") is not None:
        obj["area"] = float(box[2]) * float(box[3])
    names = category.get("keypoints") or []
    points = annotation.get("keypoints") or []
    if points:
        obj["keypoints"] = [
            {"label": names[i // 3] if i // 3 < len(names) else str(i // 3 + 1), "x": points[i] / width, "y": points[i + 1] / height, "visible": points[i + 2] == 2}
            for i in range(0, len(points), 3) if points[i + 2] > 0
        ]  # fmt: skip
        if box is None and obj["keypoints"]:
            xs = [points[i] for i in range(0, len(points), 3) if points[i + 2] > 0]
            ys = [points[i + 1] for i in range(0, len(points), 3) if points[i + 2] > 0]
            box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    if box is not None:
        obj["bbox"] = _box(*box, width, height)
    return obj


_IMAGE_FIELDS = ("file_name", "coco_url", "width", "height", "image_labels")


def record_of(joined: dict, resolve: Callable[[str], str]) -> dict:
    """A joined object -> the canonical row: the image (its reference resolved), one object
    per annotation, the image-level labels labelbeam's COCO writer puts on the image entry, and
    the image's other fields (its id among them) in `extra`."""
    image = joined["image"]
    width, height = int(image["width"]), int(image["height"])
    by_id = {category["id"]: category for category in joined.get("categories") or []}
    objects = [_object(annotation, by_id[annotation["category_id"]], width, height) for annotation in joined["annotations"]]
    # every COCO annotation has a box (a person's keypoints come with theirs): the task is the
    # geometry's, and keypoints ride on their objects
    segmented = any(obj.get("polygon") or obj.get("mask_rle") is not None for obj in objects)
    task = "instance_segmentation" if segmented else "object_detection"
    labels = [
        {"name": label["name"], "score": label.get("score")}
        for label in image.get("image_labels") or [] if isinstance(label, dict) and isinstance(label.get("name"), str)
    ]  # fmt: skip
    extra = {key: value for key, value in image.items() if key not in _IMAGE_FIELDS}
    return {
        "image": {"uri": resolve(image.get("file_name") or image["coco_url"]), "width": width, "height": height, "format": None},
        "task": task,
        "origin": joined.get("origin") or GROUND_TRUTH,
        "labels": labels,
        "objects": objects,
        "extra": orjson.dumps({"coco_image": extra}).decode(),
    }
