"""--on_duplicate: the same images in a Ground Truth manifest and a Label Studio export, through
the whole job (FnApiRunner), under each policy; run.json reconciles and every output holds what
run.json says it landed."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipelines.normalize_manifests import run
from transforms import errors
from transforms.stages.split import split_key

pytestmark = pytest.mark.e2e  # runs the whole job: deselect with -m "not e2e" for the fast subset

CLASSIFIED, DETECTED = 6, 4  # images of each kind, each in both files; classified image 0 disagrees
SIZE = 100


def _inputs(folder: Path) -> list[str]:
    """a-gt.manifest sorts before b-export.json: `first` keeps the Ground Truth records."""
    manifest, tasks = [], []
    for i in range(CLASSIFIED):
        uri = f"s3://bucket/cls/img-{i}.jpg"
        manifest.append({"source-ref": uri, "label": 0, "label-metadata": {
            "class-name": "cat", "type": "groundtruth/image-classification", "job-name": "labeling-job/cats"}})
        tasks.append({"id": i + 1, "data": {"image": uri.replace("/cls/", "/cls/./")}, "annotations": [
            {"id": 100 + i, "result": [{"id": "c", "type": "choices", "from_name": "choice", "to_name": "image",
                                        "value": {"choices": ["dog" if i == 0 else "cat"]}}]}]})
    for i in range(DETECTED):
        uri = f"s3://bucket/det/img-{i}.jpg"
        manifest.append({"source-ref": uri, "boxes": {
            "image_size": [{"width": SIZE, "height": SIZE, "depth": 3}],
            "annotations": [{"class_id": 0, "left": 10, "top": 10, "width": 20, "height": 20}]},
            "boxes-metadata": {"class-map": {"0": "car"}, "type": "groundtruth/object-detection", "job-name": "labeling-job/cars"}})
        tasks.append({"id": 100 + i, "data": {"image": uri}, "annotations": [{"id": 200 + i, "result": [
            {"id": "r", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
             "original_width": SIZE, "original_height": SIZE,
             "value": {"x": 50, "y": 50, "width": 30, "height": 30, "rotation": 0, "rectanglelabels": ["person"]}}]}]})
    (folder / "a-gt.manifest").write_bytes(b"\n".join(orjson.dumps(o) for o in manifest) + b"\n")
    (folder / "b-export.json").write_bytes(orjson.dumps(tasks))
    return [str(folder / "a-gt.manifest"), str(folder / "b-export.json")]


def _run(tmp_path: Path, policy: str, *extra: str) -> tuple[Path, dict, list[dict]]:
    out = tmp_path / "out"
    args = ["--input", *_inputs(tmp_path), "--output", str(out), "--runner=FnApiRunner", "--output_format=jsonl", "--on_duplicate", policy, *extra]
    assert run(args) == 0
    summary = json.loads((out / "run.json").read_text())
    rows = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()
    _assert_reconciled_and_landed(out, summary, rows)
    return out, summary, rows


def _assert_reconciled_and_landed(out: Path, summary: dict, rows: list[dict]) -> None:
    totals = summary["totals"]
    assert totals["reconciled"] and not summary["data_loss"], summary["data_loss"]
    assert totals["lines"] == totals["ok"] + totals["dead_letters"] + totals["blank"] == 2 * (CLASSIFIED + DETECTED)
    for entry in summary["files"]:
        flow = entry["stages"][errors.DEDUPE]
        assert flow["in"] == entry["records"] == CLASSIFIED + DETECTED
        assert flow["in"] == flow["out"] + sum(flow["refused"].values()) + flow.get("superseded", 0) + flow.get("merged", 0)
    assert totals["records"] == totals["records_kept"] + totals["records_refused"] + totals["records_superseded"] + totals["records_merged"]
    outputs = summary["outputs"]
    assert outputs["records"]["landed"] == len(rows) == totals["records_kept"]
    jsonl = [line for path in (out / "manifests" / "jsonl").rglob("*.jsonl") for line in path.read_bytes().splitlines()]
    assert outputs["manifests/jsonl"]["landed"] == len(jsonl) == totals["records_kept"]
    letters = [line for path in (out / "errors").glob("*.jsonl") for line in path.read_bytes().splitlines()]
    assert outputs["errors"]["landed"] == len(letters) == totals["records_refused"]


def _codes(row: dict) -> set[str]:
    return {found["code"] for found in row["issues"] or []}


def _by_image(rows: list[dict]) -> dict[str, list[dict]]:
    found = defaultdict(list)
    for row in rows:
        found[split_key(row["image"]["uri"])].append(row)
    return found


CONFLICTED = "s3://bucket/cls/img-0.jpg"


def test_keep_all_keeps_every_record_and_marks_the_conflict(tmp_path):
    _, summary, rows = _run(tmp_path, "keep_all")
    assert len(rows) == 2 * (CLASSIFIED + DETECTED)
    images = _by_image(rows)
    assert all(errors.CONFLICTING_LABELS in _codes(r) for r in images[CONFLICTED]) and len(images[CONFLICTED]) == 2
    assert not any(errors.CONFLICTING_LABELS in _codes(r) for key, group in images.items() if key != CONFLICTED for r in group)
    assert summary["totals"]["warnings_by_code"][errors.CONFLICTING_LABELS] == 2
    assert summary["totals"]["records_superseded"] == summary["totals"]["records_merged"] == 0


def test_error_makes_every_record_of_a_conflicting_image_a_dead_letter(tmp_path):
    out, summary, rows = _run(tmp_path, "error")
    assert len(rows) == 2 * (CLASSIFIED + DETECTED) - 2
    assert CONFLICTED not in _by_image(rows)
    letters = [orjson.loads(line) for path in (out / "errors").glob("*.jsonl") for line in path.read_bytes().splitlines()]
    assert sorted(Path(x["source_uri"]).name for x in letters) == ["a-gt.manifest", "b-export.json"]
    assert {(x["stage"], x["code"], x["severity"]) for x in letters} == {(errors.DEDUPE, errors.CONFLICTING_LABELS, errors.ERROR)}
    assert all(json.loads(x["raw"])["image"]["uri"].endswith("img-0.jpg") for x in letters)
    assert summary["totals"]["refused_by_stage"] == {errors.DEDUPE: {errors.CONFLICTING_LABELS: 2}}
    assert summary["totals"]["dead_letters"] == 0  # input lines were all read; the records were refused later


def test_first_keeps_the_record_of_the_smallest_source(tmp_path):
    out, summary, rows = _run(tmp_path, "first", "--find_duplicates")
    images = _by_image(rows)
    assert len(rows) == len(images) == CLASSIFIED + DETECTED
    assert {Path(r["source"]["uri"]).name for r in rows} == {"a-gt.manifest"}
    assert [label["name"] for label in images[CONFLICTED][0]["labels"]] == ["cat"]
    assert _codes(images[CONFLICTED][0]) == {errors.CONFLICTING_LABELS, errors.DUPLICATE_SUPERSEDED}
    assert all(errors.DUPLICATE_SUPERSEDED in _codes(r) for r in rows)
    files = {Path(f["uri"]).name: f for f in summary["files"]}
    assert files["b-export.json"]["stages"][errors.DEDUPE]["superseded"] == CLASSIFIED + DETECTED
    assert files["b-export.json"]["records_kept"] == 0 and files["a-gt.manifest"]["records_kept"] == CLASSIFIED + DETECTED
    assert summary["totals"]["records_superseded"] == CLASSIFIED + DETECTED
    inputs = {Path(i["uri"]).name: i for i in pq.read_table(out / "stats" / "inputs.parquet").to_pylist()}
    assert (inputs["b-export.json"]["records_superseded"], inputs["b-export.json"]["records_kept"]) == (CLASSIFIED + DETECTED, 0)
    # the duplicates report lists the records as the sources hold them, before the policy
    report = pq.read_table(out / "stats" / "duplicates.parquet").to_pylist()
    assert len(report) == CLASSIFIED + DETECTED and all(d["records"] == 2 for d in report)
    assert [d["image"] for d in report if d["status"] == "conflict"] == [CONFLICTED]


def test_merge_unions_objects_of_two_jobs_and_labels_of_two_files(tmp_path):
    _, summary, rows = _run(tmp_path, "merge")
    images = _by_image(rows)
    assert len(rows) == len(images) == CLASSIFIED + DETECTED
    detections = [group[0] for key, group in images.items() if "/det/" in key]
    assert len(detections) == DETECTED
    for row in detections:
        assert Counter(o["label"] for o in row["objects"]) == {"car": 1, "person": 1}
        assert row["task"] == "object_detection" and errors.DUPLICATES_MERGED in _codes(row)
    (conflicted,) = images[CONFLICTED]
    assert sorted(label["name"] for label in conflicted["labels"]) == ["cat", "dog"]
    assert conflicted["task"] == "multilabel_classification"
    assert errors.CONFLICTING_LABELS in _codes(conflicted)
    agreeing = [group[0] for key, group in images.items() if "/cls/" in key and key != CONFLICTED]
    assert all([label["name"] for label in r["labels"]] == ["cat"] and r["task"] == "classification" for r in agreeing)
    files = {Path(f["uri"]).name: f for f in summary["files"]}
    assert files["b-export.json"]["stages"][errors.DEDUPE]["merged"] == CLASSIFIED + DETECTED
    assert summary["totals"]["records_merged"] == CLASSIFIED + DETECTED
