"""Canonical rows back to Ground Truth lines: the attribute layout a line was read with, or a
default one for records from other formats; class ids the same on every line of an output."""

from __future__ import annotations

from typing import Any, Iterator

import orjson

from transforms import errors
from transforms.dates import format_timestamp
from transforms.formats.base import WriteContext
from transforms.formats.sagemaker import brush_masks
from transforms.formats.sagemaker.parse import (
    CLASSIFICATION,
    DETECTION,
    KIND_TO_TYPE,
    LOOKOUT_CLASSES,
    MASK,
    METADATA_SUFFIX,
    MULTILABEL,
    SOURCE_REF,
)
from transforms.schema import loads_extra


def pixels(value: float) -> float | int:
    """Pixel coordinates as Ground Truth writes them: integers when they are integers."""
    rounded = round(value)  # an int
    return rounded if abs(value - rounded) < 1e-6 else round(value, 6)


def json_float(value: float | None) -> float | None:
    """float32 columns written back with the digits they were read with."""
    return None if value is None else float(f"{value:.7g}")


class LineWriter:
    """Builds one Ground Truth line from one canonical row."""

    def __init__(self, row: dict, ctx: WriteContext, classes: list[str], ids: "OutputClassIds", options: Any = None):
        self.row = row
        self.ctx = ctx
        self.classes = classes
        self.ids = ids
        self.options = options
        # brush objects painted into a mask PNG instead of written as boxes (mask_files)
        self.brushes = self._brushes_to_paint()

    def _brushes_to_paint(self) -> list[int]:
        """The brush objects this line paints into a mask file: with `mask_files`, on a record
        that has no semantic mask of its own (one mask attribute per line)."""
        if self.options is None or not self.options.mask_files or (self.row.get("mask") or {}).get("uri"):
            return []
        if loads_extra(self.row.get("extra")).get("sagemaker", {}).get("attributes"):
            return []  # a Ground Truth line written back with its own attributes
        return brush_masks.brush_indexes(self.row)

    def line(self) -> dict | None:
        row = self.row
        image = row.get("image") or {}
        if not image.get("uri"):
            self.ctx.reject(row, errors.OUTPUT_UNREPRESENTABLE, "the record has no image uri")
            return None
        out: dict[str, Any] = {SOURCE_REF: image["uri"]}
        extra = loads_extra(row.get("extra")).get("sagemaker", {})
        layout = extra.get("attributes") or self._default_layout()
        if layout is None:
            return None
        objects_before, written_before = len(self.ctx.rejected_objects), self.ctx.objects_written
        for entry in layout:
            value, metadata = self._attribute(entry)
            if value is _SKIPPED:  # nothing of it could be written: the objects were refused alone
                continue
            if value is _REJECTED:  # the row is refused whole: not also object by object
                del self.ctx.rejected_objects[objects_before:]
                self.ctx.objects_written = written_before
                return None
            out[entry["name"]] = value
            out[entry["name"] + METADATA_SUFFIX] = metadata
        out.update(extra.get("fields", {}))
        return out

    def _default_layout(self) -> list[dict] | None:
        """Attributes for a record that did not come from Ground Truth."""
        row, layout = self.row, []
        labels, objects = row.get("labels") or [], row.get("objects") or []
        if labels:
            if row.get("task") == "multilabel_classification" or len(labels) > 1:
                layout.append({"name": "labels", "kind": MULTILABEL, "labels": list(range(len(labels)))})
            else:
                layout.append({"name": "label", "kind": CLASSIFICATION, "labels": [0]})
        boxes = [i for i in range(len(objects)) if i not in set(self.brushes)]
        if boxes:
            layout.append({"name": "bounding-box", "kind": DETECTION, "objects": boxes})
        if (row.get("mask") or {}).get("uri"):
            layout.append({"name": "label-ref", "kind": MASK})
        elif self.brushes:  # last: its PNG is written once every other attribute of the line is
            layout.append({"name": "label-ref", "kind": BRUSH_MASK})
        annotation = row.get("annotation") or {}
        for entry in layout:
            entry["metadata"] = _default_metadata(MASK if entry["kind"] == BRUSH_MASK else entry["kind"], annotation)
        return layout

    def _attribute(self, entry: dict) -> tuple[Any, dict]:
        row, kind = self.row, entry["kind"]
        metadata = dict(entry.get("metadata") or {})
        labels = [row["labels"][i] for i in entry.get("labels", []) if i < len(row.get("labels") or [])]
        if kind == CLASSIFICATION:
            label = labels[0]
            metadata["class-name"] = label["name"]
            if label.get("score") is not None:
                metadata["confidence"] = json_float(label["score"])
            if "value" in entry:
                return entry["value"], metadata
            value = self._class_id(label["name"], {})
            if value is None:
                return _REJECTED, {}
            return value, metadata
        if kind == MULTILABEL:
            ids = entry.get("value")
            class_map = dict(metadata.get("class-map") or {})
            if not isinstance(ids, list) or len(ids) != len(labels):
                ids = []
                for label in labels:  # each id is taken with the previous labels in the map
                    class_id = self._class_id(label["name"], class_map)
                    if class_id is None:
                        return _REJECTED, {}
                    class_map[str(class_id)] = label["name"]
                    ids.append(class_id)
            for class_id, label in zip(ids, labels):
                class_map[str(class_id)] = label["name"]
            metadata["class-map"] = class_map
            scores = {str(i): json_float(label["score"]) for i, label in zip(ids, labels) if label.get("score") is not None}
            if scores:
                metadata["confidence-map"] = scores
            return ids, metadata
        if kind == DETECTION:
            return self._detection(entry, metadata)
        if kind == BRUSH_MASK:
            return self._brush_mask(metadata)
        if kind == MASK:
            mask = row.get("mask") or {}
            colors = mask.get("color_map") or []
            metadata["internal-color-map"] = {
                str(c["index"]): _without_none(
                    {"class-name": c["class_name"], "hex-color": c["hex_color"], "confidence": json_float(c.get("confidence"))}
                )
                for c in colors
            }
            return mask.get("uri"), metadata
        return entry.get("value"), metadata

    def _detection(self, entry: dict, metadata: dict):
        row = self.row
        value = dict(entry.get("value") or {})
        image = row.get("image") or {}
        sizes = value.get("image_size")
        if sizes:
            width, height = sizes[0]["width"], sizes[0]["height"]
        else:
            width, height = image.get("width"), image.get("height")
            if not width or not height:
                self.ctx.reject(
                    row, errors.OUTPUT_UNREPRESENTABLE,
                    "Ground Truth boxes are in pixels and the image size is unknown (try --probe_images)",
                )
                return _REJECTED, {}
            value["image_size"] = [{"width": width, "height": height, "depth": 3}]
        class_map = dict(metadata.get("class-map") or {})
        annotations, confidences = [], []
        for index in entry.get("objects", []):
            obj = row["objects"][index]
            if obj.get("bbox") is None:  # written without it: a detection may hold no box
                self.ctx.reject_object(row, index, errors.OBJECT_UNREPRESENTABLE, "a region without a box (e.g. a keypoint) has no Ground Truth form")
                continue
            if obj.get("label") is None:
                self.ctx.reject_object(row, index, errors.OBJECT_UNREPRESENTABLE, "a box without a class has no Ground Truth form")
                continue
            class_id = _source_class_id(obj.get("attributes"))
            if class_id is None:
                class_id = self._class_id(obj["label"], class_map, index)
                if class_id is None:
                    continue
            class_map[str(class_id)] = obj["label"]
            box = obj["bbox"]
            annotations.append(
                {
                    "class_id": class_id,
                    "left": pixels(box["x_min"] * width),
                    "top": pixels(box["y_min"] * height),
                    "width": pixels((box["x_max"] - box["x_min"]) * width),
                    "height": pixels((box["y_max"] - box["y_min"]) * height),
                }
            )
            confidences.append({"confidence": json_float(obj["score"])} if obj.get("score") is not None else {})
        value["annotations"] = annotations
        self.ctx.objects_written += len(annotations)
        metadata["class-map"] = class_map
        if any(confidences):
            metadata["objects"] = confidences
        return value, metadata

    def _brush_mask(self, metadata: dict):
        """The brushes painted into one palette PNG written beside the manifests: its URL as
        the attribute's value, its classes in `internal-color-map`. Brushes that cannot be
        painted are refused alone (OBJECT_UNREPRESENTABLE)."""
        row, ctx = self.row, self.ctx
        image = row.get("image") or {}
        width, height = image.get("width"), image.get("height")

        def refuse_all(message: str):
            for index in self.brushes:
                ctx.reject_object(row, index, errors.OBJECT_UNREPRESENTABLE, message)
            return _SKIPPED, {}

        if not width or not height:
            return refuse_all("a brush mask needs the image size to be painted (try --probe_images)")
        if ctx.files is None:
            return refuse_all("no place to write mask files beside the manifests")
        names = list(self.classes) or list(self.ctx.classes or []) or sorted({row["objects"][i].get("label") for i in self.brushes} - {None})
        class_index = {name: position + 1 for position, name in enumerate(names) if position < brush_masks.MAX_CLASSES}
        pixels, refused = brush_masks.paint(row, self.brushes, class_index, width, height, self.options.brush_alpha_threshold)
        for index, message in refused:
            ctx.reject_object(row, index, errors.OBJECT_UNREPRESENTABLE, message)
        if len(refused) == len(self.brushes):
            return _SKIPPED, {}
        painted = sorted({class_index[row["objects"][i]["label"]] for i in self.brushes if i not in {r[0] for r in refused}})
        url = ctx.files.write(brush_masks.mask_name(row), brush_masks.png_bytes(pixels, painted))
        by_index = {index: name for name, index in class_index.items()}
        metadata["internal-color-map"] = {"0": dict(brush_masks.BACKGROUND_ENTRY)} | {
            str(index): {"class-name": by_index[index], "hex-color": brush_masks.class_colour(index)} for index in painted
        }
        return url, metadata

    def _class_id(self, name: str, class_map: dict[str, str], object_index: int | None = None) -> int | None:
        """The id of a class the source gave no id for, the same on every line of the output.

        With the format option `sagemaker_classes` (a comma-separated list) ids are positions in
        that list. Else, with the output's class names (the write stage's first pass): Lookout
        for Vision's 0 / 1 when they are only `normal` / `anomaly`, else positions in the sorted
        names. Without either (a writer called alone): the line's class-map, else the next free id.
        """
        classes = self.classes
        if classes:
            if name not in classes:
                if object_index is None:
                    self.ctx.reject(self.row, errors.OUTPUT_UNREPRESENTABLE, f"class {name!r} is not in {CLASSES_OPTION}")
                else:  # one box of the line: the others are written
                    self.ctx.reject_object(self.row, object_index, errors.OBJECT_UNREPRESENTABLE, f"class {name!r} is not in {CLASSES_OPTION}")
                return None
            return classes.index(name)
        known = self.ids.of(name)
        if known is not None:
            return known
        if name.lower() in LOOKOUT_CLASSES and not class_map:
            return LOOKOUT_CLASSES[name.lower()]
        for key, known in class_map.items():
            if known == name and key.isdecimal() and key.isascii():
                return int(key)
        return max((int(key) for key in class_map if key.isdecimal() and key.isascii()), default=-1) + 1


