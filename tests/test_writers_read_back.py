"""Every output of the demo samples, read back with the client people load it with."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import orjson
import pyarrow.dataset as ds
import pytest

from pipelines.normalize_manifests import run
from transforms.formats.base import ParseContext, get_format

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
OUTPUTS = ("sagemaker", "azure_automl", "label_studio")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    inputs = [str(p) for p in sorted(SAMPLES.glob("*/*")) if p.suffix in (".manifest", ".jsonl", ".json")]
    argv = ["--input", *inputs, "--output", str(out), "--runner=FnApiRunner"]
    argv += [f"--output_format={name}" for name in OUTPUTS]
    assert run(argv) == 0
    return out


def records(out: Path) -> list[dict]:
    return ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()


def landed(out: Path, output: str) -> int:
    return json.loads((out / "run.json").read_text())["outputs"][output]["landed"]


def test_sagemaker_output_rereads_with_labelbeam_and_class_ids_are_stable(demo):
    fmt = get_format("sagemaker")
    ctx = ParseContext(uri="x", base_uri="")  # refs stay as written
    ids_of = defaultdict(set)  # class name -> ids it was written with, over the whole output
    reread = []
    for path in sorted((demo / "manifests" / "sagemaker").glob("split=*/part-*.manifest")):
        for line in path.read_bytes().splitlines():
            obj = orjson.loads(line)
            for key, meta in obj.items():
                if not key.endswith("-metadata") or "class-map" not in meta:
                    continue
                value = obj[key.removesuffix("-metadata")]
                ids = value if isinstance(value, list) else [a["class_id"] for a in value["annotations"]]
                names = [meta["class-map"][str(i)] for i in ids]
                if meta["type"].endswith("multilabel"):
                    assert len(set(ids)) == len(ids), obj  # one id per label, not [0, 0, 0, 0]
                if "job-name" not in meta:  # written by labelbeam, not kept from Ground Truth
                    for class_id, name in zip(ids, names):
                        ids_of[name].add(class_id)
            reread.extend(fmt.parse(obj, ctx).rows)
    assert ids_of and all(len(ids) == 1 for ids in ids_of.values()), dict(ids_of)
    assert len(reread) == landed(demo, "manifests/sagemaker")
    # the labels read back are the records' labels, image by image
    by_image = defaultdict(list)
    for row in records(demo):
        by_image[row["image"]["uri"]].append(sorted(label["name"] for label in row["labels"] or []))
    for row in reread:
        assert sorted(label["name"] for label in row["labels"] or []) in by_image[row["image"]["uri"]]
