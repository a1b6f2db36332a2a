"""The SageMakerFormat plugin: detection, its options, and the paths a line may take."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

from transforms import errors
from transforms.errors import RecordError
from transforms.formats.base import FastPath, ManifestFormat, ParseContext, Parsed, WriteContext, register
from transforms.formats.sagemaker.fast_arrow import ArrowBlockPath
from transforms.formats.sagemaker.fast_detection import DetectionArrowPath
from transforms.formats.sagemaker.fast_lines import LineColumnsPath
from transforms.formats.sagemaker.parse import DETECTION, METADATA_SUFFIX, SOURCE_REF, kind_of, parse_line
from transforms.formats.sagemaker.write import write_lines
from transforms.settings import setting


def _class_list(value) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(item).strip() for item in items if str(item).strip()]


@dataclasses.dataclass(frozen=True)
class SageMakerOptions:
    classes: list[str] = setting([], help="class names in id order, for records whose classes carry no Ground Truth id", flag=None, parse=_class_list)
    mask_files: bool = setting(False, help="write brush regions (Label Studio RLE) as one semantic-segmentation mask PNG per record beside the manifests, instead of as boxes")
    brush_alpha_threshold: int = setting(128, help="brush RLE pixels with alpha at least this are painted into the mask PNG (with mask_files)", minimum=0, maximum=255)


@register
class SageMakerFormat(ManifestFormat):
    """Ground Truth / Lookout for Vision / Rekognition Custom Labels manifests (JSON lines)."""

    name = "sagemaker"
    extension = ".manifest"
    file_layout = "jsonl"
    uses_class_names = True
    Options = SageMakerOptions

    def detect(self, sample: list[Any]) -> float:
        if not sample:
            return 0.0
        hits = sum(1 for obj in sample if isinstance(obj, dict) and SOURCE_REF in obj)
        return hits / len(sample)

    def parse(self, obj: Any, ctx: ParseContext) -> Parsed:
        if not isinstance(obj, dict):
            raise RecordError(errors.NOT_AN_OBJECT, "a Ground Truth line must be a JSON object")
        return Parsed(rows=[parse_line(obj, ctx)])

    def needs_class_names(self, options: Any) -> bool:
        return not self.options(options).classes  # a pinned list needs no first pass

    def source_fields(self, extra: dict) -> dict[str, Any]:
        """The line's keys that are neither source-ref nor a label attribute."""
        return (extra.get("sagemaker") or {}).get("fields") or {}

    def objects_in(self, element: Any) -> int:
        """Boxes of the line's object-detection attributes."""
        return sum(
            len(value.get("annotations") or [])
            for key, value in element.items()
            if isinstance(value, dict) and isinstance(element.get(key + METADATA_SUFFIX), dict)
            and kind_of(key, value, element[key + METADATA_SUFFIX]) == DETECTION
        )

    def fast_paths(self) -> list[FastPath]:
        """Whole batches in Arrow first (classification, Lookout for Vision, segmentation; then
        object detection), then per line."""
        return [ArrowBlockPath(), DetectionArrowPath(), LineColumnsPath()]

    def write(self, rows: list[dict], ctx: WriteContext) -> Iterator[bytes]:
        return write_lines(rows, ctx, self.options_of(ctx))

    def write_batch(self, batch: Any, ctx: WriteContext, rows_of: Any) -> list[bytes]:
        """The lines of a RecordBatch in row order: plain detections built from its columns
        (write_columns.py), the other rows asked for as dicts by `rows_of` and written as `write`
        writes them (all through `write` when none is a plain detection)."""
        from transforms.formats.sagemaker.write_columns import write_batch

        return write_batch(batch, ctx, self.options_of(ctx), rows_of, self.write)
