"""Writes samples/coco/: a small COCO instances file and its results file, of our own.

Every shape labelbeam reads from COCO is in it: boxes, polygons (one ring and two), an
uncompressed RLE crowd region, a compressed RLE, keypoints named by their category (one point
not labelled, one labelled but not visible), an image with no annotation (a negative example)
and predictions with scores in the results file.

Run from the repository root: python samples/make_coco_samples.py. The output is committed;
this script says how it was made and remakes it byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

ROOT = Path(__file__).resolve().parent / "coco"
W, H = 64, 48


def _image(image_id: int, name: str, color: tuple[int, int, int]) -> dict:
    path = ROOT / "images" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (W, H), color).save(path, quality=80)
    return {"id": image_id, "file_name": f"images/{name}", "width": W, "height": H, "license": 1, "date_captured": "2024-03-05 10:11:12"}


def _rectangle(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    pixels = np.zeros((H, W), np.uint8, order="F")
    pixels[top:bottom, left:right] = 1
    return pixels


def _uncompressed(pixels: np.ndarray) -> dict:
    """COCO's uncompressed RLE (column-major run lengths, starting with a run of zeros)."""
    flat = pixels.flatten(order="F")
    changes = np.flatnonzero(np.diff(np.concatenate(([0], flat, [1 - flat[-1]]))))
    return {"size": [H, W], "counts": np.diff(np.concatenate(([0], changes))).tolist()}


def instances() -> dict:
    images = [
        _image(1, "street-1.jpg", (120, 130, 140)),
        _image(2, "street-2.jpg", (90, 100, 110)),
        _image(3, "crowd-1.jpg", (140, 120, 100)),
        _image(4, "empty-1.jpg", (200, 200, 200)),
    ]
    categories = [
        {"id": 1, "name": "person", "supercategory": "", "keypoints": ["nose", "left_eye", "right_eye"], "skeleton": []},
        {"id": 2, "name": "car", "supercategory": "", "keypoints": [], "skeleton": []},
        {"id": 3, "name": "bicycle", "supercategory": "", "keypoints": [], "skeleton": []},
    ]
    compressed = mask_utils.encode(_rectangle(10, 20, 30, 44))
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [4.0, 8.0, 20.0, 12.0], "area": 240.0, "iscrowd": 0, "segmentation": []},
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [30.0, 10.0, 20.0, 20.0], "area": 200.0, "iscrowd": 0,
         "segmentation": [[30.0, 10.0, 50.0, 10.0, 50.0, 30.0]]},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [10.0, 20.0, 12.0, 24.0], "area": 288.0, "iscrowd": 0, "segmentation": [],
         "keypoints": [16.0, 26.0, 2, 14.0, 24.0, 1, 0, 0, 0], "num_keypoints": 2},
        {"id": 4, "image_id": 2, "category_id": 2, "bbox": [2.0, 2.0, 20.0, 20.0], "area": 150.0, "iscrowd": 0,
         "segmentation": [[2.0, 2.0, 12.0, 2.0, 12.0, 12.0, 2.0, 12.0], [14.0, 14.0, 22.0, 14.0, 22.0, 22.0]]},
        {"id": 5, "image_id": 3, "category_id": 1, "bbox": [4.0, 4.0, 30.0, 20.0], "area": 600.0, "iscrowd": 1,
         "segmentation": _uncompressed(_rectangle(4, 4, 24, 34))},
        {"id": 6, "image_id": 3, "category_id": 2, "bbox": [20.0, 10.0, 24.0, 20.0], "area": 480.0, "iscrowd": 0,
         "segmentation": {"size": compressed["size"], "counts": compressed["counts"].decode()}},
    ]
    return {
        "info": {"description": "labelbeam COCO samples", "version": "1.0", "year": 2024},
        "licenses": [{"id": 1, "name": "CC0-1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def results() -> list[dict]:
    return [
        {"image_id": 1, "category_id": 2, "bbox": [5.0, 8.0, 19.0, 12.0], "score": 0.91},
        {"image_id": 2, "category_id": 2, "bbox": [2.0, 3.0, 20.0, 18.0], "score": 0.62},
        {"image_id": 2, "category_id": 3, "bbox": [30.0, 20.0, 10.0, 10.0], "score": 0.35},
    ]


def main() -> None:
    ROOT.mkdir(parents=True, exist_ok=True)
    (ROOT / "instances_train.json").write_text(json.dumps(instances(), indent=1) + "\n")
    (ROOT / "results_train.json").write_text(json.dumps(results(), indent=1) + "\n")


if __name__ == "__main__":
    main()
