"""YOLO label folders (write only): the Ultralytics dataset layout for detect, segment and OBB,
and (with --copy_images) the folder-per-class layout of classify.

What it writes under manifests/yolo/ (docs/formats.md "yolo"):

    data.yaml                  path, task, each split's image folder (images/<split>, beside
                               labels/<split>: how YOLO readers pair an image with its labels),
                               names {id: name}
    <split>.txt                the split's images, one reference per line (Ultralytics reads a
                               txt list of image paths as a split); with --copy_images the
                               copies, `./images/<split>/<name>` (transforms/image_copies.py)
    images/<split>/...         with --copy_images only: the images, each named so that its
                               label file (named after the image's stem) pairs with it
    predictions/<split>/...    predictions: label lines with the confidence last
    labels/<split>/<stem>.txt  one label file per record, named after its image's stem:
                               detect  `class cx cy w h`
                               segment `class x1 y1 x2 y2 ...` (one polygon ring)
                               obb     `class x1 y1 x2 y2 x3 y3 x4 y4` (the four corners)
                               every coordinate normalized to [0, 1]

Written as the COCO writer is, in two steps, because two things need the whole output: class
ids equal in every split (the sorted class names of the whole output, or the pinned
`yolo.names`), and label file names unique in a split (two images of one stem). Each bundle
streams its rows into one part per split (`YoloPart`: one JSON line per record, its label
lines with class *names*); the finalize step (`assemble`) numbers the classes from the names
every part carries and writes one label file per record. A stem met more than once in a split
becomes `<stem>__<10 hex of blake2b(uri, record id)>` for every record that has it: the same
name on every run, whatever the order the parts arrive in.

In detect, segment and obb a record holding image-level labels and no object is refused whole
(YOLO_IMAGE_LABELS_ONLY): an empty label file would say "nothing here", a background image.

classify (`yolo.task=classify`, --copy_images required, checked at launch): Ultralytics' image
classification layout, `<root>/<split>/<class>/<image>`, with images/ as its root (the copies'
folder: `yolo classify train data=manifests/yolo/images`). The class folder is the record's one
image-level label (partitions.folder_value: one safe path segment), the split folder its split
with validation / valid spelled `val` (Ultralytics reads train, val and test); the copy is named
as every copy is (transforms/image_copies.py). No label file is written: `<split>.txt` lists the
split's copies and data.yaml names the classes. A record whose image cannot be put in one class
folder is refused whole: no image-level label (YOLO_CLASSIFY_NO_LABEL, objects only:
YOLO_CLASSIFY_OBJECTS_ONLY), several (YOLO_CLASSIFY_SEVERAL_LABELS: multi-label has no
classify form), a model prediction (YOLO_CLASSIFY_PREDICTION: its folder would mix with the
ground truth's). The objects and mask of a record written are refused alone.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from typing import Any, Callable, Iterator

import orjson

from transforms import errors
from transforms.file_names import image_stem
from transforms.formats._mask_pixels import has_mask, refuse_mask
from transforms.formats.base import OutputFormat, WriteContext, register
from transforms.partitions import folder_value, partition_values
from transforms.settings import setting

CLASSIFY = "classify"
LABEL_TASKS = ("detect", "segment", "obb")  # the tasks that write label files
TASKS = (*LABEL_TASKS, CLASSIFY)
DATA_YAML = "data.yaml"
LABELS_FOLDER = "labels"
PREDICTIONS_FOLDER = "predictions"  # predictions/<split>/<stem>.txt: label lines + confidence
PREDICTION = "prediction"  # the origin of model predictions
PART_CLASSES = "classes"  # a part's summary: the class names its lines use
PART_OBJECTS = "objects"  # the record objects its lines hold


def _class_list(value) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(item).strip() for item in items if str(item).strip()]


@dataclasses.dataclass(frozen=True)
class YoloOptions:
    task: str = setting("detect", help="what the label files hold: detect (boxes), segment (polygon rings) or obb (four corners of oriented boxes); classify: no label files, each image copied into images/<split>/<class>/ (needs --copy_images)", choices=TASKS)
    names: list[str] = setting([], help="class names in id order (id = position); default: the output's class names, sorted", flag=None, parse=_class_list)


def number(value: float) -> str:
    """A normalized coordinate as text: 10 significant digits (exact well below 1e-6)."""
    return format(min(max(float(value), 0.0), 1.0), ".10g")


def _corners(box: dict) -> list[float]:
    """An axis-aligned box -> its four corners, clockwise from the top left."""
    x0, y0, x1, y1 = box["x_min"], box["y_min"], box["x_max"], box["y_max"]
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _rotated(obj: dict) -> bool:
    ring = (obj.get("polygon") or [None])[0]
    return bool(obj.get("rotation")) and ring is not None and len(obj["polygon"]) == 1 and len(ring) == 8


class _Refused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def object_coordinates(obj: dict, task: str) -> list[float]:
    """The numbers after the class of one object's label line in `task`; _Refused when the
    task has no form for it."""
    if obj.get("keypoints") and not obj.get("bbox") and not obj.get("polygon"):
        raise _Refused(errors.OBJECT_UNREPRESENTABLE, "a keypoint: YOLO pose files are not written")
    box, rings = obj.get("bbox"), obj.get("polygon") or []
    if box is None and not rings:
        what = "a brush mask" if obj.get("mask_rle") is not None else "no box or polygon"
        raise _Refused(errors.OBJECT_UNREPRESENTABLE, f"{what}: YOLO label lines hold boxes and polygons")
    if task == "detect":
        if box is None:
            xs = [v for ring in rings for v in ring[0::2]]
            ys = [v for ring in rings for v in ring[1::2]]
            box = {"x_min": min(xs), "y_min": min(ys), "x_max": max(xs), "y_max": max(ys)}
        x0, y0, x1, y1 = (min(max(box[k], 0.0), 1.0) for k in ("x_min", "y_min", "x_max", "y_max"))
        return [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
    if task == "obb":
        if _rotated(obj):
            return list(rings[0])
        if rings:
            raise _Refused(errors.YOLO_TASK_MISMATCH, "a polygon in an obb file, which holds four-corner boxes")
        return _corners(box)
    # segment
    if len(rings) > 1:
        raise _Refused(errors.YOLO_TASK_MISMATCH, f"a polygon of {len(rings)} rings: a segment line holds one")
    if rings:
        if len(rings[0]) < 6:
            raise _Refused(errors.YOLO_TASK_MISMATCH, "a polygon of fewer than three points")
        return list(rings[0])
    return _corners(box)




def unique_stem(stem: str, uri: str, record_id: str) -> str:
    """A stem given twice in a split -> `<stem>__<10 hex>`, from the image and the record."""
    digest = hashlib.blake2b(f"{uri}\x00{record_id}".encode(), digest_size=5).hexdigest()
    return f"{stem}__{digest}"


def classify_split(split: Any) -> str:
    """A split's folder in the classify layout: validation / valid -> `val`, as Ultralytics reads it."""
    return folder_value(YAML_KEYS.get(split, split) if isinstance(split, str) else split)


