"""Small COCO files written for the tests: every geometry COCO has (box, polygon, RLE with
uncompressed and compressed counts, keypoints), a negative image, and one of each fault the
reader gives a code to. Images are synthetic; no third-party file is copied here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

WIDTH, HEIGHT = 64, 48


def _mask() -> np.ndarray:
    m = np.zeros((HEIGHT, WIDTH), np.uint8)
    m[10:20, 5:30] = 1
    m[30:40, 40:60] = 1
    return m


def uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE counts (column-major runs, starting with zeros)."""
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


CATEGORIES = [
    {"id": 1, "name": "cat", "supercategory": "animal"},
    {"id": 2, "name": "person", "supercategory": "person", "keypoints": ["nose", "left_eye", "right_eye"], "skeleton": [[1, 2], [1, 3]]},
    {"id": 3, "name": "blob", "supercategory": ""},
]


def clean_document() -> dict:
    """A document every entry of which becomes part of a record."""
    mask = _mask()
    compressed = mask_utils.encode(np.asfortranarray(mask))
    compressed["counts"] = compressed["counts"].decode("ascii")
    area = float(mask.sum())
    box = [float(v) for v in mask_utils.toBbox(compressed)]
    images = [{"id": i, "file_name": f"images/img{i}.jpg", "width": WIDTH, "height": HEIGHT, "license": 1} for i in range(1, 6)]
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1.5, 2.0, 10.0, 20.0], "area": 200.0, "iscrowd": 0, "segmentation": [[1.5, 2, 11.5, 2, 11.5, 22, 1.5, 22]]},
        {"id": 11, "image_id": 1, "category_id": 3, "bbox": box, "area": area, "iscrowd": 1, "segmentation": {"size": [HEIGHT, WIDTH], "counts": uncompressed_counts(mask)}},
        {"id": 12, "image_id": 2, "category_id": 3, "bbox": box, "area": area, "iscrowd": 0, "segmentation": compressed},
        {"id": 13, "image_id": 2, "category_id": 2, "bbox": [10.0, 10.0, 20.0, 20.0], "area": 400.0, "iscrowd": 0, "segmentation": [], "keypoints": [12, 14, 2, 0, 0, 0, 20, 15, 1], "num_keypoints": 2},
        {"id": 14, "image_id": 3, "category_id": 1, "bbox": [0.0, 0.0, 64.0, 48.0], "area": 3072.0, "iscrowd": 0, "segmentation": []},
        {"id": 15, "image_id": 3, "category_id": 2, "bbox": [30.0, 5.0, 10.0, 30.0], "area": 300.0, "iscrowd": 0, "segmentation": [[30, 5, 40, 5, 40, 35]], "keypoints": [31, 6, 2, 33, 7, 2, 38, 8, 2], "num_keypoints": 3},
    ]  # image 4 and 5 have no annotation: negative examples
    return {"info": {"description": "test"}, "licenses": [{"id": 1, "name": "x", "url": ""}], "images": images, "annotations": annotations, "categories": CATEGORIES}


def faulty_document() -> dict:
    """The clean document plus one entry of each fault (and one malformed annotation)."""
    doc = clean_document()
    doc["images"].append({"id": 5, "file_name": "images/again.jpg", "width": 10, "height": 10})  # id given twice
    doc["images"].append({"id": 6, "width": 10, "height": 10})  # no file_name
    doc["annotations"] += [
        {"id": 20, "image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1], "area": 1.0, "iscrowd": 0},  # no such image
        {"id": 21, "image_id": 3, "category_id": 42, "bbox": [0, 0, 1, 1], "area": 1.0, "iscrowd": 0},  # no such category
        {"id": 22, "image_id": 3, "category_id": 1, "bbox": "0 0 1 1"},  # malformed
        {"id": 23, "image_id": 6, "category_id": 1, "bbox": [0, 0, 1, 1]},  # its image is a dead letter
    ]
    doc["categories"] = doc["categories"] + [dict(CATEGORIES[0]), {"id": 3, "name": "not-blob"}]  # an equal repeat, a conflict
    return doc


FAULTS = {"COCO_IMAGE_ID_REPEATED": 1, "MISSING_SOURCE_REF": 1, "COCO_IMAGE_MISSING": 2, "COCO_CATEGORY_UNKNOWN": 1, "INVALID_FIELD_TYPE": 1, "COCO_CATEGORY_CONFLICT": 1}

RESULTS = [
    {"image_id": 1, "category_id": 1, "bbox": [1.0, 2.0, 10.0, 20.0], "score": 0.9},
    {"image_id": 1, "category_id": 3, "bbox": [2.0, 2.0, 5.0, 5.0], "score": 0.5},
    {"image_id": 2, "category_id": 1, "bbox": [1.0, 1.0, 3.0, 3.0], "score": 0.25},
]


def write(path: Path, value, indent: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=indent))
    return path
