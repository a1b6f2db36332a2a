"""Synthetic Ground Truth / Lookout for Vision manifests of any size, for tests and benchmarks
(never committed).

    python -m benchmarks.synthetic OUT.manifest 1000000 [--broken-every N] [--blank-every N]
                                   [--mask-prefix URL] [--shape lookout|detection|...]

`ground_truth_line(shape, i, rng)` makes one line of each shape a Ground Truth fast path may
claim (GROUND_TRUTH_SHAPES): the differential test and benchmarks/fast_paths.py use them.

Masks point at s3://example-bucket/masks/ unless --mask-prefix names another folder (a local one
lets a run check the mask references without a cloud account: the files are simply missing).
"""

from __future__ import annotations

import argparse
import random

import orjson

MASK_PREFIX = "s3://example-bucket/masks"


def lookout_line(i: int, rng: random.Random, mask_prefix: str = MASK_PREFIX) -> dict:
    anomaly = rng.random() < 0.3
    line = {
        "source-ref": f"s3://example-bucket/images/{'anomaly' if anomaly else 'normal'}-{i}.jpg",
        "anomaly-label": 1 if anomaly else 0,
        "anomaly-label-metadata": {
            "confidence": round(rng.random(), 3),
            "job-name": "labeling-job/synthetic",
            "class-name": "anomaly" if anomaly else "normal",
            "human-annotated": "yes",
            "creation-date": f"2023-0{1 + i % 9}-1{i % 10}T10:{i % 60:02d}:00.{i % 1000:03d}",
            "type": "groundtruth/image-classification",
        },
    }
    if anomaly:
        line["anomaly-mask-ref"] = f"{mask_prefix}/anomaly-{i}.png"
        line["anomaly-mask-ref-metadata"] = {
            "internal-color-map": {
                "0": {"class-name": "BACKGROUND", "hex-color": "#ffffff", "confidence": 0.0},
                "1": {"class-name": "scratch", "hex-color": "#2ca02c", "confidence": 0.0},
            },
            "type": "groundtruth/semantic-segmentation",
            "human-annotated": "yes",
            "creation-date": "Mon Aug 22 2022 13:52:52 GMT-0700 (Pacific Daylight Time)",
            "job-name": "labeling-job/synthetic-masks",
        }
    return line


_CLASSES = ["cat", "dog", "car", "person", "bicycle", "traffic light", "caf\u00e9", "\u732b"]


def _class(c: int) -> str:
    return _CLASSES[c] if c < len(_CLASSES) else f"class {c}"


def _metadata(i: int, rng: random.Random, type_: str, job: str) -> dict:
    """The metadata fields every Ground Truth job writes."""
    return {
        "job-name": f"labeling-job/{job}",
        "human-annotated": rng.choice(["yes", "no"]),
        "creation-date": f"2023-0{1 + i % 9}-1{i % 10}T10:{i % 60:02d}:00.{i % 1000:03d}",
        "type": type_,
    }


def _classification(i: int, rng: random.Random, attribute: str = "label") -> dict:
    class_id = rng.randrange(4)
    meta = _metadata(i, rng, "groundtruth/image-classification", f"{attribute}-job")
    meta.update({"class-name": _CLASSES[class_id], "confidence": round(rng.random(), 2)})
    return {attribute: class_id, f"{attribute}-metadata": meta}


def _multilabel(i: int, rng: random.Random, attribute: str = "labels") -> dict:
    ids = sorted(rng.sample(range(6), rng.randrange(0, 4)))
    meta = _metadata(i, rng, "groundtruth/image-classification-multilabel", f"{attribute}-job")
    meta["class-map"] = {str(c): _CLASSES[c] for c in range(6)}
    meta["confidence-map"] = {str(c): round(rng.random(), 2) for c in ids}
    return {attribute: ids, f"{attribute}-metadata": meta}


def _detection(i: int, rng: random.Random, attribute: str = "bounding-box", boxes: int | None = None) -> dict:
    width, height = rng.choice([(640, 480), (1920, 1080), (333, 517)])
    classes = 4 if boxes is not None else 12  # past 10, the ids' text order ("10" < "2") differs from their number order
    annotations, objects = [], []
    for _ in range(rng.randrange(0, 7) if boxes is None else boxes):
        left, top = rng.randrange(width - 20), rng.randrange(height - 20)
        annotations.append({"class_id": rng.randrange(classes), "left": left, "top": top,
                            "width": rng.randrange(1, width - left), "height": rng.randrange(1, height - top)})
        objects.append({"confidence": round(rng.random(), 2)})
    if objects and boxes is None and rng.random() < 0.1:
        objects.pop()  # edited by hand: a box without its confidence
    meta = _metadata(i, rng, "groundtruth/object-detection", f"{attribute}-job")
    meta.update({"class-map": {str(c): _class(c) for c in range(classes)}, "objects": objects})
    value = {"image_size": [{"width": width, "height": height, "depth": 3}], "annotations": annotations}
    return {attribute: value, f"{attribute}-metadata": meta}


