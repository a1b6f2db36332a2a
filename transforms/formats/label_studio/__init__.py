"""Label Studio task exports (parse.py) and their region geometry (regions.py)."""

from transforms.formats.label_studio.parse import LabelStudioFormat, LabelStudioOptions  # noqa: F401
from transforms.formats.label_studio.regions import rectangle_corners  # noqa: F401
