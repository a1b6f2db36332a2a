"""Azure ML AutoML for images JSONL: training lines and the model endpoints' output lines.

Everything the format is lives here: the reference parse of a line (parse.py), which decides
every error code and warning; the writer, training form for ground truth and endpoint form for
predictions (write.py); what a record with a semantic mask becomes, AutoML having no mask form
(masks.py); and the plugin with its detection and options (format.py).
"""

from transforms.formats.azure_automl.format import DATASTORE_MAP, AzureAutoMLFormat, AzureAutoMLOptions
from transforms.formats.azure_automl.masks import SEMANTIC, mask_task_of, with_mask_task
from transforms.formats.azure_automl.parse import (
    BOX_KEYS,
    NAME,
    is_inference_line,
    is_training_line,
    parse_line,
    polygon_envelope,
)
from transforms.formats.azure_automl.write import DatastoreMap, objects_in, write_lines

__all__ = [
    "BOX_KEYS", "DATASTORE_MAP", "NAME", "SEMANTIC", "AzureAutoMLFormat", "AzureAutoMLOptions", "DatastoreMap",
    "is_inference_line", "is_training_line", "mask_task_of", "objects_in", "parse_line", "polygon_envelope",
    "with_mask_task", "write_lines",
]