CLASSES_OPTION = "formats.sagemaker.classes"


class OutputClassIds:
    """Ids of the output's class names (the write stage's first pass), worked out once per
    batch instead of once per box: when the names include `normal` / `anomaly` (any case),
    Lookout for Vision's 0 / 1 for them and the next ids for the others in sorted order (a
    Lookout dataset's mask classes are among the names, and must not move anomaly off 1); else
    positions in the sorted names."""

    def __init__(self, names: list[str] | None):
        self.ids: dict[str, int] | None = None
        if names is not None:
            lookout = any(n.lower() in LOOKOUT_CLASSES for n in names)
            self.ids = {}
            others = (n for n in names if not (lookout and n.lower() in LOOKOUT_CLASSES))
            if lookout:
                for name in names:
                    if name.lower() in LOOKOUT_CLASSES:
                        self.ids.setdefault(name, LOOKOUT_CLASSES[name.lower()])
            first = len(LOOKOUT_CLASSES) if lookout else 0
            for position, name in enumerate(others, start=first):
                self.ids.setdefault(name, position)

    def of(self, name: str) -> int | None:
        return None if self.ids is None else self.ids.get(name)


def _source_class_id(attributes: str | None):
    """The `class_id` an object's attributes carry from a Ground Truth source, else None.

    Attributes are written by orjson, which spells every key plainly: without the text
    `"class_id"` there is nothing to parse (other sources keep whole raw results there, and
    parsing them for each box cost a third of writing a manifest)."""
    if not attributes or '"class_id"' not in attributes:
        return None
    parsed = orjson.loads(attributes)
    return parsed.get("class_id") if isinstance(parsed, dict) else None