def image_classes(row: dict) -> list[str]:
    """The record's image-level class names, each once, in order."""
    return list(dict.fromkeys(label["name"] for label in row.get("labels") or () if label and label.get("name")))


def classify_folder(row: dict) -> str | None:
    """--copy_images with classify: the folder under images/ of a row's copy, `<split>/<class>`,
    or None for a row classify refuses (no image copied for it)."""
    classes = image_classes(row)
    if len(classes) != 1 or row.get("origin") == PREDICTION:
        return None
    return f"{classify_split(row.get('split'))}/{folder_value(classes[0])}"


class YoloPart:
    """One bundle's rows of one split: one JSON line per record, {"u": image reference,
    "r": record id, "l": [[class name, coordinates...], ...]}. `assemble` numbers the classes."""

    def __init__(self, handle, options: YoloOptions, summary: dict | None = None):
        self.handle = handle
        self.options = options
        self.summary = summary if summary is not None else {}
        self.names: set[str] = set()
        self.pinned = set(options.names) if options.names else None
        self.count = 0
        self.annotations_written = 0  # label lines
        self.objects_written = 0

    def write(self, rows: list[dict], ctx: WriteContext) -> None:
        lines = []
        for row in rows:
            uri = (row.get("image") or {}).get("uri")
            if not uri or any(c in uri for c in "\n\r"):
                ctx.reject(row, errors.OUTPUT_UNREPRESENTABLE, "the record has no image uri" if not uri else "a line break in the image reference: the split's image list holds one a line")
                continue
            objects = row.get("objects") or []
            if self.options.task == CLASSIFY:
                line = self._classified(row, uri, ctx)
                if line is not None:
                    lines.append(line)
                continue
            if row.get("labels") and not objects and not has_mask(row):
                ctx.reject(row, errors.YOLO_IMAGE_LABELS_ONLY, "image-level labels only: a YOLO label file holds objects, and an empty one says the image has none")
                continue
            labels = []
            for index, obj in enumerate(objects):
                name = obj.get("label")
                try:
                    if not name:
                        raise _Refused(errors.OBJECT_UNREPRESENTABLE, "an object without a class")
                    if self.pinned is not None and name not in self.pinned:
                        raise _Refused(errors.OBJECT_UNREPRESENTABLE, f"class {name!r} is not in formats.yolo.names")
                    coordinates = object_coordinates(obj, self.options.task)
                except _Refused as why:
                    ctx.reject_object(row, index, why.code, str(why))
                    continue
                self.names.add(name)
                score = obj.get("score")
                labels.append([name, *coordinates] + ([float(f"{score:.7g}")] if score is not None and row.get("origin") == PREDICTION else []))
            if has_mask(row):
                refuse_mask(ctx, row, "a semantic mask PNG: YOLO label lines hold objects")
            lines.append(orjson.dumps({"u": uri, "r": row.get("record_id") or "", "l": labels}) + b"\n")
            self.annotations_written += len(labels)
            self.objects_written += len(labels)
            self.count += 1
        self.handle.write(b"".join(lines))

    def _classified(self, row: dict, uri: str, ctx: WriteContext) -> bytes | None:
        """classify: the record's line {"u", "r", "c": its class}, or None (refused whole)."""
        classes = image_classes(row)
        objects = row.get("objects") or []
        if row.get("origin") == PREDICTION:
            ctx.reject(row, errors.YOLO_CLASSIFY_PREDICTION, "a model prediction: a classify folder holds ground truth")
            return None
        if not classes:
            code = errors.YOLO_CLASSIFY_OBJECTS_ONLY if objects or has_mask(row) else errors.YOLO_CLASSIFY_NO_LABEL
            ctx.reject(row, code, "objects and no image-level label: a classify image goes in the folder of its one class" if objects or has_mask(row) else "no image-level label: a classify image goes in the folder of its one class")
            return None
        if len(classes) > 1:
            ctx.reject(row, errors.YOLO_CLASSIFY_SEVERAL_LABELS, f"{len(classes)} image-level labels ({', '.join(classes[:5])}): a classify image is in one class folder")
            return None
        if self.pinned is not None and classes[0] not in self.pinned:
            ctx.reject(row, errors.OUTPUT_UNREPRESENTABLE, f"class {classes[0]!r} is not in formats.yolo.names")
            return None
        for index in range(len(objects)):
            ctx.reject_object(row, index, errors.OBJECT_UNREPRESENTABLE, "an object: a classify folder holds images by their image-level class")
        if has_mask(row):
            refuse_mask(ctx, row, "a semantic mask PNG: a classify folder holds images by their image-level class")
        self.names.add(classes[0])
        self.count += 1  # no object written: its class is the image's folder
        return orjson.dumps({"u": uri, "r": row.get("record_id") or "", "c": classes[0]}) + b"\n"

    def close(self) -> dict:
        self.summary[PART_CLASSES] = sorted(self.names)
        self.summary[PART_OBJECTS] = self.objects_written
        return self.summary


