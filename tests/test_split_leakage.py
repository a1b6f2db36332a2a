"""One image, three formats, three spellings of its URI: one split, and one duplicates entry."""

from __future__ import annotations

import json
from collections import defaultdict

import orjson
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipelines.normalize_manifests import run
from transforms.stages.split import split_key

pytestmark = pytest.mark.e2e  # runs the whole job: deselect with -m "not e2e" for the fast subset

IMAGES = 40


def test_split_key_joins_the_spellings_of_one_image():
    same = [
        "s3://bucket/imgs/x.jpg",
        "s3://bucket/imgs/./x.jpg",
        "S3://bucket/imgs/x%2Ejpg",
        "https://bucket.s3.us-east-1.amazonaws.com/imgs/x.jpg?X-Amz-Signature=abc",
        "https://s3.eu-west-1.amazonaws.com/bucket/imgs/x.jpg",
    ]
    assert {split_key(u) for u in same} == {"s3://bucket/imgs/x.jpg"}
    assert split_key("file:///data/a/b.jpg") == split_key("/data/a//b.jpg") == split_key("/data/local-files/?d=data/a/b.jpg")
    assert split_key("s3://bucket/imgs/y.jpg") != split_key("s3://bucket/imgs/x.jpg")
    assert split_key("gs://b/x.jpg") != split_key("s3://b/x.jpg")


def test_one_image_through_three_formats_lands_in_one_split(tmp_path):
    sagemaker, azure, label_studio = [], [], []
    for i in range(IMAGES):
        sagemaker.append({"source-ref": f"s3://bucket/imgs/img-{i}.jpg", "label": 0,
                          "label-metadata": {"class-name": "cat", "type": "groundtruth/image-classification"}})
        azure.append({"image_url": f"https://bucket.s3.us-west-2.amazonaws.com/imgs/img-{i}.jpg?sig={i}",
                      "label": "dog" if i == 0 else "cat"})  # one conflict
        label_studio.append({"id": i + 1, "data": {"image": f"s3://bucket/imgs/./img-{i}.jpg"}, "annotations": [
            {"id": i + 1, "result": [{"id": "c", "type": "choices", "from_name": "choice", "to_name": "image",
                                      "value": {"choices": ["cat"]}}]}]})
    (tmp_path / "gt.manifest").write_bytes(b"\n".join(orjson.dumps(o) for o in sagemaker) + b"\n")
    (tmp_path / "automl.jsonl").write_bytes(b"\n".join(orjson.dumps(o) for o in azure) + b"\n")
    (tmp_path / "export.json").write_bytes(orjson.dumps(label_studio))
    out = tmp_path / "out"
    inputs = [str(tmp_path / name) for name in ("gt.manifest", "automl.jsonl", "export.json")]
    assert run(["--input", *inputs, "--output", str(out), "--runner=FnApiRunner", "--find_duplicates"]) == 0
    rows = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()
    assert len(rows) == 3 * IMAGES
    splits = defaultdict(set)
    formats = defaultdict(set)
    for row in rows:
        key = split_key(row["image"]["uri"])
        splits[key].add(row["split"])
        formats[key].add(row["source"]["format"])
    assert len(splits) == IMAGES
    assert all(len(found) == 1 for found in splits.values()), dict(splits)
    assert all(found == {"sagemaker", "azure_automl", "label_studio"} for found in formats.values())
    assert len({s for found in splits.values() for s in found}) >= 2  # the split is not trivially one
    assert json.loads((out / "run.json").read_text())["totals"]["reconciled"]
    # the same images, found as duplicates across the three sources; one disagrees on its label
    duplicates = pq.read_table(out / "stats" / "duplicates.parquet").to_pylist()
    assert len(duplicates) == IMAGES
    assert all(d["records"] == 3 and len(d["sources"]) == 3 for d in duplicates)
    assert all(d["formats"] == ["azure_automl", "label_studio", "sagemaker"] for d in duplicates)
    (conflict,) = [d for d in duplicates if d["status"] == "conflict"]
    assert conflict["image"] == "s3://bucket/imgs/img-0.jpg" and conflict["label_sets"] == ["cat", "dog"]


FOLDERS = 8
SPLIT_MODES = {
    "image": ["--split_by", "image"],
    "group_folder": ["--split_by", "group"],
    "group_attribute": ["--split_by", "group", "--split_group", "attribute:scene"],
    "keep_input": ["--keep_input_split"],
}


