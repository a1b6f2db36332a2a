"""Reading a large COCO instances file: wall, CPU and peak RSS of the job's process tree.

    python -m benchmarks.coco_read [--annotations 1000000] [--per-image 4] [--points 48]
                                   [--workdir DIR] [--extra "--runner=FnApiRunner ..."]
                                   [--pycocotools]

It writes (once, reused) an instances file of --annotations annotations, --per-image on each
image (an image in 20 has none: a negative example), each a polygon of --points points with its
box and area, 8 categories; the file is streamed out as it is generated, never held. At the
defaults 1,000,000 annotations make about 1.1 GB; --points 100 makes about 2 GB. Then it runs
the job (`--format coco`, records/ and `--output_format coco`) in a child process, samples the
resident memory of the child and every process below it every 0.1 s (benchmarks/peak_rss.py),
takes the CPU seconds of the tree from wait4, and checks the counts in run.json: lines =
images + annotations + categories, records = images, no dead letter, and the written COCO
document's annotations = the input's. --pycocotools also loads the input with pycocotools (the
whole file in memory: small sizes only) and checks its counts are the job's.

Prints one Markdown table row (docs/benchmarks.md quotes them).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from benchmarks.peak_rss import run_measured

CATEGORIES = ("car", "truck", "bus", "person", "bicycle", "dog", "cat", "sign")
WIDTH, HEIGHT = 1920, 1080


def generate(path: Path, annotations: int, per_image: int = 4, points: int = 48, seed: int = 7) -> dict:
    """Streams an instances file to `path`; -> its counts."""
    rng = random.Random(seed)
    images = 0
    with open(path, "w") as out:
        out.write('{"info": {"description": "labelbeam benchmark"}, "licenses": [],\n"categories": ')
        out.write(json.dumps([{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(CATEGORIES)]))
        out.write(',\n"annotations": [\n')
        written = 0
        image_id = 0
        while written < annotations:
            image_id += 1
            if image_id % 20 == 0:
                continue  # a negative example: an image with no annotation
            for _ in range(min(per_image, annotations - written)):
                x, y = rng.uniform(0, WIDTH - 300), rng.uniform(0, HEIGHT - 300)
                w, h = rng.uniform(20, 299), rng.uniform(20, 299)
                ring = []
                for k in range(points):  # a polygon inside the box
                    ring += [round(x + w * (k / points), 2), round(y + h * rng.random(), 2)]
                annotation = {"id": written + 1, "image_id": image_id, "category_id": rng.randrange(len(CATEGORIES)) + 1,
                              "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)], "area": round(w * h / 2, 2),
                              "iscrowd": 0, "segmentation": [ring]}  # fmt: skip
                out.write(("," if written else "") + json.dumps(annotation, separators=(",", ":")) + "\n")
                written += 1
        images = image_id
        out.write('],\n"images": [\n')
        for i in range(1, images + 1):
            entry = {"id": i, "file_name": f"images/{i:012d}.jpg", "width": WIDTH, "height": HEIGHT}
            out.write(("," if i > 1 else "") + json.dumps(entry) + "\n")
        out.write("]}\n")
    return {"images": images, "annotations": annotations, "categories": len(CATEGORIES)}


def run_job(source: Path, out: Path, extra: list[str]) -> dict:
    argv = [sys.executable, "-m", "pipelines.normalize_manifests", "--format=coco", "--input", str(source), "--output", str(out),
            "--overwrite", "--output_format=coco", "--validate_masks=false", *extra]  # fmt: skip
    run = run_measured(argv)
    return {key: run[key] for key in ("exit", "wall", "cpu", "peak_tree_mb", "processes", "tail")}


def written_annotations(out: Path) -> int:
    from transforms.formats.coco import annotations_in_file

    total = 0
    for path in (out / "manifests" / "coco").rglob("instances_*.json"):
        with open(path, "rb") as handle:
            total += annotations_in_file(handle)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", type=int, default=1_000_000)
    parser.add_argument("--per-image", type=int, default=4)
    parser.add_argument("--points", type=int, default=48)
    parser.add_argument("--workdir", default="/tmp/labelbeam-coco-read")
    parser.add_argument("--extra", default="--runner=FnApiRunner", help="more job flags, space separated")
    parser.add_argument("--pycocotools", action="store_true", help="also count the input with pycocotools (loads it whole)")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    source = work / f"instances_{args.annotations}_{args.per_image}_{args.points}.json"
    counts_file = source.with_suffix(".counts.json")
    if not counts_file.exists():
        counts_file.write_text(json.dumps(generate(source, args.annotations, args.per_image, args.points)))
    counts = json.loads(counts_file.read_text())
    out = work / "out"
    m = run_job(source, out, args.extra.split())
    summary = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    totals = summary.get("totals", {})
    checks = {
        "lines": totals.get("lines") == counts["images"] + counts["annotations"] + counts["categories"],
        "records": totals.get("records") == counts["images"],
        "dead letters": totals.get("dead_letters") == 0,
        "COCO annotations": m["exit"] == 0 and written_annotations(out) == counts["annotations"],
    }
    if args.pycocotools:
        from pycocotools.coco import COCO

        coco = COCO(str(source))
        checks["pycocotools"] = (len(coco.imgs), len(coco.anns)) == (counts["images"], counts["annotations"]) == (totals.get("records"), totals.get("lines", 0) - len(coco.imgs) - len(coco.cats))
    failed = [name for name, ok in checks.items() if not ok]
    print("| annotations | images | file | exit | wall | CPU (tree) | peak RSS, process tree | processes | checks |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {counts['annotations']:,} | {counts['images']:,} | {source.stat().st_size / 2**20:,.0f} MB | {m['exit']} | {m['wall']:.1f} s | "
        f"{m['cpu']:.1f} s | {m['peak_tree_mb']:,.0f} MB | {m['processes']} | {'all equal' if not failed else 'FAILED: ' + ', '.join(failed) + ' ' + ' '.join(m['tail'])} |"
    )


if __name__ == "__main__":
    main()