def output_names(summaries: list[dict], options: YoloOptions) -> list[str]:
    """Class names in id order: the pinned list, else the sorted names of every part."""
    return list(options.names) or sorted({name for s in summaries for name in s.get(PART_CLASSES, ())})


def split_of(partition: str) -> str:
    values = partition_values(partition)
    return folder_value(values.get("split")) if "split" in values else "all"


def is_prediction(partition: str) -> bool:
    return partition_values(partition).get("origin") == PREDICTION


def list_name(partition: str) -> str:
    """A partition's image list: `<split>.txt`, or `predictions_<split>.txt` for predictions."""
    return f"{PREDICTIONS_FOLDER + '_' if is_prediction(partition) else ''}{split_of(partition)}.txt"


def _records(opener: Callable[[], Any]) -> Iterator[dict]:
    with opener() as handle:
        for line in handle:
            if line.strip():
                yield orjson.loads(line)


# the data.yaml keys Ultralytics trains and validates on, by split name
YAML_KEYS = {"validation": "val", "valid": "val"}


def classify_yaml(splits: list[str], names: list[str]) -> bytes:
    """classify: the dataset's root (images/, what `yolo classify train data=` is given), its
    split folders and class names (Ultralytics reads the classes from the folders: this file
    says what is there)."""
    lines = ["# written by labelbeam: Ultralytics YOLO classification dataset (data=images)", "path: images", f"task: {CLASSIFY}"]
    lines += [f"{split}: {split}" for split in splits]
    lines.append("names:")
    lines += [f"  {i}: {orjson.dumps(name).decode()}" for i, name in enumerate(names)]
    return ("\n".join(lines) + "\n").encode()


