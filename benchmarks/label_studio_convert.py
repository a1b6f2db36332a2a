"""Label Studio export -> Ground Truth manifest: labelbeam beside panlabel and label-studio-sdk.

    python -m benchmarks.label_studio_convert [--tasks 50000] [--repeats 3] [--workdir DIR]
                                              [--cases inproc,mp2,panlabel,sdk_coco]

The target: a 50,000-task export with 8 rectangles per task converted to a Ground Truth
manifest faster than panlabel, at least 5x faster than label-studio-sdk's converter to COCO,
and at lower peak memory than panlabel. (The issue estimated the export at about 108 MB; with
full-precision coordinates and the bookkeeping fields of a real export it is about 170 MB.)

It writes (once, reused) a Label Studio JSON-array export of --tasks tasks, one annotation of
8 `rectanglelabels` results each, shaped as Label Studio writes them, then runs every case as
a child process (so that all are measured the same way):

- inproc: `labelbeam ... --output_format sagemaker --runner=FnApiRunner` (one process)
- mp2: the same with `--direct_running_mode=multi_processing --direct_num_workers=2`
- panlabel: `panlabel convert --from label-studio --to sagemaker` (Rust, one process)
- sdk_coco: label_studio_sdk.converter.Converter(...).convert(..., "COCO") (pure Python)

Wall time, CPU seconds of the process tree (wait4: the case's process and the workers it
reaped) and peak RSS of the tree (the case's process and all its descendants, summed, sampled
every 0.1 s, so a run much shorter than that is under-sampled; the largest single process is
shown too) are medians over --repeats. Each case's output is read back and counted (images /
lines and boxes), so the table shows they converted the same boxes. A case whose tool is not
installed, that fails or whose output cannot be read is reported as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib.util import find_spec

from benchmarks.peak_rss import run_measured

BOXES = 8
CLASSES = ("car", "truck", "bus", "person", "bicycle", "traffic_light")
WIDTH, HEIGHT = 1920, 1080
_LABELS = "".join(f'<Label value="{name}"/>' for name in CLASSES)
LABEL_CONFIG = f'<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">{_LABELS}</RectangleLabels></View>'

_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"


def task(i: int, rng: random.Random) -> dict:
    """One task as Label Studio 1.x exports it: 1 annotation, BOXES rectangles in percent."""
    results = []
    for _ in range(BOXES):
        x, y = rng.uniform(0, 85), rng.uniform(0, 85)
        results.append({
            "original_width": WIDTH, "original_height": HEIGHT, "image_rotation": 0,
            "value": {"x": x, "y": y, "width": rng.uniform(1, 100 - x), "height": rng.uniform(1, 100 - y),
                      "rotation": 0, "rectanglelabels": [rng.choice(CLASSES)]},
            "id": "".join(rng.choices(_ID_CHARS, k=10)), "from_name": "label", "to_name": "image",
            "type": "rectanglelabels", "origin": "manual",
        })  # fmt: skip
    stamp = f"2024-05-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(7 * i) % 60:02d}.{i % 999999:06d}Z"
    return {
        "id": i, "annotations": [{
            "id": i, "completed_by": 1 + i % 5, "result": results, "was_cancelled": False,
            "ground_truth": False, "created_at": stamp, "updated_at": stamp, "lead_time": round(rng.uniform(5, 300), 3),
            "prediction": {}, "result_count": 0, "task": i, "project": 1,
            "parent_prediction": None, "parent_annotation": None,
        }],
        "drafts": [], "predictions": [], "data": {"image": f"/data/upload/1/{i:08x}-frame_{i:06d}.jpg"},
        "meta": {}, "created_at": stamp, "updated_at": stamp, "inner_id": i, "total_annotations": 1,
        "cancelled_annotations": 0, "total_predictions": 0, "project": 1, "updated_by": 1,
    }  # fmt: skip


def rectangles_task(i: int, rng: random.Random) -> dict:
    """A task of 0 to 8 rectangles, sometimes with another data field or integer coordinates:
    the shape the format's columnar fast path claims (tests/test_fast_normalize.py)."""
    obj = task(i, rng)
    results = obj["annotations"][0]["result"][: rng.randrange(1, BOXES + 1)]
    for result in results:
        if rng.random() < 0.2:
            result["value"]["x"] = int(result["value"]["x"])  # an integer, the box still inside
    obj["annotations"][0]["result"] = results
    if rng.random() < 0.3:
        obj["data"]["caption"] = f"frame {i}"
    return obj


def polygons_task(i: int, rng: random.Random) -> dict:
    """A task of polygons (3 to 8 points, inside the image), some beside rectangles."""
    obj = rectangles_task(i, rng)
    for result in obj["annotations"][0]["result"]:
        if rng.random() < 0.7:
            cx, cy, r = rng.uniform(20, 80), rng.uniform(20, 80), rng.uniform(1, 19)
            points = []
            for k in range(rng.randrange(3, 9)):
                angle = 2 * math.pi * k / 8 + rng.uniform(0, 0.5)
                points.append([cx + r * math.cos(angle), cy + r * math.sin(angle)])
            if rng.random() < 0.2:
                points[0] = [int(points[0][0]), int(points[0][1])]
            label = result["value"]["rectanglelabels"]
            result["type"] = "polygonlabels"
            result["value"] = {"points": points, "closed": True, "polygonlabels": label}
    return obj


