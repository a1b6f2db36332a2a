"""ComputeStatistics: the CombineFn in three orders, its figures against a plain count."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from pipelines.normalize_manifests import run
from transforms.formats.base import ParseContext, get_format
from transforms.schema import rows_to_batch
from transforms.stages.split import DEFAULT_RATIOS, SplitAssigner
from transforms.stages.stats import StatisticsCombineFn

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


def as_dicts(tables):
    return {name: table.to_pylist() for name, table in sorted(tables.items())}


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


def test_job_writes_statistics(tmp_path):
    out = tmp_path / "out"
    assert run(["--input", str(SAMPLES / "sagemaker" / "*.manifest"), "--output", str(out), "--runner=FnApiRunner"]) == 0
    summary = pq.read_table(out / "stats" / "summary.parquet").to_pylist()
    records = sum(r["records"] for r in summary)
    assert records == json.loads((out / "run.json").read_text())["totals"]["records_written"]
    assert (out / "stats" / "classes.parquet").exists() and (out / "stats" / "issues.parquet").exists()
