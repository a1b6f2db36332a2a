"""One label job per image in an output: which Ground Truth label attributes of a record a
writer takes (docs/formats.md, Chained jobs).

A Ground Truth line may carry several label attributes. Some are different label types of one
image (Lookout for Vision's classification + mask, Rekognition's several classification
attributes) and are all written. Others are one job and its chained / adjustment jobs, each
holding the whole label set again: writing them all would give every box twice. The rule, per
kind of attribute:

- object detection: the last detection attribute of the line (a chained or adjustment job
  outputs every box again, and the last job of the chain is what Ground Truth users train on);
- classification / multi-label: every attribute, but one that a later attribute of the same
  kind adjusts (its metadata has `adjustment-status`) is left out;
- a mask and attributes of unknown types are kept as they are.

`--label_attribute NAME[,...]` chooses instead: in each kind, the attributes named that the
line holds (a kind holding none of them keeps the rule above). Labels of the same name and
objects of the same class and geometry that several chosen attributes hold are written once.
Records keep every job (records/); only what is written to manifests is chosen. The row a
writer takes carries the `annotation` (job name, human-annotated, creation date, confidence) of
its first kept job, read from that job's metadata as the reader reads the first job's: a writer
that writes the job's metadata and the column agree.
"""

from __future__ import annotations

from typing import Sequence

from transforms.errors import RecordError
from transforms.formats.sagemaker.parse import annotation_of
from transforms.schema import dumps_extra, loads_extra

DETECTION, CLASSIFICATION, MULTILABEL = "detection", "classification", "multilabel"
_LABEL_KINDS = (CLASSIFICATION, MULTILABEL)
ADJUSTMENT_STATUS = "adjustment-status"


def chosen_entries(layout: list[dict], chosen: Sequence[str] = ()) -> list[int]:
    """Positions of the layout entries (extra.sagemaker.attributes) a writer takes."""
    kinds = {entry.get("kind") for entry in layout}
    keep: set[int] = set()
    for kind in kinds:
        positions = [i for i, entry in enumerate(layout) if entry.get("kind") == kind]
        named = [i for i in positions if layout[i].get("name") in chosen]
        if named:
            keep.update(named)
        elif kind == DETECTION:
            keep.add(positions[-1])
        elif kind in _LABEL_KINDS:
            keep.update(_not_adjusted(layout, positions))
        else:
            keep.update(positions)
    return sorted(keep)


def _not_adjusted(layout: list[dict], positions: list[int]) -> list[int]:
    """Classification attributes that no later attribute of the kind adjusts."""
    kept = []
    for n, i in enumerate(positions):
        later = positions[n + 1 :]
        if not any(ADJUSTMENT_STATUS in (layout[j].get("metadata") or {}) for j in later):
            kept.append(i)
    return kept


def select_label_jobs(row: dict, chosen: Sequence[str] = ()) -> tuple[dict, list[int]]:
    """The row as a writer takes it (the chosen attributes' labels and objects, each once) and
    the positions in `row["objects"]` of the objects it keeps (all, when nothing is left out)."""
    objects = row.get("objects") or []
    extra_text = row.get("extra")
    if not extra_text or extra_text.count('"kind":') < 2:  # one attribute or none: as it is
        return row, list(range(len(objects)))
    extra = loads_extra(extra_text)
    sagemaker = extra.get("sagemaker") or {}
    layout = sagemaker.get("attributes") or []
    if len(layout) < 2:
        return row, list(range(len(objects)))
    keep = chosen_entries(layout, chosen)
    labels = row.get("labels") or []
    new_labels: list[dict] = []
    new_objects: list[int] = []
    label_names: dict[str, int] = {}  # -> the layout position of the job that has it first
    object_keys: dict[tuple, int] = {}
    new_layout = []
    for position in keep:
        entry = dict(layout[position])
        label_indexes = []
        for i in entry.get("labels") or []:
            name = labels[i].get("name") if i < len(labels) else None
            if i < len(labels) and label_names.get(name, position) == position:  # not in an earlier job
                label_names[name] = position
                label_indexes.append(len(new_labels))
                new_labels.append(labels[i])
        object_indexes = []
        for i in entry.get("objects") or []:
            key = _object_key(objects[i]) if i < len(objects) else None
            if key is not None and object_keys.get(key, position) == position:  # not in an earlier job
                object_keys[key] = position
                object_indexes.append(len(new_objects))
                new_objects.append(i)
        if (entry.get("labels") and not label_indexes) or (entry.get("objects") and not object_indexes):
            continue  # all it holds is written with an earlier job
        entry["labels"], entry["objects"] = label_indexes, object_indexes
        new_layout.append(entry)
    if len(new_layout) == len(layout) and len(new_labels) == len(labels) and new_objects == list(range(len(objects))):
        return row, new_objects
    selected = dict(row)
    if new_layout and new_layout[0].get("name") != layout[0].get("name"):
        selected["annotation"] = _annotation_of_job(row, new_layout[0], new_labels)
    selected["labels"] = new_labels
    selected["objects"] = [objects[i] for i in new_objects]
    selected["extra"] = dumps_extra({**extra, "sagemaker": {**sagemaker, "attributes": new_layout}})
    return selected, new_objects


def _annotation_of_job(row: dict, entry: dict, labels: list[dict]) -> dict | None:
    """The row's `annotation` as the kept job (a layout entry, its label indexes into `labels`)
    gives it. A classification job's confidence is its label's score (the reader moves it out of
    the metadata, into the label); a metadata value the reader never checked and cannot read (a
    confidence that is not a number) leaves the row's annotation as it is."""
    metadata = dict(entry.get("metadata") or {})
    if entry.get("kind") == CLASSIFICATION and entry.get("labels"):
        metadata["confidence"] = labels[entry["labels"][0]].get("score")
    try:
        kept = annotation_of(metadata, [])
    except RecordError:
        return row.get("annotation")
    return {**(row.get("annotation") or {}), **kept}


def _object_key(obj: dict) -> tuple:
    """What makes two objects of different jobs the same: class and geometry."""
    box = obj.get("bbox") or {}
    return (
        obj.get("label"),
        tuple(round(box.get(k) or 0.0, 9) for k in ("x_min", "y_min", "x_max", "y_max")) if box else None,
        tuple(tuple(round(v, 9) for v in ring) for ring in obj.get("polygon") or ()),
        obj.get("mask_rle"),
    )
