"""run.json stays small at many files: an output of more than report.LISTED_FILES_MAX files has
its totals there, and every file's rows, bytes and sha256 in .labelbeam/published.json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipelines import report
from pipelines.normalize_manifests import run


def _entry(files: int) -> dict:
    published = {f"labels/train/{i}.txt": {"rows": 1, "bytes": 30 + i % 7, "sha256": "0" * 64} for i in range(files)}
    return {"landed": files, "files": files, "problems": [], "published": published}


def test_an_output_of_many_files_has_its_totals_in_run_json_and_one_of_few_its_files():
    entries = {"manifests/yolo": _entry(report.LISTED_FILES_MAX + 1), "records": _entry(report.LISTED_FILES_MAX)}
    shown = report.listed_in_run_json(entries)
    many, few = shown["manifests/yolo"], shown["records"]
    assert "published" not in many and few["published"] == entries["records"]["published"]
    expected_bytes = sum(r["bytes"] for r in entries["manifests/yolo"]["published"].values())
    assert many["published_totals"] == {"files": report.LISTED_FILES_MAX + 1, "rows": report.LISTED_FILES_MAX + 1, "bytes": expected_bytes, "listed": False}
    assert few["published_totals"]["listed"] is True and few["published_totals"]["files"] == report.LISTED_FILES_MAX
    assert "published" in entries["manifests/yolo"]  # the entries the checks read are left whole


def _generated_manifest(folder: Path, images: int) -> Path:
    """A Ground Truth detection manifest of `images` images, one box each."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(images):
        lines.append(json.dumps({
            "source-ref": f"s3://bucket/many/img-{i:05d}.jpg",
            "boxes": {"image_size": [{"width": 64, "height": 48, "depth": 3}],
                      "annotations": [{"class_id": i % 3, "left": 1 + i % 9, "top": 2, "width": 10, "height": 12}]},
            "boxes-metadata": {"class-map": {"0": "car", "1": "bus", "2": "van"}, "type": "groundtruth/object-detection",
                               "job-name": "labeling-job/many", "human-annotated": "yes", "creation-date": "2024-01-01T00:00:00"},
        }))  # fmt: skip
    path = folder / "many.manifest"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.e2e
def test_a_yolo_output_of_many_label_files_keeps_run_json_small_and_published_json_complete(tmp_path, monkeypatch):
    """300 images, a bound of 100 files: run.json holds YOLO's totals and no file list;
    published.json every label file with its sha256, equal to the file on disk; the pre-publish
    check read them all (a run with one of them changed exits 3: tests/test_publish_exact.py)."""
    monkeypatch.setattr(report, "LISTED_FILES_MAX", 100)
    images = 300
    manifest = _generated_manifest(tmp_path / "in", images)
    out = tmp_path / "out"
    assert run(["--input", str(manifest), "--output", str(out), "--output_format", "yolo", "--quiet", "--runner=FnApiRunner"]) == 0
    summary = json.loads((out / "run.json").read_text())
    yolo_entry = summary["outputs"]["manifests/yolo"]
    assert "published" not in yolo_entry and yolo_entry["published_totals"]["listed"] is False
    folder = out / "manifests" / "yolo"
    on_disk = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert yolo_entry["published_totals"]["files"] == len(on_disk) > images
    assert yolo_entry["published_totals"]["bytes"] == sum(map(len, on_disk.values()))
    assert yolo_entry["problems"] == [] and yolo_entry["landed"] == images
    # the records output (a few Parquet files) keeps its list in run.json
    assert summary["outputs"]["records"]["published_totals"]["listed"] is True and summary["outputs"]["records"]["published"]
    published = json.loads((out / ".labelbeam" / "published.json").read_text())
    listed = published["outputs"]["manifests/yolo"]
    assert set(listed) == set(on_disk)
    for name, content in on_disk.items():
        assert listed[name]["bytes"] == len(content) and listed[name]["sha256"] == hashlib.sha256(content).hexdigest(), name
    assert {f"manifests/yolo/{name}" for name in listed} <= set(published["files"])
    # run.json is smaller than the one output's file list alone
    assert (out / "run.json").stat().st_size < len(json.dumps(listed))


@pytest.mark.parametrize("cut_short", [False, True])
def test_published_json_takes_every_files_record_from_the_staging_folder_also_when_a_publish_is_completed_later(tmp_path, monkeypatch, cut_short):
    from pipelines import publish
    from transforms import storage

    root = publish.OutputRoot(str(tmp_path / "out"), storage.Storage())
    staged = Path(root.staging("run-1"))
    (staged / "manifests" / "yolo" / "labels").mkdir(parents=True)
    (staged / "manifests" / "yolo" / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    records = {"manifests/yolo": {"labels/a.txt": {"rows": 1, "bytes": 19, "sha256": "ab" * 32}}}
    (staged / publish.FILE_RECORDS).write_text(json.dumps({"run_id": "run-1", "outputs": records}))
    if cut_short:  # the driver dies once the entries are in place: the next run's recover() finishes
        monkeypatch.setattr(publish.OutputRoot, "_finish", lambda *a, **k: (_ for _ in ()).throw(ConnectionResetError("gone")))
        with pytest.raises(ConnectionResetError):
            root.publish("run-1", success=True)
        monkeypatch.undo()
        assert root.recover() == "run-1"
    else:
        root.publish("run-1", success=True)
    published = json.loads((tmp_path / "out" / ".labelbeam" / "published.json").read_text())
    assert published["outputs"] == records and published["files"] == ["manifests/yolo/labels/a.txt"]
    assert not staged.exists() and (tmp_path / "out" / "_SUCCESS").exists()
