"""Semantic masks and brush RLE in Azure AutoML lines: AutoML has no mask form, so a record
with a mask (Lookout for Vision, Ground Truth semantic segmentation) takes the task the
`mask_task` option chooses, and its mask is written as polygons traced from each class."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from transforms.checks import contours
from transforms.checks.masks import MaskRejected
from transforms.checks.rle import decode_rle
from transforms.formats._mask_pixels import reader_of, refuse_mask
from transforms.formats.base import WriteContext

SEMANTIC = "semantic_segmentation"
MASK_TASKS = ("auto", "classification", "instance_segmentation")
BRUSH_ALPHA_THRESHOLD = 128  # brush pixels at this alpha or more are the mask (as in the file checks)


def mask_task_of(row: dict, mode: str) -> str:
    """The task a record with a mask is written as: instance segmentation (its mask traced),
    or classification by its image-level labels; `auto` picks the labels when it has some."""
    labels = row.get("labels") or []
    if mode == "instance_segmentation" or (mode == "auto" and not labels):
        return "instance_segmentation"
    return "multilabel_classification" if len(labels) > 1 else "classification"


def with_mask_task(batch: pa.RecordBatch, mode: str) -> pa.RecordBatch:
    """The batch with task semantic_segmentation replaced as `mode` says (see mask_task_of)."""
    index = batch.schema.get_field_index("task")
    task = batch.column(index)
    plain = task.cast(pa.string()) if pa.types.is_dictionary(task.type) else task
    semantic = pc.fill_null(pc.equal(plain, SEMANTIC), False)
    if not pc.any(semantic).as_py():
        return batch
    count = pc.fill_null(pc.list_value_length(batch.column("labels")), 0)
    classes = pc.if_else(pc.greater(count, 1), "multilabel_classification", "classification")
    if mode == "instance_segmentation":
        chosen = pc.if_else(semantic, "instance_segmentation", plain)
    elif mode == "classification":
        chosen = pc.if_else(semantic, classes, plain)
    else:
        chosen = pc.if_else(semantic, pc.if_else(pc.greater(count, 0), classes, "instance_segmentation"), plain)
    if pa.types.is_dictionary(task.type):
        chosen = chosen.dictionary_encode().cast(task.type)
    return batch.set_column(index, batch.schema.field(index), chosen)


def mask_polygons(row: dict, ctx: WriteContext, tolerance: float) -> tuple[list[dict], int, int] | None:
    """A record's mask PNG -> one `{"label", "polygon"}` entry per class and the mask's size;
    None, the mask refused alone (refuse_mask), when the line's task has no form for it or
    the PNG is rejected."""
    task = row.get("task")
    if task != "instance_segmentation" or row.get("origin") == "prediction":
        refuse_mask(ctx, row, f"Azure AutoML {task} lines have no form for a mask (formats.azure_automl.mask_task=instance_segmentation writes its polygons)")
        return None
    try:
        decoded = reader_of(ctx).read(row)
    except MaskRejected as exc:
        refuse_mask(ctx, row, exc.finding.message)
        return None
    entries = [
        {"label": name, "polygon": contours.trace(foreground, tolerance)}
        for name, foreground in sorted(decoded.masks.items())
    ]
    return entries, decoded.width, decoded.height


def traced_brush(mask_rle: bytes, width: int | None, height: int | None, tolerance: float) -> list[list[float]] | None:
    """A brush mask (Label Studio's RLE) -> polygons traced from its pixels at alpha >= 128
    (the file checks' default); None when it cannot be decoded against the image size."""
    if not (width and height):
        return None
    try:
        foreground = decode_rle(mask_rle, width, height)[:, :, 3] >= BRUSH_ALPHA_THRESHOLD
    except ValueError:
        return None
    return contours.trace(foreground, tolerance) if foreground.any() else None
