"""ComputeStatistics: the CombineFn in three orders, its figures against a plain count."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from pipelines.normalize_manifests import run
from transforms import errors
from transforms.formats.base import ParseContext, get_format
from transforms.schema import rows_to_batch
from transforms.stages.split import DEFAULT_RATIOS, SplitAssigner
from transforms.stages.stats import StatisticsCombineFn
from transforms.statistics import COUNT_MEASURES, LOG_BIN_RATIO, QUANTILES

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


def sample_batches() -> list:
    """Canonical batches of every sample format, split assigned, a few rows each."""
    rows = []
    for fmt_name, pattern in (("sagemaker", "sagemaker/*.jsonl"), ("sagemaker", "sagemaker/lookout-for-vision.manifest"), ("azure_automl", "azure_automl/mixed_tasks.jsonl")):
        fmt = get_format(fmt_name)
        for path in sorted(SAMPLES.glob(pattern)):
            ctx = ParseContext(uri=str(path), base_uri=str(path.parent))
            for line in path.read_bytes().splitlines():
                for row in fmt.parse(orjson.loads(line), ctx).rows:
                    row["record_id"] = str(len(rows))
                    rows.append(row)
    assigner = SplitAssigner(DEFAULT_RATIOS)
    return [assigner.assign_batch(rows_to_batch(rows[i : i + 3])) for i in range(0, len(rows), 3)]


def _rounded(value):
    """Float sums differ in their last bits with the order they were added in: 12 digits."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def as_dicts(tables):
    return {name: [_rounded(row) for row in table.to_pylist()] for name, table in sorted(tables.items())}


def test_add_merge_and_compact_orders_agree():
    fn = StatisticsCombineFn()
    batches = sample_batches()
    one = fn.create_accumulator()
    for batch in batches:
        one = fn.add_input(one, batch)
    sequential = fn.extract_output(one)
    parts = []
    for start in range(0, len(batches), 2):
        acc = fn.create_accumulator()
        for batch in batches[start : start + 2]:
            acc = fn.add_input(acc, batch)
        parts.append(fn.compact(acc))
    merged = fn.extract_output(fn.merge_accumulators(parts[::-1]))
    assert as_dicts(merged) == as_dicts(sequential)
    compacted = fn.extract_output(fn.compact(fn.merge_accumulators([fn.compact(p) for p in parts])))
    assert as_dicts(compacted) == as_dicts(sequential)


