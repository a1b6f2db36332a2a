"""Synthetic Lookout for Vision manifests of any size, for tests and benchmarks (never committed).

    python -m benchmarks.synthetic OUT.manifest 1000000 [--broken-every N] [--blank-every N]
                                   [--mask-prefix URL]

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


def write_manifest(path: str, lines: int, broken_every: int = 0, blank_every: int = 0, seed: int = 7, mask_prefix: str = MASK_PREFIX) -> None:
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
                chunk.append(orjson.dumps(lookout_line(i, rng, mask_prefix)))
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
    args = parser.parse_args()
    write_manifest(args.path, args.lines, args.broken_every, args.blank_every, mask_prefix=args.mask_prefix)


if __name__ == "__main__":
    main()
