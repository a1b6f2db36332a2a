"""The LabelStudioFormat plugin: detection, its options, and where parse and write live."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

from transforms.formats.base import FastPath, ManifestFormat, ParseContext, Parsed, WriteContext, register
from transforms.formats.label_studio import parse, write
from transforms.formats.label_studio.labeling_config import config_files
from transforms.settings import setting


@dataclasses.dataclass(frozen=True)
class LabelStudioOptions:
    annotations: str = setting("all", help="which annotations of a task become rows: all, the latest, or those marked ground_truth", choices=parse.ANNOTATION_MODES)
    region_tolerance: float = setting(0.1, help="percentage points a region may leave the image by without REGION_OUT_OF_RANGE", minimum=0)
    brush_alpha_threshold: int = setting(128, help="brush pixels with alpha at least this are the mask", minimum=0, maximum=255)


@register
class LabelStudioFormat(ManifestFormat):
    """Label Studio task exports: a JSON array of tasks, one task object, or one task per JSONL line."""

    name = parse.NAMESPACE
    extension = ".json"
    file_layout = "json_array"

    Options = LabelStudioOptions

    def detect(self, sample: list[Any]) -> float:
        if not sample:
            return 0.0
        return sum(1 for obj in sample if parse.looks_like_task(obj)) / len(sample)

    def parse(self, obj: Any, ctx: ParseContext) -> Parsed:
        return parse.parse_task(obj, self.options_of(ctx))

    def fast_paths(self) -> list[FastPath]:
        """Tasks of rectangles, polygons and choices in columns (fast_tasks.py); parse.py reads every other task."""
        from transforms.formats.label_studio.fast_tasks import TaskColumnsPath

        return [TaskColumnsPath()]

    def source_fields(self, extra: dict) -> dict[str, Any]:
        return parse.source_fields(extra)

    def write(self, rows: list[dict], ctx: WriteContext) -> Iterator[bytes]:
        return write.write_tasks(rows, ctx)

    def objects_in(self, element: Any) -> int:
        return write.regions_in(element)

    def side_files(self, summaries: list[dict], classes: list[str] | None) -> dict[str, bytes]:
        """`labeling_config.xml`, with a control for every one the written tasks use."""
        return config_files(summaries)
