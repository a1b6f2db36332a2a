"""The CLI on every format family and on the real third-party files, outputs read back."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pyarrow.dataset as ds
import pytest

from pipelines.normalize_manifests import run
from tests.conftest import need_shared_data
from transforms.formats.base import ParseContext, get_format

pytestmark = pytest.mark.e2e  # runs the whole job: deselect with -m "not e2e" for the fast subset

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
RUNNER = "--runner=FnApiRunner"


def records(out: Path):
    return ds.dataset(out / "records", format="parquet", partitioning="hive").to_table()


def summary(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def test_azure_mixed_tasks_are_partitioned_and_written_back_per_task(tmp_path):
    out = tmp_path / "out"
    source = SAMPLES / "azure_automl" / "mixed_tasks.jsonl"
    assert run(["--input", str(source), "--output", str(out), "--output_format=azure_automl", RUNNER]) == 0
    totals = summary(out)["totals"]
    assert totals["dead_letters"] == 0 and totals["reconciled"]
    table = records(out)
    tasks = set(table.column("task").to_pylist())
    assert {"classification", "multilabel_classification", "object_detection", "instance_segmentation"} <= tasks
    fmt = get_format("azure_automl")
    ctx = ParseContext(uri="x", base_uri="/nowhere")
    written = sorted((out / "manifests" / "azure_automl").glob("split=*/task=*/part-*-of-*.jsonl"))
    assert written
    reread = 0
    for path in written:
        task = path.parent.name.removeprefix("task=")
        rows = [r for line in path.read_bytes().splitlines() for r in fmt.parse(orjson.loads(line), ctx).rows]
        assert {r["task"] for r in rows} == {task}, path  # one task per file, as AutoML reads it
        reread += len(rows)
    assert reread == table.num_rows


def test_azure_malformed_lines_are_counted_by_code(tmp_path):
    out = tmp_path / "out"
    assert run(["--input", str(SAMPLES / "azure_automl" / "malformed.jsonl"), "--output", str(out), RUNNER]) == 0
    (entry,) = summary(out)["files"]
    assert entry["format"] == "azure_automl" and entry["reconciled"]
    for code in ("BBOX_OUT_OF_RANGE", "BBOX_INVERTED", "POLYGON_INVALID", "NUMBER_AS_STRING"):
        assert entry["warnings"].get(code, 0) >= 1, code
    assert entry["dead_letters"] == sum(entry["dead_letter_codes"]["normalize"].values()) > 0


def _label_studio_counts(path: Path) -> tuple[int, int]:
    tasks = json.loads(path.read_text())
    tasks = tasks if isinstance(tasks, list) else [tasks]
    annotations = sum(1 for t in tasks for a in t.get("annotations", []) if not a.get("was_cancelled"))
    predictions = sum(len(t.get("predictions", [])) for t in tasks)
    return annotations, predictions


def test_label_studio_real_exports(tmp_path):
    folder = need_shared_data("realdata", "label-studio-sdk-converter-tests")
    out = tmp_path / "out"
    assert run(["--input", str(folder / "*.json"), "--output", str(out), "--output_format=label_studio", RUNNER]) == 0
    report = summary(out)
    assert report["totals"]["dead_letters"] == 0 and report["totals"]["reconciled"]
    table = records(out)
    by_file = {}
    for source, origin in zip(table.column("source").to_pylist(), table.column("origin").to_pylist()):
        counts = by_file.setdefault(Path(source["uri"]).name, [0, 0])
        counts[origin == "prediction"] += 1
    for path in folder.glob("*.json"):
        assert tuple(by_file[path.name]) == _label_studio_counts(path), path.name
    # The Label Studio output is a JSON array Label Studio can import, with a task per row.
    exported = [task for p in (out / "manifests" / "label_studio").rglob("part-*.json") for task in json.loads(p.read_text())]
    assert len(exported) == table.num_rows
    assert all("data" in task and ("annotations" in task or "predictions" in task) for task in exported)


def test_lookout_masks_validate_with_relative_to(tmp_path):
    dataset = need_shared_data("realdata", "lookout-for-vision-getting-started")
    out = tmp_path / "out"
    code = run(["--input", str(dataset / "manifests" / "template.manifest"), "--output", str(out), RUNNER, "--relative_to", str(dataset)])
    assert code == 0
    rows = records(out).to_pylist()
    masked = [r for r in rows if r["mask"]]
    assert len(masked) == 32
    present = {p.name for p in (dataset / "mask-images").glob("*.png")}
    measured = [r for r in masked if Path(r["mask"]["uri"]).name in present]
    assert len(measured) == len(present) == 8
    for row in measured:
        assert row["mask"]["validated"] and row["mask"]["width"] == 576 and row["mask"]["height"] == 768
        assert sum(c["pixels"] for c in row["mask"]["class_pixels"]) > 0
    missing = [r for r in masked if Path(r["mask"]["uri"]).name not in present]
    assert all("MASK_NOT_FOUND" in {i["code"] for i in r["issues"]} for r in missing) and len(missing) == 24
    assert summary(out)["totals"]["warnings_by_code"]["MASK_NOT_FOUND"] == 24


def test_a_profile_turns_parse_warnings_it_rejects_into_dead_letters(tmp_path):
    source = SAMPLES / "azure_automl" / "malformed.jsonl"
    described, judged = tmp_path / "none", tmp_path / "azure"
    assert run(["--input", str(source), "--output", str(described), RUNNER]) == 0
    assert run(["--input", str(source), "--output", str(judged), RUNNER, "--validation_profile=azure_automl"]) == 0
    warned = summary(described)["totals"]["warnings_by_code"]
    refused = summary(judged)["totals"]["refused_by_stage"]["validate"]
    for code in ("BBOX_OUT_OF_RANGE", "BBOX_INVERTED"):
        assert refused[code] >= 1 and warned[code] >= 1
        assert code not in summary(judged)["totals"]["warnings_by_code"]
    assert records(judged).num_rows == records(described).num_rows - sum(refused.values())