_REJECTED = object()
_SKIPPED = object()  # an attribute with nothing left to write: left out of the line
BRUSH_MASK = "brush_mask"  # brush regions painted into a mask PNG (written as MASK)


def _without_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _default_metadata(kind: str, annotation: dict) -> dict:
    metadata: dict[str, Any] = {}
    if annotation.get("job_name"):
        metadata["job-name"] = annotation["job_name"]
    if annotation.get("human_annotated") is not None:
        metadata["human-annotated"] = "yes" if annotation["human_annotated"] else "no"
    if annotation.get("created_at") is not None:
        metadata["creation-date"] = format_timestamp(annotation["created_at"])
    metadata["type"] = KIND_TO_TYPE[kind]
    return metadata



def write_lines(rows: list[dict], ctx: WriteContext, options: Any = None) -> Iterator[bytes]:
    """Rows -> encoded Ground Truth lines; `options.classes` pins class ids, `options.mask_files`
    paints brushes into mask PNGs (ctx.files)."""
    return (line for line in lines_of_rows(rows, ctx, options) if line is not None)


def lines_of_rows(rows: list[dict], ctx: WriteContext, options: Any = None) -> Iterator[bytes | None]:
    """The encoded line of each row, None for a row refused whole (write_lines, row by row)."""
    classes = list(getattr(options, "classes", None) or []) if not isinstance(options, list) else options
    ids = OutputClassIds(ctx.classes)
    for row in rows:
        line = LineWriter(row, ctx, classes, ids, None if isinstance(options, list) else options).line()
        yield None if line is None else orjson.dumps(line)