def _segmentation(i: int, rng: random.Random, attribute: str = "label-ref") -> dict:
    meta = _metadata(i, rng, "groundtruth/semantic-segmentation", f"{attribute}-job")
    meta["internal-color-map"] = {
        "0": {"class-name": "BACKGROUND", "hex-color": "#ffffff", "confidence": 0.0},
        **{str(c): {"class-name": _CLASSES[c], "hex-color": f"#{c * 30:02x}a0{c:02x}", "confidence": round(rng.random(), 2)}
           for c in sorted(rng.sample(range(1, 6), rng.randrange(1, 4)))},
    }
    return {attribute: f"s3://example-bucket/masks/{i}.png", f"{attribute}-metadata": meta}


def _lookout(i: int, rng: random.Random, masks: bool) -> dict:
    line = lookout_line(i, rng)
    while masks and "anomaly-mask-ref" not in line:  # an anomaly, with its mask
        line = lookout_line(i, rng)
    if not masks:
        line.pop("anomaly-mask-ref", None)
        line.pop("anomaly-mask-ref-metadata", None)
    return line


def _chained(i: int, rng: random.Random) -> dict:
    """A chained job: a detection job adjusted by a second one, and a classification."""
    line = {"source-ref": f"s3://example-bucket/images/{i}.jpg"}
    line.update(_detection(i, rng, "bounding-box"))
    line.update(_detection(i, rng, "bounding-box-adjusted"))
    line.update(_classification(i, rng, "scene"))
    return line


def _image(i: int, attributes: dict) -> dict:
    return {"source-ref": f"s3://example-bucket/images/{i}.jpg", **attributes}


GROUND_TRUTH_SHAPES = {
    "classification": lambda i, rng: _image(i, _classification(i, rng)),
    "lookout": lambda i, rng: _lookout(i, rng, masks=False),
    "lookout_masks": lambda i, rng: _lookout(i, rng, masks=True),
    "multilabel": lambda i, rng: _image(i, _multilabel(i, rng)),
    "detection": lambda i, rng: _image(i, _detection(i, rng)),
    "segmentation": lambda i, rng: _image(i, _segmentation(i, rng)),
    "chained": _chained,
}


def ground_truth_line(shape: str, i: int, rng: random.Random) -> dict:
    """One Ground Truth line of `shape` (a key of GROUND_TRUTH_SHAPES)."""
    return GROUND_TRUTH_SHAPES[shape](i, rng)


def detection_line(i: int, rng: random.Random, boxes: int = 4) -> dict:
    """An object-detection line with `boxes` boxes of 4 classes (the throughput issue's shape)."""
    return _image(i, _detection(i, rng, boxes=boxes))


def write_manifest(path: str, lines: int, broken_every: int = 0, blank_every: int = 0, seed: int = 7, mask_prefix: str = MASK_PREFIX,
                   shape: str = "lookout_masks") -> None:
    """Writes `lines` lines: records, plus a broken line every N and a blank line every M."""
    rng = random.Random(seed)
    with open(path, "wb") as handle:
        chunk = []
        for i in range(1, lines + 1):
            if blank_every and i % blank_every == 0:
                chunk.append(b"")
            elif broken_every and i % broken_every == 0:
                chunk.append(b'{"source-ref": "s3://example-bucket/broken-%d.jpg", "anomaly-label": ' % i)
            else:
                line = lookout_line(i, rng, mask_prefix) if shape == "lookout_masks" else ground_truth_line(shape, i, rng)
                chunk.append(orjson.dumps(line))
            if len(chunk) >= 10000:
                handle.write(b"\n".join(chunk) + b"\n")
                chunk = []
        if chunk:
            handle.write(b"\n".join(chunk) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("lines", type=int)
    parser.add_argument("--broken-every", type=int, default=0)
    parser.add_argument("--blank-every", type=int, default=0)
    parser.add_argument("--mask-prefix", default=MASK_PREFIX)
    parser.add_argument("--shape", default="lookout_masks", choices=sorted(GROUND_TRUTH_SHAPES))
    args = parser.parse_args()
    write_manifest(args.path, args.lines, args.broken_every, args.blank_every, mask_prefix=args.mask_prefix, shape=args.shape)


if __name__ == "__main__":
    main()
