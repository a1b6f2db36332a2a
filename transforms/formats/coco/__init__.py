"""COCO instances files: what pycocotools, torchvision, Detectron2, MMDetection, datumaro
(`coco_instances`) and FiftyOne load.

Everything the format is lives here: the reader (read.py: a document planned in parts, its
entries keyed by image id, joined and parsed), the part writer each bundle streams its rows into
(document.py, which decides what a record becomes and what is refused object by object), the
finalize step that assembles the parts into one document per split and origin and counts what
landed (assemble.py), keypoint names and triples (keypoints.py), and the plugin (format.py).
"""

from transforms.formats.coco.assemble import (
    annotations_in_file,
    assemble,
    document_name,
    document_of,
    output_categories,
    records_in,
    records_in_file,
)
from transforms.formats.coco.document import (
    ANNOTATIONS_KEY,
    GROUND_TRUTH,
    OBJECTS_KEY,
    PREDICTION,
    RECORDS_KEY,
    CocoDocument,
    CocoOptions,
    coco_rle,
    rle_box,
    stable_id,
)
from transforms.formats.coco.format import CocoFormat

__all__ = [
    "ANNOTATIONS_KEY", "GROUND_TRUTH", "OBJECTS_KEY", "PREDICTION", "RECORDS_KEY", "CocoDocument", "CocoFormat",
    "CocoOptions", "annotations_in_file", "assemble", "coco_rle", "document_name", "document_of",
    "output_categories", "records_in", "records_in_file", "rle_box", "stable_id",
]
