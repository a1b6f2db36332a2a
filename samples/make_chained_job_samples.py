"""Writes samples/sagemaker/chained/chained-jobs.manifest: a Ground Truth bounding-box job and
its adjustment job, as a chained job's output manifest holds them: every line has both label
attributes, `job` (the first job) and `job-chain` (the adjustment: most boxes as they were, some
moved, one added, one removed), the second with `adjustment-status` in its metadata.

Run from the repository root: python samples/make_chained_job_samples.py. The output is
committed; this script says how it was made and remakes it byte for byte. It sits one folder
deeper than the demo's samples (`samples/*/*`), so the demo's counts stay as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "sagemaker" / "chained" / "chained-jobs.manifest"
W, H = 640, 480
CLASSES = {"0": "car", "1": "person"}
LINES = 6


def _boxes(line: int) -> list[dict]:
    """The first job's boxes of a line: two or three, in pixels."""
    boxes = [
        {"class_id": 0, "left": 10 + 7 * line, "top": 20, "width": 100, "height": 60},
        {"class_id": 1, "left": 300, "top": 40 + 5 * line, "width": 40, "height": 120},
    ]
    if line % 2:
        boxes.append({"class_id": 0, "left": 400, "top": 300, "width": 90, "height": 50})
    return boxes


def _adjusted(line: int, boxes: list[dict]) -> tuple[list[dict], str]:
    """The adjustment job's boxes: line 0 unadjusted; others move a box, add or remove one."""
    if line == 0:
        return [dict(b) for b in boxes], "unadjusted"
    adjusted = [dict(b) for b in boxes]
    if line % 3 == 1:
        adjusted[0]["left"] += 4  # moved
    elif line % 3 == 2:
        adjusted.append({"class_id": 1, "left": 500, "top": 200, "width": 30, "height": 90})  # added
    else:
        adjusted.pop()  # removed
    return adjusted, "adjusted"


def _attribute(name: str, boxes: list[dict], job: str, date: str, extra: dict) -> dict:
    return {
        name: {"image_size": [{"width": W, "height": H, "depth": 3}], "annotations": boxes},
        f"{name}-metadata": {
            "objects": [{"confidence": 0} for _ in boxes],
            "class-map": {k: CLASSES[k] for k in sorted({str(b["class_id"]) for b in boxes})},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
            "creation-date": date,
            "job-name": job,
            **extra,
        },
    }


def lines() -> list[dict]:
    out = []
    for line in range(LINES):
        boxes = _boxes(line)
        adjusted, status = _adjusted(line, boxes)
        out.append(
            {
                "source-ref": f"s3://example-bucket/chained/street-{line}.jpg",
                **_attribute("job", boxes, "labeling-job/job", "2024-03-05T10:11:12.345678", {}),
                **_attribute("job-chain", adjusted, "labeling-job/job-chain", "2024-03-06T09:00:00.000000", {"adjustment-status": status}),
            }
        )
    return out


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(line) + "\n" for line in lines()))


if __name__ == "__main__":
    main()
