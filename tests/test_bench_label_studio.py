"""The Label Studio conversion benchmark's generator writes an export the job reads in full."""

from __future__ import annotations

import json

import pyarrow.dataset as ds
import pytest

from benchmarks.label_studio_convert import BOXES, write_export
from pipelines.normalize_manifests import run

TASKS = 20


@pytest.fixture
def export(tmp_path):
    path = tmp_path / "export.json"
    write_export(str(path), TASKS)
    return path


def test_generated_export_is_a_label_studio_array(export):
    tasks = json.loads(export.read_text())
    assert isinstance(tasks, list) and len(tasks) == TASKS
    assert len({t["id"] for t in tasks}) == TASKS
    for t in tasks:
        (annotation,) = t["annotations"]
        results = annotation["result"]
        assert len(results) == BOXES and all(r["type"] == "rectanglelabels" for r in results)
        assert len({r["id"] for r in results}) == BOXES
        for r in results:
            assert (r["from_name"], r["to_name"]) == ("label", "image")
            assert r["original_width"] > 0 and r["original_height"] > 0
            value = r["value"]
            assert 0 <= value["x"] and value["x"] + value["width"] <= 100
            assert 0 <= value["y"] and value["y"] + value["height"] <= 100
            assert len(value["rectanglelabels"]) == 1


@pytest.mark.e2e  # runs the whole job (small): deselect with -m "not e2e" for the fast subset
def test_job_reads_every_task_and_box(export, tmp_path):
    out = tmp_path / "out"
    assert run(["--input", str(export), "--output", str(out), "--runner=FnApiRunner", "--validate_masks=false", "--quiet"]) == 0
    table = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table(columns=["objects"])
    assert table.num_rows == TASKS
    assert [len(objects) for objects in table.column("objects").to_pylist()] == [BOXES] * TASKS
