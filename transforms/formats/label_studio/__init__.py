"""Label Studio task exports: a JSON array of tasks, one task object, or one task per JSONL line.

Everything the format is lives here: the reference parse of a task (parse.py), which decides
every error code, warning and skip counter; the geometry of regions, both ways (regions.py:
rectangles, rotated too, polygons, ellipses, keypoints, brush RLE); the writer, one importable
task per row (write.py); the labeling config written beside the tasks (labeling_config.py); and
the plugin with its detection and options (format.py).
"""

from transforms.formats.label_studio.format import LabelStudioFormat, LabelStudioOptions
from transforms.formats.label_studio.labeling_config import CONFIG_FILE, CONTROLS, labeling_config, note_controls
from transforms.formats.label_studio.parse import (
    ANNOTATION_MODES,
    CANCELLED,
    NAMESPACE,
    NOT_GROUND_TRUTH,
    NOT_LATEST,
    looks_like_task,
    parse_task,
)
from transforms.formats.label_studio.regions import RegionContext, rectangle_corners, region_kind
from transforms.formats.label_studio.write import regions_in, task_of_row, write_tasks

__all__ = [
    "ANNOTATION_MODES", "CANCELLED", "CONFIG_FILE", "CONTROLS", "NAMESPACE", "NOT_GROUND_TRUTH", "NOT_LATEST",
    "LabelStudioFormat", "LabelStudioOptions", "RegionContext", "labeling_config", "looks_like_task", "note_controls",
    "parse_task", "rectangle_corners", "region_kind", "regions_in", "task_of_row", "write_tasks",
]
