"""Each fast path of each format against the reference path, on every shape it claims.

    python -m benchmarks.fast_paths [--lines 20000] [--repeats 3] [--shapes detection,lookout]
    python -m benchmarks.fast_paths --job 200000 [--repeats 3]

For every format that declares fast paths (ManifestFormat.fast_paths) and every shape its
generators make (benchmarks/synthetic.py), the same generated lines, cut into RawBatches of the
reader's size (4,096 lines), go through transforms/normalizer.RecordNormalizer in this process:
with no fast path (the reference: decode + the format's parse + Arrow rows), with each fast path
alone (the plugin takes what it declines), and with all of them. Printed per case: lines/s and
CPU seconds (medians of `repeats`), the speed-up over the reference, and the share of lines the
fast paths took. No Beam, no I/O: what a path saves here is what it can save in the job.

--job N: the real CLI in process (FnApiRunner, records/ only, mask checks off) on N generated
Ground Truth detection lines (4 boxes of 4 classes each), with the detection Arrow path off
(the per-line path reads them) and on: wall and CPU seconds, medians of `repeats`.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import statistics
import tempfile
import time

import orjson

from benchmarks.synthetic import GROUND_TRUTH_SHAPES, detection_line
from transforms.formats.base import format_names, get_format
from transforms.normalizer import RecordNormalizer
from transforms.schema import RawBatch
from transforms.shard_reader import DEFAULT_BATCH_LINES

GENERATORS = {"sagemaker": GROUND_TRUTH_SHAPES}


def batches_of(fmt: str, shape: str, lines: int, seed: int = 7) -> list[RawBatch]:
    """`lines` generated lines of one shape as the reader's RawBatches."""
    rng, make = random.Random(seed), GENERATORS[fmt][shape]
    raws = [orjson.dumps(make(i, rng)) for i in range(lines)]
    batches, offset = [], 0
    for start in range(0, lines, DEFAULT_BATCH_LINES):
        chunk = raws[start : start + DEFAULT_BATCH_LINES]
        offsets = []
        for raw in chunk:
            offsets.append(offset)
            offset += len(raw) + 1
        batches.append(RawBatch("s3://bucket/data/train.manifest", fmt, 0, lines=list(range(start + 1, start + len(chunk) + 1)),
                                offsets=offsets, raws=chunk))
    return batches


def measure(batches: list[RawBatch], fast, repeats: int) -> tuple[float, float, dict[str, int]]:
    """(median wall s, median CPU s, lines per fast path) of normalizing every batch."""
    walls, cpus, taken = [], [], {}
    for _ in range(repeats):
        normalizer = RecordNormalizer(fast=fast)  # fresh caches: what a worker starts with
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            normalizer.normalize(batch)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        taken = normalizer.fast_lines
    return statistics.median(walls), statistics.median(cpus), taken


def job(lines: int, repeats: int) -> None:
    """The CLI in process on `lines` detection lines, the detection Arrow path off and on."""
    from pipelines.normalize_manifests import run
    from transforms.formats.sagemaker import SageMakerFormat

    declared = SageMakerFormat.fast_paths
    with tempfile.TemporaryDirectory() as folder:
        manifest = os.path.join(folder, "detection.manifest")
        rng = random.Random(7)
        with open(manifest, "wb") as handle:
            for start in range(0, lines, 10_000):
                handle.write(b"".join(orjson.dumps(detection_line(i, rng)) + b"\n" for i in range(start, min(lines, start + 10_000))))
        print(f"{lines:,} detection lines, {os.path.getsize(manifest) / 1e6:.0f} MB, in process (FnApiRunner)")
        for label, keep in (("detection Arrow path off", lambda p: p.name != "arrow_detection"), ("detection Arrow path on", lambda p: True)):
            SageMakerFormat.fast_paths = lambda self, keep=keep: [p for p in declared(self) if keep(p)]
            walls, cpus = [], []
            try:
                for _ in range(repeats):
                    wall, cpu = time.perf_counter(), _cpu()
                    code = run(["--input", manifest, "--output", os.path.join(folder, "out"), "--overwrite", "--runner=FnApiRunner",
                                "--validate_masks=false"])
                    assert code == 0, code
                    walls.append(time.perf_counter() - wall)
                    cpus.append(_cpu() - cpu)
            finally:
                SageMakerFormat.fast_paths = declared
            print(f"{label:28} wall {statistics.median(walls):6.2f} s  CPU {statistics.median(cpus):6.2f} s", flush=True)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shapes", default="", help="comma-separated shapes (default: all)")
    parser.add_argument("--job", type=int, default=0, help="the CLI in process on this many detection lines instead")
    args = parser.parse_args()
    if args.job:
        return job(args.job, args.repeats)
    chosen = {s for s in args.shapes.split(",") if s}
    print(f"{'format':10} {'shape':15} {'paths':12} {'lines/s':>9} {'CPU s':>7} {'x ref':>6}  taken")
    for fmt in (name for name in format_names() if get_format(name).fast_paths()):
        names = [path.name for path in get_format(fmt).fast_paths()]
        for shape in GENERATORS[fmt]:
            if chosen and shape not in chosen:
                continue
            batches = batches_of(fmt, shape, args.lines)
            n = sum(len(b.raws) for b in batches)
            reference = None
            for label, fast in [("reference", False), *((name, [name]) for name in names), ("all", True)]:
                wall, cpu, taken = measure(batches, fast, args.repeats)
                reference = reference or cpu
                share = ", ".join(f"{k} {v / n:.0%}" for k, v in taken.items()) or "-"
                print(f"{fmt:10} {shape:15} {label:12} {n / wall:9,.0f} {cpu:7.3f} {reference / cpu:6.2f}  {share}", flush=True)


if __name__ == "__main__":
    main()
