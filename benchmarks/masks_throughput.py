"""Masks validated per second by ValidateMasks, beside a bare Pillow decode loop, in one run.

    python -m benchmarks.masks_throughput [--masks 2000] [--batch 100] [--repeats 3]

Generates Lookout-for-Vision-like masks (576x768, anti-aliased blob, half palette + tRNS, half
RGBA) under benchmarks/data/masks/ (git-ignored), then times, median of --repeats:
  bare_loop            Image.open(path).load() for every mask, one thread
  fnapi_in_process     ValidateMasks on the FnApiRunner, one in-process worker
  fnapi_multi_process  the same with --direct_num_workers=2 --direct_running_mode=multi_processing
Pipeline timings include start-up; the same graph with validation off is timed too, so the net
rate of the validation itself is shown. Every run checks that all masks were validated.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from PIL import Image
from transforms.masks import MaskValidationConfig, ValidateMasks

from transforms import schema

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / "data" / "masks"
WIDTH, HEIGHT = 576, 768
GREEN = (35, 164, 54)
COLOR_MAP = [{"index": 0, "class_name": "cracked", "hex_color": "#23A436"}]


def mask_image(i: int) -> Image.Image:
    """A soft-edged blob whose alpha ramps 0..255 over 4 pixels, like the real masks."""
    rng = np.random.default_rng(i)
    cy, cx = rng.integers(100, HEIGHT - 100), rng.integers(100, WIDTH - 100)
    radius = rng.integers(20, 90)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    distance = np.hypot(yy - cy, xx - cx)
    alpha = np.clip((radius - distance) * 64, 0, 255).astype(np.uint8)
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    rgba[..., :3] = np.where(alpha[..., None] > 0, GREEN, 0)
    rgba[..., 3] = alpha
    image = Image.fromarray(rgba, "RGBA")
    return image.quantize(colors=64, method=Image.Quantize.FASTOCTREE) if i % 2 else image


def corpus(count: int) -> list[Path]:
    DATA.mkdir(parents=True, exist_ok=True)
    paths = [DATA / f"mask-{i:05d}.png" for i in range(count)]
    for i, path in enumerate(paths):
        if not path.exists():
            mask_image(i).save(path)
    return paths


def batches_of(paths: list[Path], size: int) -> list:
    rows = [
        {
            "record_id": schema.record_id("bench.manifest", i, 0),
            "source": {"uri": "bench.manifest", "line": i + 1, "offset": i, "format": "sagemaker"},
            "image": {"uri": f"/images/{i}.jpg", "width": WIDTH, "height": HEIGHT},
            "labels": [{"name": "anomaly"}],
            "mask": {"uri": str(path), "color_map": COLOR_MAP},
        }
        for i, path in enumerate(paths)
    ]
    return [schema.rows_to_batch(rows[i : i + size]) for i in range(0, len(rows), size)]


def bare_loop(paths: list[Path]) -> float:
    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            image.load()
    return time.perf_counter() - started


def pipeline_run(batches, expected: int, args: list[str], config: MaskValidationConfig) -> float:
    """Seconds for the whole pipeline; expected = masks that must be counted as validated."""
    started = time.perf_counter()
    pipeline = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(args))
    _ = pipeline | beam.Create(batches, reshuffle=False) | ValidateMasks(config)
    result = pipeline.run()
    result.wait_until_finish()
    elapsed = time.perf_counter() - started
    counters = result.metrics().query(MetricsFilter().with_name("masks_validated"))["counters"]
    validated = sum(c.committed or c.attempted or 0 for c in counters)
    if validated != expected:
        raise RuntimeError(f"validated {validated} masks, expected {expected}")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--masks", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    ns = parser.parse_args(argv)
    # Worker processes of multi_processing import `transforms` from the repository.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

    paths = corpus(ns.masks)
    batches = batches_of(paths, ns.batch)
    config = MaskValidationConfig(concurrency=ns.concurrency)
    multi = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    no_checks = MaskValidationConfig(validate_masks=False)
    print(f"{len(paths)} masks {WIDTH}x{HEIGHT}, batches of {ns.batch}, median of {ns.repeats}, "
          f"{os.cpu_count()} cores, concurrency {ns.concurrency}, load average {os.getloadavg()[0]:.1f}")

    def median(run) -> float:
        return statistics.median(run() for _ in range(ns.repeats))

    bare = median(lambda: bare_loop(paths))
    print(f"{'bare_loop':20s} {bare:6.2f} s  {len(paths) / bare:6.0f} masks/s")
    for name, args in (("fnapi_in_process", []), ("fnapi_multi_process", multi)):
        total = median(lambda args=args: pipeline_run(batches, len(paths), args, config))
        # The same graph with validation off: start-up, Create, Reshuffle; not masks.
        overhead = median(lambda args=args: pipeline_run(batches, 0, args, no_checks))
        net = max(total - overhead, 1e-9)
        print(f"{name:20s} {total:6.2f} s  {len(paths) / total:6.0f} masks/s  x{bare / total:.2f} of bare loop"
              f"  | fixed overhead {overhead:5.2f} s, net {len(paths) / net:6.0f} masks/s x{bare / net:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