def choices_task(i: int, rng: random.Random) -> dict:
    """A task classified with `choices` (one or several, sometimes scored), alone or beside
    rectangles: image labels."""
    obj = rectangles_task(i, rng) if rng.random() < 0.3 else empty_annotation_task(i, rng)
    choice = {"value": {"choices": rng.sample(CLASSES, rng.choice([1, 1, 2]))}, "id": f"c{i}", "from_name": "scene",
              "to_name": "image", "type": "choices", "origin": "manual"}  # fmt: skip
    if rng.random() < 0.3:
        choice["score"] = rng.choice([0.5, rng.random(), 1])
    obj["annotations"][0]["result"].insert(rng.randrange(len(obj["annotations"][0]["result"]) + 1), choice)
    return obj


def empty_annotation_task(i: int, rng: random.Random) -> dict:
    """A task whose one annotation has no results (an image reviewed and left empty)."""
    obj = task(i, rng)
    obj["annotations"][0]["result"] = []
    return obj


#: shape name -> (i, rng) -> one Label Studio task (the fast path's differential test)
LABEL_STUDIO_SHAPES = {"rectangles": rectangles_task, "polygons": polygons_task, "choices": choices_task, "empty_annotation": empty_annotation_task}


def write_export(path: str, tasks: int, seed: int = 7) -> None:
    """Streams the JSON array to disk task by task, so generating 50,000 needs little memory."""
    rng = random.Random(seed)
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write("[")
        for i in range(1, tasks + 1):
            handle.write(("" if i == 1 else ",\n") + json.dumps(task(i, rng)))
        handle.write("]\n")
    os.replace(partial, path)


# -- counting what each tool wrote ------------------------------------------------------


def count_manifest(paths: list[str]) -> tuple[int, int, set[int]]:
    """Ground Truth object-detection lines: (lines, boxes, set of boxes-per-line)."""
    lines, boxes, per_line = 0, 0, set()
    for path in paths:
        with open(path, "rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                obj = json.loads(line)
                n = sum(len(v["annotations"]) for v in obj.values() if isinstance(v, dict) and isinstance(v.get("annotations"), list))
                lines, boxes = lines + 1, boxes + n
                per_line.add(n)
    return lines, boxes, per_line


def count_coco(path: str) -> tuple[int, int, set[int]]:
    with open(path, encoding="utf-8") as handle:
        coco = json.load(handle)
    per_image = {image["id"]: 0 for image in coco["images"]}
    for annotation in coco["annotations"]:
        per_image[annotation["image_id"]] = per_image.get(annotation["image_id"], 0) + 1
    return len(coco["images"]), len(coco["annotations"]), set(per_image.values())


# -- the cases ---------------------------------------------------------------------------


def _labelbeam(export: str, out: str, extra: list[str]) -> tuple[list[str], Callable[[], tuple]]:
    argv = [sys.executable, "-m", "pipelines.cli", "--input", export, "--output", out, "--output_format", "sagemaker",
            "--runner=FnApiRunner", "--validate_masks=false", "--quiet", *extra]  # fmt: skip
    return argv, lambda: count_manifest(sorted(glob.glob(os.path.join(out, "manifests", "sagemaker", "**", "*.manifest"), recursive=True)))


def _panlabel_bin() -> str | None:
    """panlabel's wheel puts the binary beside the interpreter, which may not be on PATH."""
    return shutil.which("panlabel", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))


def _panlabel(export: str, out: str) -> tuple[list[str], Callable[[], tuple]]:
    os.makedirs(out, exist_ok=True)
    manifest = os.path.join(out, "output.manifest")
    argv = [_panlabel_bin() or "panlabel", "convert", "--from", "label-studio", "--to", "sagemaker",
            "--input", export, "--output", manifest, "--allow-lossy"]  # fmt: skip
    return argv, lambda: count_manifest([manifest])


def _sdk_coco(export: str, out: str) -> tuple[list[str], Callable[[], tuple]]:
    argv = [sys.executable, "-m", "benchmarks.label_studio_convert", "--sdk-coco", export, out]
    return argv, lambda: count_coco(os.path.join(out, "result.json"))


def sdk_coco(export: str, out: str) -> None:
    """What Label Studio's own export to COCO runs (download_resources is off for COCO)."""
    from label_studio_sdk.converter import Converter

    Converter(config=LABEL_CONFIG, project_dir=None, download_resources=False).convert(export, out, "COCO", is_dir=False)


def _missing(key: str) -> str | None:
    """Why a case cannot run here, or None."""
    if key == "panlabel" and not _panlabel_bin():
        return "panlabel is not installed (pip install panlabel, or .[bench])"
    if key == "sdk_coco" and find_spec("label_studio_sdk") is None:
        return "label-studio-sdk is not installed (.[test])"
    return None


