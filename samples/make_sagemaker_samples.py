"""Writes samples/sagemaker/: a small Ground Truth / Lookout for Vision dataset of our own.

Run from the repository root: python samples/make_sagemaker_samples.py. The output is committed;
this script says how it was made and remakes it byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent / "sagemaker"
W, H = 64, 48
DATE = "2024-03-05T10:11:12.345"
JS_DATE = "Tue Mar 05 2024 02:11:13 GMT-0800 (Pacific Standard Time)"


def _image(name: str, color: tuple[int, int, int]) -> str:
    path = ROOT / "images" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (W, H), color).save(path, quality=80)
    return f"images/{name}"


def _mask(name: str, boxes: list[tuple[tuple[int, int, int, int], tuple[int, int, int]]]) -> str:
    """A palette mask: white background, one filled rectangle per (box, colour)."""
    path = ROOT / "masks" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(mask)
    for box, color in boxes:
        draw.rectangle(box, fill=color)
    mask.convert("P", palette=Image.ADAPTIVE, colors=8).save(path)
    return f"masks/{name}"


def classification(attr, class_name, value, confidence=1, date=DATE, job="labeling-job/lookout"):
    return {
        attr: value,
        f"{attr}-metadata": {
            "confidence": confidence,
            "job-name": job,
            "class-name": class_name,
            "human-annotated": "yes",
            "creation-date": date,
            "type": "groundtruth/image-classification",
        },
    }


COLOR_MAP = {
    "0": {"class-name": "BACKGROUND", "hex-color": "#ffffff", "confidence": 0.0},
    "1": {"class-name": "scratch", "hex-color": "#2ca02c", "confidence": 0.0},
    "2": {"class-name": "dent", "hex-color": "#1f77b4", "confidence": 0.0},
}


def mask_attr(attr, ref, color_map=COLOR_MAP, date=JS_DATE):
    return {
        attr: ref,
        f"{attr}-metadata": {
            "internal-color-map": color_map,
            "type": "groundtruth/semantic-segmentation",
            "human-annotated": "yes",
            "creation-date": date,
            "job-name": "labeling-job/segmentation",
        },
    }


def lookout_lines() -> list[dict]:
    lines = []
    for i in range(1, 7):
        ref = _image(f"normal-{i}.jpg", (200, 200, 200 - i))
        # The numeric value never decides: class-name does (real files disagree on 0 and 1).
        lines.append({"source-ref": ref, **classification("anomaly-label", "normal", i % 2)})
    for i in range(1, 5):
        ref = _image(f"anomaly-{i}.jpg", (180, 170, 160 + i))
        name = "Anomaly" if i == 4 else "anomaly"  # recognized case-insensitively, kept as written
        mask = _mask(f"anomaly-{i}.png", [((8 + i, 8, 24 + i, 20), (0x2C, 0xA0, 0x2C)), ((40, 30, 50, 40), (0x1F, 0x77, 0xB4))])
        metadata_first = {"anomaly-label-metadata": classification("anomaly-label", name, 1)["anomaly-label-metadata"]}
        lines.append({"source-ref": ref, **metadata_first, "anomaly-label": 1, **mask_attr("anomaly-mask-ref", mask)})
    return lines


def ground_truth_lines() -> list[dict]:
    img = _image("street-1.jpg", (90, 120, 150))
    multilabel = {
        "source-ref": img,
        "labels": [0, 2],
        "labels-metadata": {
            "job-name": "labeling-job/multilabel",
            "class-map": {"0": "car", "2": "bicycle"},
            "confidence-map": {"0": 0.91, "2": 0.62},
            "human-annotated": "no",
            "creation-date": DATE,
            "type": "groundtruth/image-classification-multilabel",
        },
    }
    detection = {
        "source-ref": _image("street-2.jpg", (80, 110, 140)),
        "bounding-box": {
            "image_size": [{"width": W, "height": H, "depth": 3}],
            "annotations": [
                {"class_id": 0, "left": 4, "top": 6, "width": 20, "height": 12},
                {"class_id": 1, "left": 30, "top": 10, "width": 16, "height": 30},
            ],
        },
        "bounding-box-metadata": {
            "objects": [{"confidence": 0.87}, {"confidence": 0.5}],
            "class-map": {"0": "car", "1": "person"},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
            "creation-date": DATE,
            "job-name": "labeling-job/boxes",
        },
    }
    chained = json.loads(json.dumps(detection))
    chained["source-ref"] = _image("street-3.jpg", (70, 100, 130))
    chained["bounding-box-chained"] = {
        "image_size": [{"width": W, "height": H, "depth": 3}],
        "annotations": [{"class_id": 0, "left": 5, "top": 6, "width": 20, "height": 12}],
    }
    chained["bounding-box-chained-metadata"] = dict(detection["bounding-box-metadata"], objects=[{"confidence": 0.95}], **{"job-name": "labeling-job/boxes-chained"})
    rekognition = {
        "source-ref": _image("kitchen-1.jpg", (150, 130, 110)),
        **classification("kitchen", "kitchen", 1, job="labeling-job/rooms"),
        **classification("has-window", "window", 1, confidence=0.8, job="labeling-job/features"),
    }
    segmentation = {
        "source-ref": _image("street-4.jpg", (60, 90, 120)),
        **mask_attr("street-ref", _mask("street-4.png", [((0, 30, 63, 47), (0x2C, 0xA0, 0x2C))]),
                    {"0": {"class-name": "BACKGROUND", "hex-color": "#ffffff", "confidence": 0.0},
                     "1": {"class-name": "road", "hex-color": "#2ca02c", "confidence": 0.0}}),
    }
    unlabeled = {"source-ref": _image("street-5.jpg", (50, 80, 110))}
    absolute = {"source-ref": "s3://example-bucket/images/far-away.jpg", **classification("label", "cat", 0)}
    return [multilabel, detection, chained, rekognition, segmentation, unlabeled, absolute]


BROKEN: list[bytes] = [
    b'{"source-ref": "images/normal-1.jpg", "anomaly-label": 0, "anomaly-label-metadata": {"class-name": "normal"',
    b'["not", "an", "object"]',
    b'{"source-ref": "images/caf\xe9.jpg", "label": 0, "label-metadata": {"class-name": "x"}}',
    b'{"anomaly-label": 1, "anomaly-label-metadata": {"class-name": "anomaly", "type": "groundtruth/image-classification"}}',
    b'{"source-ref": "images/anomaly-1.jpg", "anomaly-mask-ref": "masks/anomaly-1.png"}',
    b'{"source-ref": "images/anomaly-2.jpg", "anomaly-label-metadata": {"class-name": "anomaly"}}',
    b'{"source-ref": 42}',
    b'{"source-ref": "images/anomaly-3.jpg", "label": 1, "label-metadata": {"class-name": ["anomaly"]}}',
    b"",
    b"   ",
    b'{"source-ref": "images/normal-2.jpg", "anomaly-label": 0, "anomaly-label-metadata": {"class-name": "normal", "type": "groundtruth/image-classification", "creation-date": "yesterday"}}',
]


def _write_jsonl(name: str, lines: list) -> None:
    with open(ROOT / name, "wb") as handle:
        for line in lines:
            handle.write((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n")


def main() -> None:
    ROOT.mkdir(parents=True, exist_ok=True)
    _write_jsonl("lookout-for-vision.manifest", lookout_lines())
    _write_jsonl("ground-truth.jsonl", ground_truth_lines())
    _write_jsonl("broken.manifest", BROKEN)


if __name__ == "__main__":
    main()
