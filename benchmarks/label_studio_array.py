"""Peak memory and speed of streaming a >= 1 GB Label Studio JSON-array export.

    python -m benchmarks.label_studio_array [--gigabytes 1.0] [--chunk-size 1048576]

Writes a synthetic export (one JSON array, tasks with rotated and plain rectangles,
polygons, choices, brush masks, predictions, a cancelled annotation now and then) to
benchmarks/data/label_studio_export.json (git-ignored; reused when already big enough), then
measures, each in a fresh child process: RSS after the imports, the largest RSS sampled while
reading (every 1000 elements), and the process's peak RSS (getrusage):
  baseline       the child imports everything and reads nothing (the RSS floor)
  scan           transforms.json_array.iter_json_array over the whole file
  scan_parse     the same + orjson.loads + the label_studio plugin's parse, rows gathered into
                 Arrow RecordBatches of 1000 rows as the pipeline does
  json_load_50mb json.load of the file's first ~50 MB re-closed as an array: what holding the
                 whole document costs, for comparison
and prints the file size, elements, seconds, MB/s and peak RSS of each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / "data"
EXPORT = DATA / "label_studio_export.json"
W, H = 1280, 720


def _brush_rle(rng: np.random.Generator) -> list[int]:
    from label_studio_sdk.converter.brush import encode_rle

    yy, xx = np.mgrid[:72, :128]
    cy, cx, r = rng.integers(20, 52), rng.integers(20, 108), rng.integers(6, 18)
    alpha = np.clip((r - np.hypot(yy - cy, xx - cx)) * 128, 0, 255).astype(np.uint8)
    rgba = np.zeros((72, 128, 4), np.uint8)
    rgba[..., 0] = np.where(alpha > 0, 255, 0)
    rgba[..., 3] = alpha
    return encode_rle(rgba.ravel())


def _task(i: int, rng: np.random.Generator, rles: list[list[int]]) -> dict:
    def region(rid, kind, value, size=(W, H)):
        return {"id": rid, "type": kind, "value": value, "from_name": "label", "to_name": "image",
                "original_width": size[0], "original_height": size[1], "image_rotation": 0, "origin": "manual"}  # fmt: skip

    results = []
    for k in range(int(rng.integers(1, 6))):
        x, y = (float(v) for v in rng.uniform(0, 80, 2))
        results.append(region(f"r{i}_{k}", "rectanglelabels", {
            "x": x, "y": y, "width": float(rng.uniform(2, 20)), "height": float(rng.uniform(2, 20)),
            "rotation": float(rng.choice([0, 0, 0, 12.5, 90])), "rectanglelabels": [str(rng.choice(["car", "bus", "person"]))]}))  # fmt: skip
    if i % 3 == 0:
        points = [
            [float(a), float(b)] for a, b in rng.uniform(5, 95, (int(rng.integers(4, 30)), 2))
        ]
        results.append(
            region(f"p{i}", "polygonlabels", {"points": points, "polygonlabels": ["road"]})
        )
    if i % 10 == 0:
        results.append(region(f"b{i}", "brushlabels", {"format": "rle", "rle": rles[i % len(rles)], "brushlabels": ["blob"]},
                              size=(128, 72)))  # fmt: skip
    results.append({"id": f"c{i}", "type": "choices", "from_name": "weather", "to_name": "image",
                    "value": {"choices": ["sunny"]}})  # fmt: skip
    annotations = [{"id": 2 * i, "completed_by": {"id": 3, "email": "a@example.com"}, "result": results,
                    "was_cancelled": False, "ground_truth": False, "created_at": "2024-05-01T12:00:00.123456Z",
                    "updated_at": "2024-05-01T12:00:00.123456Z", "lead_time": 31.4, "task": i, "project": 1}]  # fmt: skip
    if i % 50 == 0:
        annotations.append(
            {"id": 2 * i + 1, "completed_by": 4, "result": [], "was_cancelled": True}
        )
    predictions = []
    if i % 4 == 0:
        predictions.append({"id": i, "model_version": "det-1", "score": 0.5, "result": results[:2]})
    return {"id": i, "data": {"image": f"s3://example-bucket/images/{i:08d}.jpg"}, "annotations": annotations,
            "predictions": predictions, "meta": {}, "created_at": "2024-05-01T11:00:00Z", "project": 1}  # fmt: skip


def generate(path: Path, gigabytes: float) -> None:
    """Write tasks until the file passes the size, in blocks; memory stays small."""
    target = int(gigabytes * (1 << 30))
    if path.exists() and path.stat().st_size >= target:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rles = [_brush_rle(rng) for _ in range(16)]
    written, i = 0, 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        out.write(b"[\n")
        while written < target:
            block = [orjson.dumps(_task(i + k, rng, rles)) for k in range(2000)]
            data = (b"" if i == 0 else b",\n") + b",\n".join(block)
            out.write(data)
            written += len(data)
            i += len(block)
        out.write(b"\n]\n")
    tmp.replace(path)


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def _measure(mode: str, path: str, chunk_size: int) -> None:
    """Runs in the child: one measurement, one JSON line on stdout."""
    from transforms import schema
    from transforms.formats.base import ParseContext, get_format
    from transforms.json_array import iter_json_array

    fmt = get_format("label_studio")
    ctx = ParseContext(uri=path, base_uri=str(Path(path).parent))
    elements = rows = 0
    rss_before = max_rss = _current_rss_mb()
    half = os.path.getsize(path) // 2
    max_rss_first_half = None  # flat memory: the first half's maximum equals the whole run's
    started = time.perf_counter()
    if mode == "scan":
        with open(path, "rb") as handle:
            for offset, _raw in iter_json_array(handle, chunk_size=chunk_size):
                elements += 1
                if elements % 1000 == 0:
                    max_rss = max(max_rss, _current_rss_mb())
                if max_rss_first_half is None and offset >= half:
                    max_rss_first_half = max_rss
    elif mode == "scan_parse":
        pending: list[dict] = []
        with open(path, "rb") as handle:
            for offset, raw in iter_json_array(handle, chunk_size=chunk_size):
                elements += 1
                if max_rss_first_half is None and offset >= half:
                    max_rss_first_half = max_rss
                pending.extend(fmt.parse(orjson.loads(raw), ctx).rows)
                if len(pending) >= 1000:
                    rows += schema.rows_to_batch(pending).num_rows
                    pending = []
                    max_rss = max(max_rss, _current_rss_mb())
        rows += schema.rows_to_batch(pending).num_rows
    elif mode == "json_load_50mb":
        with open(path, "rb") as handle:
            head = handle.read(50 << 20)
        head = head[: head.rindex(b"},\n{") + 1] + b"]"
        elements = len(json.loads(head))
        max_rss = max(max_rss, _current_rss_mb())
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mode": mode, "elements": elements, "rows": rows, "seconds": seconds,
                      "rss_before_mb": rss_before, "max_rss_mb": max_rss, "max_rss_first_half_mb": max_rss_first_half, "peak_rss_mb": peak_kb / 1024}))  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--chunk-size", type=int, default=1 << 20)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        _measure(args.measure, str(EXPORT), args.chunk_size)
        return
    started = time.perf_counter()
    generate(EXPORT, args.gigabytes)
    size_mb = EXPORT.stat().st_size / (1 << 20)
    print(
        f"export: {EXPORT.relative_to(REPO)}  {size_mb:,.0f} MB  (ready in {time.perf_counter() - started:.0f} s)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for mode in ("baseline", "scan", "scan_parse", "json_load_50mb"):
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.label_studio_array", "--measure", mode, "--chunk-size", str(args.chunk_size)],
            cwd=REPO, env=env, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        result = json.loads(out.strip().splitlines()[-1])
        read_mb = 50 if mode == "json_load_50mb" else size_mb if mode != "baseline" else 0
        rate = f"{read_mb / result['seconds']:8.1f} MB/s" if read_mb else " " * 13
        print(
            f"{mode:15s} elements {result['elements']:>9,}  rows {result['rows']:>9,}  "
            f"{result['seconds']:7.1f} s {rate}  RSS before {result['rss_before_mb']:6.1f} MB, "
            f"max while reading {result['max_rss_mb']:6.1f} MB"
            + (
                f" (first half {half_mb:6.1f} MB)"
                if (half_mb := result["max_rss_first_half_mb"])
                else ""
            )
            + f", process peak {result['peak_rss_mb']:6.1f} MB"
        )


if __name__ == "__main__":
    main()