def data_yaml(splits: list[str], names: list[str], task: str) -> bytes:
    """Ultralytics' dataset file: `path` (this folder), each split's image folder (beside its
    labels folder: `images/<split>` <-> `labels/<split>`, how Ultralytics and panlabel pair an
    image with its label file), the names in id order."""
    lines = ["# written by labelbeam: Ultralytics YOLO dataset", "path: .", f"task: {task}"]
    lines += [f"{YAML_KEYS.get(split, split)}: images/{split}" for split in splits]
    lines.append("names:")
    lines += [f"  {i}: {orjson.dumps(name).decode()}" for i, name in enumerate(names)]
    return ("\n".join(lines) + "\n").encode()


def assemble(documents: list[tuple[str, list[tuple[Callable[[], Any], dict]]]], options: YoloOptions, open_output: Callable[..., Any]) -> None:
    """Every split's parts -> its label files and image list, and data.yaml. Reads each part
    twice (the stems it holds, then its records); holds one count per stem of a split."""
    names = output_names([summary for _, parts in documents for _, summary in parts], options)
    if options.task == CLASSIFY:
        return assemble_classify(documents, names, open_output)
    ids = {name: i for i, name in enumerate(names)}
    splits = []
    for partition, parts in documents:
        split = split_of(partition)
        folder = PREDICTIONS_FOLDER if is_prediction(partition) else LABELS_FOLDER
        if folder == LABELS_FOLDER:
            splits.append(split)
        stems = collections.Counter(image_stem(record["u"]) for opener, _ in parts for record in _records(opener))
        images = []
        for opener, _ in parts:
            for record in _records(opener):
                stem = image_stem(record["u"])
                if stems[stem] > 1:
                    stem = unique_stem(stem, record["u"], record["r"])
                text = "".join(f"{ids[label[0]]} {' '.join(number(v) for v in label[1:])}\n" for label in record["l"])
                with open_output(partition, f"{folder}/{split}/{stem}.txt") as out:
                    out.write(text.encode())
                images.append(record["u"])
        with open_output(partition, list_name(partition)) as out:
            out.write("".join(f"{uri}\n" for uri in images).encode())
    with open_output(None, DATA_YAML) as out:
        out.write(data_yaml(sorted(set(splits)), names, options.task))


def assemble_classify(documents, names: list[str], open_output: Callable[..., Any]) -> None:
    """classify: each split's list of its copies (one line per record) and data.yaml; the
    images are already in their class folders (published with the copies)."""
    splits = set()
    for partition, parts in documents:
        split = classify_split(partition_values(partition).get("split")) if "split" in partition_values(partition) else "all"
        splits.add(split)
        with open_output(partition, f"{split}.txt") as out:
            out.write("".join(f"{record['u']}\n" for opener, _ in parts for record in _records(opener)).encode())
    with open_output(None, DATA_YAML) as out:
        out.write(classify_yaml(sorted(splits), names))


@register
class YoloFormat(OutputFormat):
    """Ultralytics YOLO label folders (output only)."""

    name = "yolo"
    extension = ".txt"
    file_layout = "folder"
    Options = YoloOptions
    copied_image_reference = "output"  # ./images/<split>/<name> in the split's list (--copy_images)


    def copy_folders(self, options: Any):
        return classify_folder if self.options(options).task == CLASSIFY else None

    def needs_class_names(self, options: Any) -> bool:
        return False  # class ids are given at assembly, from the names the parts carry

    def manifest_partitions(self, partition_by):
        return ("split", "origin")  # a YOLO dataset's folders are its splits; predictions apart

    def write(self, rows: list[dict], ctx: WriteContext) -> Iterator[bytes]:
        raise NotImplementedError("yolo writes label folders: see open_document")

    def open_document(self, handle, options: YoloOptions, classes: list[str] | None = None, summary: dict | None = None) -> YoloPart:
        return YoloPart(handle, self.options(options), summary)

    def document_name(self, partition: str) -> str:
        return list_name(partition)

    def assemble_documents(self, documents, options: YoloOptions, open_output: Callable[..., Any]) -> None:
        assemble(documents, self.options(options), open_output)

    def file_counts(self, name: str, lines: int) -> tuple[int, int]:
        """(records, objects) one published file of `lines` lines holds: each line of a split's
        image list is one record (detect, segment, obb: the record of one label file; classify:
        of one copy), each line of a label file an object (`assemble` writes no blank line);
        data.yaml holds none."""
        if name.split("/", 1)[0] in (LABELS_FOLDER, PREDICTIONS_FOLDER):
            return 0, lines
        if name.endswith(".txt") and "/" not in name:
            return lines, 0
        return 0, 0