def combine(items, order):
    """The CombineFn over `items` in one of three orders: sequential, pairs merged in reverse,
    and every item alone then merged and compacted in a shuffled order."""
    fn = StatisticsCombineFn()
    if order == "sequential":
        acc = fn.create_accumulator()
        for item in items:
            acc = fn.add_input(acc, item)
        return fn.extract_output(acc)
    if order == "pairs_reversed":
        parts = []
        for start in range(0, len(items), 2):
            acc = fn.create_accumulator()
            for item in items[start : start + 2]:
                acc = fn.add_input(acc, item)
            parts.append(fn.compact(acc))
        return fn.extract_output(fn.merge_accumulators(parts[::-1]))
    singles = [fn.add_input(fn.create_accumulator(), item) for item in items]
    np.random.default_rng(7).shuffle(singles)
    halves = [fn.merge_accumulators(singles[: len(singles) // 2]), fn.merge_accumulators(singles[len(singles) // 2 :])]
    return fn.extract_output(fn.compact(fn.merge_accumulators(halves[::-1])))


def synthetic_items(n_rows=400, seed=3):
    """Record batches with random boxes, polygons, masks, annotators, and dead-letter lists."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_rows):
        width, height = int(rng.integers(32, 4000)), int(rng.integers(32, 4000))
        objects = []
        for _ in range(int(rng.integers(0, 6))):
            x, y = rng.uniform(0, 0.5, 2)
            w, h = rng.uniform(0.001, 0.5, 2)
            ring = list(rng.uniform(0, 1, 2 * int(rng.integers(3, 9))))
            objects.append({"label": str(rng.choice(["car", "cat", "dog"])), "score": float(rng.uniform()) if i % 2 else None,
                            "bbox": {"x_min": x, "y_min": y, "x_max": x + w, "y_max": y + h}, "polygon": [ring]})
        mask = None
        if i % 5 == 0:
            mask = {"uri": f"s3://b/m{i}.png", "width": width, "height": height, "validated": True,
                    "class_pixels": [{"class_name": "scratch", "pixels": int(rng.integers(1, width * height // 4))}]}
        rows.append({
            "record_id": str(i), "source": {"uri": f"s3://b/in{i % 3}.jsonl", "line": i + 1, "format": "sagemaker"},
            "image": {"uri": f"s3://b/{i}.jpg", "width": width, "height": height if i % 7 else None},
            "task": "object_detection", "origin": "ground_truth", "objects": objects, "mask": mask,
            "split": str(rng.choice(["train", "validation", "test"])),
            "annotation": {"job_name": f"job-{i % 2}", "annotator": "auto" if i % 4 else "alice", "human_annotated": i % 4 == 0},
            "issues": [{"code": errors.BBOX_INVERTED, "severity": "warning", "message": f"m{i}"}] if i % 9 == 0 else [],
        })
    items = [rows_to_batch(rows[i : i + 37]) for i in range(0, len(rows), 37)]
    letters = [{"source_uri": f"s3://b/in{j % 2}.jsonl", "line": 1000 - j, "stage": "normalize", "code": errors.INVALID_JSON,
                "message": f"bad {j}", "raw": "{"} for j in range(25)]
    items += [letters[:10], letters[10:]]
    return rows, items


@pytest.mark.parametrize("order", ["pairs_reversed", "singles_shuffled"])
def test_three_merge_orders_give_equal_tables(order):
    _, items = synthetic_items()
    assert as_dicts(combine(items, order)) == as_dicts(combine(items, "sequential"))


def test_histograms_and_quantiles_against_numpy():
    rows, items = synthetic_items()
    tables = combine(items, "singles_shuffled")
    boxes = [(r, o) for r in rows for o in r["objects"]]
    values = {
        ("box_width", "car"): [o["bbox"]["x_max"] - o["bbox"]["x_min"] for _, o in boxes if o["label"] == "car"],
        ("box_area", "dog"): [(o["bbox"]["x_max"] - o["bbox"]["x_min"]) * (o["bbox"]["y_max"] - o["bbox"]["y_min"]) for _, o in boxes if o["label"] == "dog"],
        ("box_aspect", "cat"): [((o["bbox"]["x_max"] - o["bbox"]["x_min"]) * r["image"]["width"]) / ((o["bbox"]["y_max"] - o["bbox"]["y_min"]) * r["image"]["height"])
                                for r, o in boxes if o["label"] == "cat" and r["image"]["height"]],
        ("objects_per_image", ""): [len(r["objects"]) for r in rows],
        ("polygon_vertices", "car"): [len(o["polygon"][0]) // 2 for _, o in boxes if o["label"] == "car"],
        ("mask_coverage", "scratch"): [r["mask"]["class_pixels"][0]["pixels"] / (r["mask"]["width"] * r["mask"]["height"]) for r in rows if r["mask"]],
        ("image_height", ""): [r["image"]["height"] for r in rows if r["image"]["height"]],
    }
    got = {(q["measure"], q["name"]): q for q in tables["quantiles"].to_pylist()}
    histograms = tables["histograms"].to_pylist()
    for (measure, name), vals in values.items():
        q = got[(measure, name)]
        assert q["count"] == len(vals) == sum(h["count"] for h in histograms if (h["measure"], h["name"]) == (measure, name))
        assert q["min"] == pytest.approx(min(vals)) and q["max"] == pytest.approx(max(vals))
        assert q["mean"] == pytest.approx(float(np.mean(vals)))
        for p in QUANTILES:
            true = float(np.quantile(vals, p, method="inverted_cdf"))
            estimate = q[f"p{round(p * 100):02d}"]
            if measure in COUNT_MEASURES:
                assert estimate == true
            else:
                assert true / LOG_BIN_RATIO <= estimate <= true * LOG_BIN_RATIO, (measure, name, p)
    for h in histograms:
        assert h["lower"] <= h["min"] <= h["max"] < h["upper"] * (1 + 1e-9)


def test_classes_masks_annotation_and_letters():
    rows, items = synthetic_items()
    tables = combine(items, "pairs_reversed")
    classes = tables["classes"].to_pylist()
    for split in ("train", "test"):
        in_split = [r for r in rows if r["split"] == split]
        images = sum(1 for r in in_split if any(o["label"] == "dog" for o in r["objects"]))
        dog = next(c for c in classes if c["split"] == split and c["name"] == "dog")
        assert dog["images"] == images
        assert dog["image_share"] == pytest.approx(images / len(in_split))
        objects = sum(len(r["objects"]) for r in in_split)
        assert dog["share"] == pytest.approx(sum(o["label"] == "dog" for r in in_split for o in r["objects"]) / objects)
        scores = [o["score"] for r in in_split for o in r["objects"] if o["label"] == "dog" and o["score"] is not None]
        assert dog["mean_score"] == pytest.approx(float(np.mean(scores)), rel=1e-5)
    masks = {m["split"]: m for m in tables["masks"].to_pylist()}
    assert sum(m["masks"] for m in masks.values()) == sum(1 for r in rows if r["mask"]) == sum(m["measured"] for m in masks.values())
    annotation = {(a["job_name"], a["annotator"]): a["records"] for a in tables["annotation"].to_pylist()}
    assert annotation == Counter((r["annotation"]["job_name"], r["annotation"]["annotator"]) for r in rows)
    letters = {letter["uri"]: letter for letter in tables["dead_letters"].to_pylist()}
    assert letters["s3://b/in0.jsonl"]["count"] == 13 and letters["s3://b/in1.jsonl"]["count"] == 12
    assert letters["s3://b/in1.jsonl"]["example_line"] == 1000 - 23 and letters["s3://b/in1.jsonl"]["example_message"] == "bad 23"
    assert letters["s3://b/in0.jsonl"]["group"] == "input"
    issues = tables["issues"].to_pylist()
    assert sum(i["count"] for i in issues) == sum(len(r["issues"]) for r in rows)
    assert {i["stage"] for i in issues} == {errors.NORMALIZE}
    files = {f["uri"]: f["records"] for f in tables["files"].to_pylist()}
    assert files == Counter(r["source"]["uri"] for r in rows)


def test_figures_match_a_plain_count():
    batches = sample_batches()
    rows = [row for batch in batches for row in batch.to_pylist()]
    fn = StatisticsCombineFn()
    acc = fn.create_accumulator()
    for batch in batches:
        acc = fn.add_input(acc, batch)
    tables = fn.extract_output(acc)
    summary = tables["summary"].to_pylist()
    assert sum(r["records"] for r in summary) == len(rows)
    assert sum(r["objects"] for r in summary) == sum(len(r["objects"] or []) for r in rows)
    want = Counter((r["split"], r["task"], o["label"]) for r in rows for o in r["objects"] or [])
    got = Counter({(c["split"], c["task"], c["name"]): c["count"] for c in tables["classes"].to_pylist() if c["kind"] == "object"})
    assert got == want
    widths = [r["image"]["width"] for r in rows if r["image"]["width"] is not None]
    assert min(r["min_width"] for r in summary if r["min_width"] is not None) == min(widths)


@pytest.mark.e2e
def test_job_writes_statistics(tmp_path):
    out = tmp_path / "out"
    assert run(["--input", str(SAMPLES / "sagemaker" / "*.manifest"), "--output", str(out), "--runner=FnApiRunner"]) == 0
    summary = pq.read_table(out / "stats" / "summary.parquet").to_pylist()
    records = sum(r["records"] for r in summary)
    assert records == json.loads((out / "run.json").read_text())["totals"]["records_written"]
    run_json = json.loads((out / "run.json").read_text())
    inputs = pq.read_table(out / "stats" / "inputs.parquet").to_pylist()
    assert [(i["uri"], i["lines"], i["dead_letters"]) for i in inputs] == [(f["uri"], f["lines"], f["dead_letters"]) for f in run_json["files"]]
    letters = pq.read_table(out / "stats" / "dead_letters.parquet").to_pylist()
    assert sum(letter["count"] for letter in letters) == run_json["outputs"]["errors"]["landed"]
    for name in ("classes", "issues", "histograms", "quantiles", "masks", "annotation", "files"):
        assert (out / "stats" / f"{name}.parquet").exists()
