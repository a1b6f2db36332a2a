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
