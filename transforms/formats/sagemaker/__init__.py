"""SageMaker Ground Truth output manifests, and the Lookout for Vision / Rekognition family.

Everything the format is lives here: the reference parse (parse.py), which decides every error
code and warning; the writer (write.py); the plugin with its detection and options (format.py);
and the three fast paths the plugin declares (`SageMakerFormat.fast_paths`): whole batches
through Arrow's JSON reader (fast_arrow.py: classification, Lookout, segmentation;
fast_detection.py: object detection) and per line into columns (fast_lines.py), each proven
equal to parse.py on every shape it claims (tests/test_fast_normalize.py).
"""

from transforms.formats.sagemaker.format import SageMakerFormat, SageMakerOptions
from transforms.formats.sagemaker.parse import (
    CLASSIFICATION,
    COLUMN_METADATA,
    DETECTION,
    LOOKOUT_CLASSES,
    MASK,
    METADATA_SUFFIX,
    MULTILABEL,
    SOURCE_REF,
    TYPE_TO_KIND,
    UNKNOWN,
    kind_of,
    parse_line,
)
from transforms.formats.sagemaker.write import CLASSES_OPTION, write_lines

__all__ = [
    "CLASSES_OPTION", "CLASSIFICATION", "COLUMN_METADATA", "DETECTION", "LOOKOUT_CLASSES", "MASK", "METADATA_SUFFIX",
    "MULTILABEL", "SOURCE_REF", "TYPE_TO_KIND", "UNKNOWN", "SageMakerFormat", "SageMakerOptions", "kind_of",
    "parse_line", "write_lines",
]
