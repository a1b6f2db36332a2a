"""The AzureAutoMLFormat plugin: detection, its options, and where parse and write live."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import pyarrow as pa

from transforms.checks import contours
from transforms.formats.azure_automl.masks import MASK_TASKS, with_mask_task
from transforms.formats.azure_automl.parse import (
    DEFAULT_BBOX_TOLERANCE,
    NAME,
    is_inference_line,
    is_training_line,
    parse_line,
)
from transforms.formats.azure_automl.write import DatastoreMap, objects_in, write_lines
from transforms.formats.base import ManifestFormat, ParseContext, Parsed, WriteContext, register
from transforms.settings import parse_pairs, setting

DATASTORE_MAP = "formats.azure_automl.datastore_map"


def _datastore_pairs(value: Any) -> dict[str, str]:
    """FROM=TO text(s), (FROM, TO) pairs or a mapping -> a mapping, checked at launch."""
    if isinstance(value, (list, tuple)) and all(isinstance(pair, (list, tuple)) for pair in value):
        DatastoreMap(value)
        return dict(value)
    pairs = value if isinstance(value, dict) else parse_pairs(value, "FROM=TO")
    DatastoreMap(pairs)
    return pairs


@dataclasses.dataclass(frozen=True)
class AzureAutoMLOptions:
    bbox_tolerance: float = setting(DEFAULT_BBOX_TOLERANCE, help="how far outside [0, 1] a box or polygon coordinate may lie without BBOX_OUT_OF_RANGE / POLYGON_INVALID", minimum=0)
    prediction_task: str | None = setting(None, help="task of inference lines with probs/labels (guessed from the scores when absent)", choices=("classification", "multilabel_classification"))
    datastore_map: dict[str, str] = setting({}, help="FROM=TO image URL prefix rewrites in written lines (longest FROM wins, whole path segments)", parse=_datastore_pairs)
    mask_task: str = setting("auto", help="how a record with a semantic mask (Lookout for Vision, Ground Truth) is written: classification (its image-level label; the mask refused), instance_segmentation (polygons traced from each class of the mask), auto (classification when it has an image-level label, else instance_segmentation)", choices=MASK_TASKS)
    polygon_tolerance: float = setting(contours.DEFAULT_TOLERANCE, help="pixels a polygon traced from a mask may simplify away (Douglas-Peucker epsilon; 0 keeps every border pixel)", minimum=0)


@register
class AzureAutoMLFormat(ManifestFormat):
    """Azure ML AutoML for images JSONL: training lines and the model endpoints' output lines."""

    name = NAME
    extension = ".jsonl"
    file_layout = "jsonl"
    one_task_per_file = True  # an AutoML training job reads one task's JSONL
    Options = AzureAutoMLOptions

    def detect(self, sample: list[Any]) -> float:
        if not sample:
            return 0.0
        return sum(1 for obj in sample if is_training_line(obj) or is_inference_line(obj)) / len(sample)

    def parse(self, obj: Any, ctx: ParseContext) -> Parsed:
        return parse_line(obj, ctx, self.options_of(ctx))

    def source_fields(self, extra: dict) -> dict[str, Any]:
        """The line's own keys beside image_url / image_details / label."""
        kept = extra.get(NAME) or {}
        return {k: v for k, v in kept.items() if k != "image_details"}

    def objects_in(self, element: Any) -> int:
        return objects_in(element)

    def output_view(self, batch: pa.RecordBatch, options: Any) -> pa.RecordBatch:
        """Records with a semantic mask (task semantic_segmentation, which AutoML has no form
        for) take the task `mask_task` chooses, before the manifests are partitioned by task:
        a Lookout for Vision dataset's anomaly lines land in one classification file with its
        normal lines."""
        return with_mask_task(batch, self.options(options).mask_task)

    def write(self, rows: list[dict], ctx: WriteContext) -> Iterator[bytes]:
        return write_lines(rows, ctx, self.options_of(ctx))
