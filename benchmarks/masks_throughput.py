"""Mask checks of the job against a bare Pillow loop over the same PNGs, in one run.

    python -m benchmarks.masks_throughput [--masks 5000] [--repeats 3] [--workdir DIR]

Generates palette PNG masks (1024x768, background + one blob class, as Lookout for Vision
writes them) and a Lookout for Vision manifest naming them, under --workdir (default: a new
temporary folder; never in the repository). Times, medians over --repeats:

- bare: `Image.open(p).load(); im.getcolors()` for every mask, one process, one thread: the
  least a program must do to know which colours a mask holds.
- inproc / mp2: the real CLI with mask checks on, FnApiRunner in process and with two worker
  processes; the same jobs with --validate_masks=false are timed too, so the share of the mask
  checks themselves is shown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import numpy as np
import orjson
import pyarrow.dataset as ds
from PIL import Image

from pipelines.normalize_manifests import run

WIDTH, HEIGHT = 1024, 768
COLOR_MAP = {
    "0": {"class-name": "BACKGROUND", "hex-color": "#ffffff", "confidence": 0.0},
    "1": {"class-name": "scratch", "hex-color": "#2ca02c", "confidence": 0.0},
}
_PALETTE = [255, 255, 255, 0x2C, 0xA0, 0x2C] + [0] * (256 * 3 - 6)


def mask_image(i: int) -> Image.Image:
    """A palette mask: white background, one elliptic blob of #2ca02c."""
    rng = np.random.default_rng(i)
    cy, cx = int(rng.integers(120, HEIGHT - 120)), int(rng.integers(120, WIDTH - 120))
    ry, rx = int(rng.integers(15, 110)), int(rng.integers(15, 110))
    yy, xx = np.ogrid[-ry : ry + 1, -rx : rx + 1]
    pixels = np.zeros((HEIGHT, WIDTH), np.uint8)
    pixels[cy - ry : cy + ry + 1, cx - rx : cx + rx + 1] = ((yy / ry) ** 2 + (xx / rx) ** 2 <= 1).astype(np.uint8)
    image = Image.fromarray(pixels, "P")
    image.putpalette(_PALETTE)
    return image


def corpus(workdir: str, count: int) -> tuple[str, list[str]]:
    """The masks and a manifest of anomaly lines pointing at them (images are not needed)."""
    folder = os.path.join(workdir, "masks")
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"anomaly-{i:05d}.png") for i in range(count)]
    manifest = os.path.join(workdir, f"masks-{count}.manifest")
    with open(manifest, "wb") as handle:
        for i, path in enumerate(paths):
            if not os.path.exists(path):
                mask_image(i).save(path)
            line = {
                "source-ref": f"s3://example-bucket/images/anomaly-{i}.jpg",
                "anomaly-label": 1,
                "anomaly-label-metadata": {"class-name": "anomaly", "type": "groundtruth/image-classification",
                                           "human-annotated": "yes", "creation-date": "2024-03-05T10:11:12.345"},
                "anomaly-mask-ref": path,
                "anomaly-mask-ref-metadata": {"internal-color-map": COLOR_MAP, "type": "groundtruth/semantic-segmentation"},
            }
            handle.write(orjson.dumps(line) + b"\n")
    return manifest, paths


def bare(paths: list[str]) -> int:
    seen = 0
    for path in paths:
        with Image.open(path) as image:
            image.load()
            seen += len(image.getcolors())
    return len(paths)


def job(manifest: str, out: str, validate: bool, extra: list[str]) -> int:
    code = run(["--input", manifest, "--output", out, "--overwrite", "--runner=FnApiRunner",
                f"--validate_masks={'true' if validate else 'false'}", *extra])
    assert code == 0, code
    return ds.dataset(os.path.join(out, "records"), partitioning="hive").count_rows()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--masks", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="labelbeam-masks-")
    manifest, paths = corpus(workdir, args.masks)
    mb = sum(os.path.getsize(p) for p in paths) / 1e6
    print(f"{len(paths)} palette masks {WIDTH}x{HEIGHT} ({mb:.0f} MB), cpus={os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    mp2 = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    out = os.path.join(workdir, "out")
    cases = {
        "bare Pillow loop: open, load, getcolors (1 process)": lambda: bare(paths),
        "labelbeam in process, mask checks on": lambda: job(manifest, out, True, []),
        "labelbeam in process, mask checks off": lambda: job(manifest, out, False, []),
        "labelbeam multi_processing x2, mask checks on": lambda: job(manifest, out, True, mp2),
        "labelbeam multi_processing x2, mask checks off": lambda: job(manifest, out, False, mp2),
    }
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for repeat in range(args.repeats):
        for name, case in cases.items():
            shutil.rmtree(out, ignore_errors=True)
            started = time.perf_counter()
            count = case()
            timings[name].append(time.perf_counter() - started)
            assert count == len(paths), (name, count)
            print(f"  repeat {repeat + 1}: {name}: {timings[name][-1]:.2f}s", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    base = statistics.median(timings[next(iter(cases))])
    print("\n| run | median wall | masks/s | vs bare loop |\n|---|---|---|---|")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} s | {len(paths) / median:,.0f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
