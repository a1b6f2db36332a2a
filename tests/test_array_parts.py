"""A large JSON array (a Label Studio export) is cut into parts at element boundaries and read by
several workers: the records, their ids, line numbers and offsets, the dead letters and the
run's totals are exactly those of reading it whole."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds

from benchmarks.label_studio_convert import write_export
from pipelines.normalize_manifests import run
from transforms.read_layout import JSON_ARRAY_PART
from transforms.shards import Shard
from transforms.stages.read import _PlanShardsFn
from transforms.storage import Storage


def _records(out: Path) -> list[dict]:
    table = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table(columns=["record_id", "source", "objects"])
    return sorted(table.to_pylist(), key=lambda row: row["record_id"])


def _dead_letters(out: Path) -> list[tuple]:
    letters = []
    for path in sorted((out / "errors").rglob("*.jsonl")):
        letters += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted((d["code"], d["line"], d["offset"]) for d in letters)


def test_the_planner_cuts_an_array_into_parts_at_element_starts(tmp_path):
    path = tmp_path / "export.json"
    write_export(str(path), 300)
    planner = _PlanShardsFn(None, 64 << 10, Storage())
    shards = [o for o in planner.process((str(path), path.stat().st_size)) if isinstance(o, Shard)]
    data = path.read_bytes()
    assert len(shards) > 5 and all(s.layout == JSON_ARRAY_PART for s in shards)
    assert [s.line_base for s in shards] == [sum(t.counted_lines for t in shards[:i]) for i in range(len(shards))]
    assert sum(s.counted_lines for s in shards) == 300
    assert all(data[s.start : s.start + 1] == b"{" and data[s.end - 1 : s.end] == b"}" for s in shards)


def test_an_array_read_in_parts_by_two_workers_equals_reading_it_whole(tmp_path):
    export = tmp_path / "export.json"
    write_export(str(export), 400)
    # damage three tasks inside the array (still valid JSON), pretty-print one: a dead letter each
    tasks = json.loads(export.read_text())
    tasks[10], tasks[201] = "not a task", ["nor", "this"]
    tasks[333]["data"] = 7
    tasks[50] = json.loads(json.dumps(tasks[50]))
    export.write_text("[" + ",\n".join(json.dumps(t, indent=2 if i == 50 else None) for i, t in enumerate(tasks)) + "]")
    common = ["--input", str(export), "--validate_masks=false", "--output_format=sagemaker"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run(["--output", str(whole), "--runner=FnApiRunner", *common]) in (0, 1)
    assert run(["--output", str(parts), "--runner=FnApiRunner", "--direct_running_mode=multi_processing",
                "--direct_num_workers=2", "--shard_size=40KB", *common]) in (0, 1)
    expected, got = _records(whole), _records(parts)
    assert len(got) == len(expected) == 397
    assert got == expected
    assert len(_dead_letters(whole)) == 3
    assert _dead_letters(parts) == _dead_letters(whole)
    summary_whole, summary_parts = (json.loads((o / "run.json").read_text()) for o in (whole, parts))
    assert summary_parts["totals"] == summary_whole["totals"]
    assert summary_parts["outputs"]["records"]["landed"] == summary_whole["outputs"]["records"]["landed"] == len(expected)