def _three_formats(tmp_path, images: int, folder_of=lambda i: f"scene-{i % FOLDERS}", fields=lambda i: {}):
    """The same images as a Ground Truth manifest, an AutoML JSONL and a Label Studio export,
    each spelling the URI its own way; `fields(i)` adds source fields to every record of image i."""
    sagemaker, azure, label_studio = [], [], []
    for i in range(images):
        path = f"imgs/{folder_of(i)}/img-{i}.jpg"
        sagemaker.append({"source-ref": f"s3://bucket/{path}", **fields(i), "label": 0,
                          "label-metadata": {"class-name": "cat", "type": "groundtruth/image-classification"}})
        azure.append({"image_url": f"https://bucket.s3.us-west-2.amazonaws.com/{path}?sig={i}", "label": "cat", **fields(i)})
        label_studio.append({"id": i + 1, "data": {"image": f"s3://bucket/./{path}", **fields(i)}, "annotations": [
            {"id": i + 1, "result": [{"id": "c", "type": "choices", "from_name": "choice", "to_name": "image",
                                      "value": {"choices": ["cat"]}}]}]})
    (tmp_path / "gt.manifest").write_bytes(b"\n".join(orjson.dumps(o) for o in sagemaker) + b"\n")
    (tmp_path / "automl.jsonl").write_bytes(b"\n".join(orjson.dumps(o) for o in azure) + b"\n")
    (tmp_path / "export.json").write_bytes(orjson.dumps(label_studio))
    return [str(tmp_path / name) for name in ("gt.manifest", "automl.jsonl", "export.json")]


def _splits_by(rows, key) -> dict:
    found = defaultdict(set)
    for row in rows:
        found[key(row)].add(row["split"])
    return found


@pytest.mark.parametrize("mode", list(SPLIT_MODES))
def test_one_image_through_three_formats_gets_one_split_in_every_mode(tmp_path, mode):
    inputs = _three_formats(tmp_path, IMAGES, fields=lambda i: {"scene": f"s{i % FOLDERS}"})
    out = tmp_path / "out"
    assert run(["--input", *inputs, "--output", str(out), "--runner=FnApiRunner", "--quiet", *SPLIT_MODES[mode]]) == 0
    rows = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()
    assert len(rows) == 3 * IMAGES
    by_image = _splits_by(rows, lambda row: split_key(row["image"]["uri"]))
    assert len(by_image) == IMAGES and all(len(found) == 1 for found in by_image.values()), dict(by_image)
    if mode.startswith("group"):  # a whole group in one split, and the groups spread over splits
        by_folder = _splits_by(rows, lambda row: split_key(row["image"]["uri"]).rsplit("/", 2)[1])
        assert len(by_folder) == FOLDERS and all(len(found) == 1 for found in by_folder.values()), dict(by_folder)
        assert len({s for found in by_folder.values() for s in found}) >= 2


def test_group_by_folder_puts_every_image_of_a_folder_in_one_split(tmp_path):
    folders, per_folder = 24, 5
    inputs = _three_formats(tmp_path, folders * per_folder, folder_of=lambda i: f"burst-{i // per_folder}")
    out = tmp_path / "out"
    assert run(["--input", inputs[0], "--output", str(out), "--runner=FnApiRunner", "--quiet", "--split_by", "group"]) == 0
    rows = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()
    by_folder = _splits_by(rows, lambda row: row["image"]["uri"].rsplit("/", 2)[1])
    assert len(by_folder) == folders and all(len(found) == 1 for found in by_folder.values())
    assert {s for found in by_folder.values() for s in found} == {"train", "validation", "test"}
    by_image = _splits_by(rows, lambda row: row["image"]["uri"])  # by image, the same folders scatter
    assert run(["--input", inputs[0], "--output", str(tmp_path / "by_image"), "--runner=FnApiRunner", "--quiet"]) == 0
    scattered = _splits_by(ds.dataset(tmp_path / "by_image" / "records", format="parquet", partitioning="hive").to_table().to_pylist(),
                           lambda row: row["image"]["uri"].rsplit("/", 2)[1])
    assert len(by_image) == folders * per_folder and any(len(found) > 1 for found in scattered.values())


def test_keep_input_split_keeps_fields_then_folders_and_hashes_the_rest(tmp_path):
    given = {0: "train", 1: "val", 2: "Test", 3: "holdout", 4: "../escape"}
    folders = {5: "train", 6: "validation", 7: "test"}

    def folder_of(i):
        return f"{folders[i]}/x" if i in folders else "misc"

    def fields(i):
        return {"split": given[i]} if i in given else {}

    inputs = _three_formats(tmp_path, 30, folder_of=folder_of, fields=fields)
    out = tmp_path / "out"
    assert run(["--input", *inputs, "--output", str(out), "--runner=FnApiRunner", "--quiet", "--keep_input_split"]) == 0
    rows = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()
    by_image = _splits_by(rows, lambda row: int(row["image"]["uri"].rsplit("-", 1)[1].split(".")[0]))
    assert all(len(found) == 1 for found in by_image.values())
    split = {i: found.pop() for i, found in by_image.items()}
    assert [split[i] for i in range(8)] == ["train", "validation", "test", "holdout", split[4], "train", "validation", "test"]
    assert split[4] in {"train", "validation", "test"}  # not a split name: hashed, never a folder of its own
    assert {split[i] for i in range(8, 30)} <= {"train", "validation", "test"}
    assert len({split[i] for i in range(8, 30)}) >= 2
    assert sorted(p.name for p in (out / "records").iterdir()) == ["split=holdout", "split=test", "split=train", "split=validation"]
