"""Chained Ground Truth jobs: records keep every job, each output takes one (unit + CLI)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import orjson
import pyarrow.dataset as ds
import pytest

from transforms.formats.base import ParseContext, WriteContext, get_format
from transforms.label_jobs import select_label_jobs

REPO = Path(__file__).resolve().parents[1]
CHAINED = REPO / "samples" / "sagemaker" / "chained" / "chained-jobs.manifest"
GT = get_format("sagemaker")


def lines() -> list[dict]:
    return [orjson.loads(line) for line in CHAINED.read_bytes().splitlines()]


def parse(line: dict) -> dict:
    (row,) = GT.parse(line, ParseContext(uri="memory://m", base_uri="memory://")).rows
    return row


def jobs_of(row: dict) -> list[str]:
    return [orjson.loads(obj["attributes"])["label_attribute"] for obj in row["objects"]]


def test_the_sample_is_what_its_script_writes():
    from samples.make_chained_job_samples import lines as made

    assert lines() == json.loads(json.dumps(made()))


def test_records_say_which_job_each_box_came_from():
    line = lines()[1]
    row = parse(line)
    assert jobs_of(row) == ["job"] * len(line["job"]["annotations"]) + ["job-chain"] * len(line["job-chain"]["annotations"])


def test_the_last_job_is_taken_by_default_and_label_attribute_chooses():
    for line in lines():
        row = parse(line)
        chosen, kept = select_label_jobs(row)
        assert set(jobs_of(chosen)) == {"job-chain"} and len(chosen["objects"]) == len(line["job-chain"]["annotations"])
        assert [row["objects"][i] for i in kept] == chosen["objects"]
        first, _ = select_label_jobs(row, ["job"])
        assert set(jobs_of(first)) == {"job"} and len(first["objects"]) == len(line["job"]["annotations"])
        # both: the boxes the adjustment left as they were are written once
        both, _ = select_label_jobs(row, ["job", "job-chain"])
        keys = [(o["label"], tuple(o["bbox"].values())) for o in both["objects"]]
        assert len(keys) == len(set(keys))
        assert set(keys) == {(o["label"], tuple(o["bbox"].values())) for o in row["objects"]}
        # the Ground Truth writer then writes the chosen attributes only
        (written,) = [orjson.loads(e) for e in GT.write([chosen], WriteContext())]
        assert "job" not in written and written["job-chain"]["annotations"] == line["job-chain"]["annotations"]


def test_different_label_types_of_one_line_are_all_kept():
    line = {"source-ref": "s3://b/a.jpg",
            "defect": 1, "defect-metadata": {"class-name": "anomaly", "type": "groundtruth/image-classification"},
            "colour": 0, "colour-metadata": {"class-name": "red", "type": "groundtruth/image-classification"},
            "boxes": {"image_size": [{"width": 10, "height": 10}], "annotations": [{"class_id": 0, "left": 1, "top": 1, "width": 2, "height": 2}]},
            "boxes-metadata": {"class-map": {"0": "scratch"}, "type": "groundtruth/object-detection"}}  # fmt: skip
    row = parse(line)
    chosen, _ = select_label_jobs(row)
    assert chosen is row  # Rekognition-style classification attributes + one detection: all written
    # an adjustment of a classification replaces the classification it adjusts
    line["colour-metadata"]["adjustment-status"] = "adjusted"
    line["colour-metadata"]["class-name"] = "anomaly"
    chosen, _ = select_label_jobs(parse(line))
    assert [label["name"] for label in chosen["labels"]] == ["anomaly"]
    assert [e["name"] for e in orjson.loads(chosen["extra"])["sagemaker"]["attributes"]] == ["colour", "boxes"]


def test_the_written_row_carries_the_annotation_of_the_job_it_keeps():
    """The `annotation` column of the row a writer takes is its kept job's (the metadata the
    Ground Truth writer writes), not the line's first job's, which records/ keep."""
    for line in lines():
        row = parse(line)
        assert row["annotation"]["job_name"] == line["job-metadata"]["job-name"]
        chosen, _ = select_label_jobs(row)
        assert chosen["annotation"]["job_name"] == line["job-chain-metadata"]["job-name"]
        assert chosen["annotation"]["created_at"] == parse({"source-ref": "s3://b/a.jpg", "job-chain": line["job-chain"], "job-chain-metadata": line["job-chain-metadata"]})["annotation"]["created_at"]
        (written,) = [orjson.loads(e) for e in GT.write([chosen], WriteContext())]
        assert written["job-chain-metadata"]["job-name"] == chosen["annotation"]["job_name"]
        assert select_label_jobs(row, ["job"])[0]["annotation"] == row["annotation"]  # the first job: as read


def test_an_adjusted_classification_gives_the_adjustments_annotation_and_confidence():
    line = {"source-ref": "s3://b/a.jpg",
            "colour": 0, "colour-metadata": {"class-name": "red", "confidence": 0.4, "job-name": "first", "type": "groundtruth/image-classification"},
            "fixed": 1, "fixed-metadata": {"class-name": "blue", "confidence": 0.9, "job-name": "adjust", "adjustment-status": "adjusted",
                                           "human-annotated": "yes", "creation-date": "2024-01-02T03:04:05", "type": "groundtruth/image-classification"}}  # fmt: skip
    row = parse(line)
    assert (row["annotation"]["job_name"], row["annotation"]["confidence"]) == ("first", 0.4)
    chosen, _ = select_label_jobs(row)
    annotation = chosen["annotation"]
    assert (annotation["job_name"], annotation["confidence"], annotation["human_annotated"]) == ("adjust", 0.9, True)
    assert annotation["created_at"].isoformat().startswith("2024-01-02T03:04:05")


# ---- the whole job ---------------------------------------------------------------------------

OUTPUTS = ("coco", "sagemaker", "azure_automl", "label_studio")


def _run(out: Path, *flags: str) -> dict:
    from pipelines.normalize_manifests import run

    argv = ["--input", str(CHAINED), "--output", str(out), "--runner=FnApiRunner", *[f"--output_format={n}" for n in OUTPUTS], *flags]
    assert run(argv) == 0
    return json.loads((out / "run.json").read_text())


def _boxes_per_output(out: Path) -> dict[str, list[tuple]]:
    """(image, class, x, y) of every box each output holds, read from its files."""
    found: dict[str, list[tuple]] = {name: [] for name in OUTPUTS}
    for path in (out / "manifests" / "coco").rglob("*.json"):  # whatever the COCO layout
        coco = json.loads(path.read_text())
        images = {i["id"]: i["file_name"] for i in coco["images"]}
        names = {c["id"]: c["name"] for c in coco["categories"]}
        found["coco"] += [(images[a["image_id"]], names[a["category_id"]], round(a["bbox"][0]), round(a["bbox"][1])) for a in coco["annotations"]]
    for path in (out / "manifests" / "sagemaker").rglob("*.manifest"):
        for line in map(json.loads, path.read_text().splitlines()):
            for key, value in line.items():
                if isinstance(value, dict) and "annotations" in value:
                    names = line[key + "-metadata"]["class-map"]
                    found["sagemaker"] += [(line["source-ref"], names[str(b["class_id"])], round(b["left"]), round(b["top"])) for b in value["annotations"]]
    for path in (out / "manifests" / "azure_automl").rglob("*.jsonl"):
        for line in map(json.loads, path.read_text().splitlines()):
            found["azure_automl"] += [(line["image_url"], b["label"], round(b["topX"] * 640), round(b["topY"] * 480)) for b in line["label"]]
    for path in (out / "manifests" / "label_studio").rglob("part-*.json"):
        for task in json.loads(path.read_text()):
            for unit in task.get("annotations", []):
                found["label_studio"] += [(task["data"]["image"], r["value"]["rectanglelabels"][0], round(r["value"]["x"] * 6.4), round(r["value"]["y"] * 4.8))
                                          for r in unit["result"] if r["type"] == "rectanglelabels"]
    return found


def _expected(attribute: str) -> Counter:
    return Counter(
        (line["source-ref"], {0: "car", 1: "person"}[b["class_id"]], b["left"], b["top"])
        for line in lines() for b in line[attribute]["annotations"]
    )


@pytest.mark.e2e
def test_each_output_holds_one_jobs_boxes_and_label_attribute_switches(tmp_path):
    summary = _run(tmp_path / "default")
    records = ds.dataset(tmp_path / "default" / "records", format="parquet", partitioning="hive").to_table().to_pylist()
    assert sum(len(r["objects"]) for r in records) == sum(_expected(a).total() for a in ("job", "job-chain"))  # records keep both
    for name, boxes in _boxes_per_output(tmp_path / "default").items():
        assert Counter(boxes) == _expected("job-chain"), name  # the last job, each box once
        objects = summary["outputs"][f"manifests/{name}"]["objects"]
        assert objects["other_jobs"] == _expected("job").total() and objects["landed"] == objects["written"], name
    chosen = tmp_path / "first"
    _run(chosen, "--label_attribute", "job")
    for name, boxes in _boxes_per_output(chosen).items():
        assert Counter(boxes) == _expected("job"), name