def measure(argv: list[str], log: str) -> dict:
    """Runs argv to completion. wait4 gives the CPU of the child and of every process it
    reaped (its workers). Its ru_maxrss is not used: Linux carries the forking parent's RSS
    across exec into it, so a small tool started from this process would show this size."""
    run = run_measured(argv, log)
    return {
        "exit": run["exit"],
        "wall": run["wall"],
        "cpu": run["cpu"],
        "rss_mib": run["peak_tree_mb"],
        "largest_mib": run["peak_process_mb"],
    }


CASES = {
    "inproc": ("labelbeam, FnApiRunner in process -> sagemaker", lambda e, o, x: _labelbeam(e, o, x)),
    "mp2": (
        "labelbeam, FnApiRunner multi_processing x2 -> sagemaker",
        lambda e, o, x: _labelbeam(e, o, [*x, "--direct_running_mode=multi_processing", "--direct_num_workers=2"]),
    ),
    "panlabel": ("panlabel convert label-studio -> sagemaker", lambda e, o, x: _panlabel(e, o)),
    "sdk_coco": ("label-studio-sdk Converter -> COCO", lambda e, o, x: _sdk_coco(e, o)),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--workdir", default=None, help="where the export and outputs go (default: a new temp dir)")
    parser.add_argument("--labelbeam_extra", default="", help="more labelbeam flags, space separated, e.g. --sagemaker_classes=car,bus")
    parser.add_argument("--sdk-coco", nargs=2, metavar=("EXPORT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sdk_coco:
        return sdk_coco(*args.sdk_coco)
    workdir = args.workdir or tempfile.mkdtemp(prefix="labelbeam-lsconvert-")
    os.makedirs(workdir, exist_ok=True)
    export = os.path.join(workdir, f"label-studio-{args.tasks}x{BOXES}.json")
    if not os.path.exists(export):
        write_export(export, args.tasks)
    panlabel = _panlabel_bin()
    panlabel_version = subprocess.run([panlabel, "--version"], capture_output=True, text=True).stdout.strip() if panlabel else "no panlabel"
    print(f"input: {export}, {args.tasks:,} tasks x {BOXES} rectangles, {os.path.getsize(export) / 1e6:.1f} MB; "
          f"cpus={os.cpu_count()}, python {sys.version.split()[0]}, {panlabel_version}", flush=True)  # fmt: skip
    extra = args.labelbeam_extra.split()
    keys = args.cases.split(",")
    unknown = set(keys) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; known: {','.join(CASES)}")
    runs: dict[str, list[dict]] = {key: [] for key in keys}
    counts: dict[str, tuple] = {}
    skipped = {key: why for key in keys if (why := _missing(key))}
    for repeat in range(args.repeats):
        for key in keys:
            if key in skipped:
                continue
            out = os.path.join(workdir, f"out-{key}")
            shutil.rmtree(out, ignore_errors=True)
            command, count = CASES[key][1](export, out, extra)
            m = measure(command, os.path.join(workdir, f"{key}.log"))
            if m["exit"] != 0:
                skipped[key] = f"exit {m['exit']}, see {os.path.join(workdir, key + '.log')}"
                continue
            try:
                counts[key] = count()
            except (OSError, ValueError, KeyError) as error:
                skipped[key] = f"output not readable: {error!r}"
                continue
            runs[key].append(m)
            print(f"  repeat {repeat + 1}: {key}: {m['wall']:.2f}s wall, {m['cpu']:.2f}s cpu, {m['rss_mib']:.0f} MiB, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    base = statistics.median(r["wall"] for r in runs["inproc"]) if runs.get("inproc") else None
    print("\n| case | median wall | median CPU s | peak RSS MiB, tree | largest process MiB | wall vs labelbeam in process | images / lines | boxes | boxes per image |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in keys:
        if key in skipped or not runs[key]:
            print(f"| {CASES[key][0]} | skipped: {skipped.get(key, 'no run')} | | | | | | | |")
            continue
        wall, cpu, rss, largest = (statistics.median(r[k] for r in runs[key]) for k in ("wall", "cpu", "rss_mib", "largest_mib"))
        images, boxes, per = counts[key]
        ok = images == args.tasks and boxes == args.tasks * BOXES and per == {BOXES}
        ratio = f"{wall / base:.3g}x" if base else "-"
        spread = ",".join(map(str, sorted(per))) + ("" if ok else " CHECK FAILED")
        print(f"| {CASES[key][0]} | {wall:.2f} s | {cpu:.1f} | {rss:,.0f} | {largest:,.0f} | {ratio} | {images:,} | {boxes:,} | {spread} |")
    for key in keys:
        shutil.rmtree(os.path.join(workdir, f"out-{key}"), ignore_errors=True)
    print(f"\nexport and logs kept in {workdir}")

if __name__ == "__main__":
    main()
