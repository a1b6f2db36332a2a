"""Ground Truth object detection -> records/ + COCO: the job before and after COCO numbered its
categories at assembly instead of re-reading records/, and the memory of assembling one large
COCO document.

    python -m benchmarks.coco_write [--lines 200000] [--repeats 1] [--workdir DIR]
                                    [--before DIR] [--cases records,coco,before]
    python -m benchmarks.coco_write --assemble 1000000     # peak RSS of the assembly alone
    python -m benchmarks.coco_write --writer 50000 --repeats 3   # CPU of the part writer alone

It writes (once, reused) a manifest of --lines Ground Truth object-detection lines (4 boxes a
line, 4 classes, 1920x1080 images), then runs each case as a child process, in process
(`--runner=FnApiRunner`, mask checks off):

- records: the job writing records/ only (what COCO adds is measured against it)
- coco: the job writing records/ and `--output_format coco` (this code)
- before: the same command run on the code in --before (a checkout of an earlier version,
  e.g. `git worktree add /tmp/before <commit>`), skipped without it

Wall, CPU seconds of the process tree (wait4) and its peak RSS (sampled every 0.1 s) are
medians over --repeats; each case's COCO output is counted (images, annotations) from its files.

`--assemble N` measures the finalize step alone: N records (4 boxes each) written through the
COCO part writer into 8 parts, then assembled into one instances file, in a child process;
it prints the peak RSS of that process (ru_maxrss) beside the same for N/10, so a flat memory
shows as two close figures.

`--writer N` measures the COCO part writer alone, in this process: N detection records (4 boxes
with a score each) as RecordBatches of 1,000 rows through the manifest file a bundle writes,
built per batch from the columns (box-only rows) and per record from dicts (the path every
other row takes); CPU seconds are medians over --repeats, and the two parts are compared.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from benchmarks.peak_rss import run_measured

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("car", "truck", "bus", "person")
WIDTH, HEIGHT = 1920, 1080
BOXES = 4


def detection_line(i: int, rng: random.Random, attribute: str = "bounding-box", prefix: str = "s3://example-bucket/images") -> dict:
    """One Ground Truth object-detection line, shaped as a labeling job writes it."""
    annotations, objects = [], []
    for _ in range(BOXES):
        left, top = rng.randint(0, WIDTH - 200), rng.randint(0, HEIGHT - 200)
        annotations.append({"class_id": rng.randrange(len(CLASSES)), "left": left, "top": top,
                            "width": rng.randint(10, 199), "height": rng.randint(10, 199)})  # fmt: skip
        objects.append({"confidence": round(rng.uniform(0.5, 1.0), 2)})
    return {
        "source-ref": f"{prefix}/img-{i:07d}.jpg",
        attribute: {"image_size": [{"width": WIDTH, "height": HEIGHT, "depth": 3}], "annotations": annotations},
        f"{attribute}-metadata": {
            "objects": objects,
            "class-map": {str(k): name for k, name in enumerate(CLASSES)},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
            "creation-date": f"2024-05-{1 + i % 28:02d}T10:{i % 60:02d}:00.000000",
            "job-name": "labeling-job/synthetic-boxes",
        },
    }


def write_detection_manifest(path: str, lines: int, seed: int = 7, prefix: str = "s3://example-bucket/images") -> None:
    rng = random.Random(seed)
    partial = path + ".partial"
    with open(partial, "wb") as handle:
        chunk = []
        for i in range(1, lines + 1):
            chunk.append(orjson.dumps(detection_line(i, rng, prefix=prefix)))
            if len(chunk) >= 10000:
                handle.write(b"\n".join(chunk) + b"\n")
                chunk = []
        if chunk:
            handle.write(b"\n".join(chunk) + b"\n")
    os.replace(partial, path)


def count_coco(folder: str) -> tuple[int, int, int]:
    """(files, images, annotations) of the COCO documents under `folder`."""
    files = sorted(glob.glob(os.path.join(folder, "**", "*.json"), recursive=True))
    return len(files), *document_counts(files)


def document_counts(paths: list[str]) -> tuple[int, int]:
    """(images, annotations) the COCO documents at `paths` hold, each read whole by orjson."""
    images = annotations = 0
    for path in paths:
        with open(path, "rb") as handle:
            document = orjson.loads(handle.read())
        images += len(document["images"])
        annotations += len(document["annotations"])
    return images, annotations


def run_case(argv: list[str], code: Path) -> dict:
    run = run_measured(argv, cwd=code, env=dict(os.environ, PYTHONPATH=str(code)))
    return {"exit": run["exit"], "wall": run["wall"], "cpu": run["cpu"], "peak_mb": run["peak_tree_mb"], "tail": run["tail"][-1:]}


def job_argv(manifest: str, out: str, coco: bool) -> list[str]:
    argv = [sys.executable, "-m", "pipelines.cli", "--input", manifest, "--output", out, "--runner=FnApiRunner",
            "--validate_masks=false", "--quiet", "--overwrite"]  # fmt: skip
    return argv + (["--output_format", "coco"] if coco else [])


def compare(args) -> None:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="coco-write-"))
    work.mkdir(parents=True, exist_ok=True)
    manifest = str(work / f"detection-{args.lines}.manifest")
    if not os.path.exists(manifest):
        write_detection_manifest(manifest, args.lines)
    size_mb = os.path.getsize(manifest) / 2**20
    print(f"{args.lines} Ground Truth detection lines ({size_mb:.0f} MB, {args.lines * BOXES} boxes), {os.cpu_count()} cores")
    cases = {
        "records": (REPO, False),
        "coco": (REPO, True),
        "before": (Path(args.before) if args.before else None, True),
    }
    print("| case | wall s | CPU s | peak RSS MB | COCO files / images / annotations |")
    print("|---|---|---|---|---|")
    for name in args.cases.split(","):
        code, coco = cases[name]
        if code is None:
            print(f"| {name} | skipped: no --before checkout | | | |")
            continue
        runs = []
        for _ in range(args.repeats):
            out = str(work / f"out-{name}")
            runs.append(run_case(job_argv(manifest, out, coco), code))
            if runs[-1]["exit"] != 0:
                break
        if runs[-1]["exit"] != 0:
            print(f"| {name} | failed: exit {runs[-1]['exit']} {runs[-1]['tail']} | | | |")
            continue
        counted = count_coco(os.path.join(out, "manifests", "coco")) if coco else ("-",) * 3
        median = {key: statistics.median(r[key] for r in runs) for key in ("wall", "cpu", "peak_mb")}
        print(f"| {name} | {median['wall']:.1f} | {median['cpu']:.1f} | {median['peak_mb']:.0f} | {' / '.join(map(str, counted))} |", flush=True)


def assemble_in_process(records: int, folder: str) -> dict:
    """N records through the COCO part writer into 8 parts, then one assembled document."""
    from transforms.formats.base import WriteContext
    from transforms.formats.coco import CocoDocument, CocoOptions, assemble, output_categories

    rng = random.Random(3)
    options = CocoOptions()
    parts = []
    per_part = records // 8
    started = time.time()
    for p in range(8):
        path = os.path.join(folder, f"part-{p}")
        summary: dict = {}
        with open(path, "wb") as handle:
            document = CocoDocument(handle, options, summary=summary)
            for start in range(0, per_part, 1000):
                rows = []
                for i in range(p * per_part + start, p * per_part + min(start + 1000, per_part)):
                    objects = [{"label": rng.choice(CLASSES), "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.2, "y_max": 0.3}} for _ in range(BOXES)]
                    rows.append({"record_id": f"r{i}", "image": {"uri": f"s3://b/img-{i}.jpg", "width": WIDTH, "height": HEIGHT}, "objects": objects})
                document.write(rows, WriteContext(options=options))
            document.close()
        parts.append((path, summary))
    written = time.time()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    target = os.path.join(folder, "instances_train.json")
    with open(target, "wb") as out:
        assemble(out, [(lambda path=path: open(path, "rb"), summary) for path, summary in parts], output_categories([s for _, s in parts], options), results=False)
    return {"records": per_part * 8, "write_s": written - started, "assemble_s": time.time() - written,
            "maxrss_before_assembly_mb": rss_before / 1024, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "document_mb": os.path.getsize(target) / 2**20}  # fmt: skip


def assemble_case(records: int) -> None:
    """--assemble N: the assembly in a fresh child process for N/10 and N records."""
    print("| records | document MB | parts written s | assembled s | peak RSS after writing MB | peak RSS after assembly MB |")
    print("|---|---|---|---|---|---|")
    for n in (records // 10, records):
        with tempfile.TemporaryDirectory(prefix="coco-assemble-") as folder:
            code = f"import json; from benchmarks.coco_write import assemble_in_process; print(json.dumps(assemble_in_process({n}, {folder!r})))"
            found = json.loads(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, check=True, text=True).stdout)
        print(f"| {found['records']:,} | {found['document_mb']:.0f} | {found['write_s']:.1f} | {found['assemble_s']:.1f} | "
              f"{found['maxrss_before_assembly_mb']:.0f} | {found['maxrss_mb']:.0f} |", flush=True)  # fmt: skip


def writer_rows(records: int, seed: int = 5) -> list:
    """`records` Ground Truth detection records as the normalizer gives them (4 boxes with a
    score each, image size known), as RecordBatches of 1,000 rows."""
    from transforms import schema

    rng = random.Random(seed)
    batches = []
    for start in range(0, records, 1000):
        rows = []
        for i in range(start, min(start + 1000, records)):
            objects = []
            for _ in range(BOXES):
                left, top = rng.randint(0, WIDTH - 200), rng.randint(0, HEIGHT - 200)
                box = {"x_min": left / WIDTH, "y_min": top / HEIGHT, "x_max": (left + rng.randint(10, 199)) / WIDTH, "y_max": (top + rng.randint(10, 199)) / HEIGHT}
                objects.append({"label": rng.choice(CLASSES), "bbox": box, "score": round(rng.uniform(0.5, 1.0), 2)})
            rows.append({"record_id": f"r{i}", "origin": "ground_truth", "split": "train",
                         "image": {"uri": f"s3://b/img-{i:07d}.jpg", "width": WIDTH, "height": HEIGHT}, "objects": objects})  # fmt: skip
        batches.append(schema.rows_to_batch(rows))
    return batches


def writer_case(records: int, repeats: int) -> None:
    """--writer N: CPU seconds of the COCO part writer alone (transforms/output_files._ManifestFile
    as a bundle drives it) on N records, per RecordBatch from columns and per record from dicts."""
    import io

    from transforms.formats.coco import CocoOptions
    from transforms.output_files import _ManifestFile

    batches = writer_rows(records)
    print(f"| COCO part writer, {records:,} records x {BOXES} boxes | CPU s (median of {repeats}) | us a record |")
    print("|---|---|---|")
    written = {}
    for name in ("per record (dicts)", "per batch (columns)"):
        seconds = []
        for _ in range(repeats):
            handle = io.BytesIO()
            part = _ManifestFile(handle, "coco", CocoOptions())
            if name.startswith("per record"):
                part.document.write_batch = None
            started = time.process_time()
            for batch in batches:
                part.write(batch)
            part.close()
            seconds.append(time.process_time() - started)
            written[name] = handle.getvalue()
        median = statistics.median(seconds)
        print(f"| {name} | {median:.2f} | {median / records * 1e6:.1f} |", flush=True)
    print(f"parts byte-identical: {len(set(written.values())) == 1}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workdir")
    parser.add_argument("--before", help="a checkout of an earlier version to run the same job on")
    parser.add_argument("--cases", default="records,coco,before")
    parser.add_argument("--assemble", type=int, help="measure the assembly of one document of N records instead")
    parser.add_argument("--writer", type=int, help="measure the COCO part writer alone on N records instead")
    args = parser.parse_args(argv)
    if args.writer:
        writer_case(args.writer, args.repeats)
    elif args.assemble:
        assemble_case(args.assemble)
    else:
        compare(args)


if __name__ == "__main__":
    main()
