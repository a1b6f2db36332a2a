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


@pytest.fixture(scope="module")
def converted_to_label_studio(tmp_path_factory) -> Path:
    """Tasks labelbeam writes from other formats (Ground Truth, Lookout for Vision, AutoML)."""
    out = tmp_path_factory.mktemp("to_ls") / "out"
    inputs = [str(p) for p in sorted((SAMPLES / "sagemaker").glob("*.manifest"))]
    inputs += [str(p) for p in sorted((SAMPLES / "azure_automl").glob("*.jsonl"))]
    argv = ["--input", *inputs, "--output", str(out), "--runner=FnApiRunner", "--output_format=label_studio"]
    assert run(argv) == 0
    return out


def test_label_studio_output_converts_to_coco_with_label_studio_sdk(converted_to_label_studio, tmp_path):
    converter = pytest.importorskip("label_studio_sdk.converter")
    out = converted_to_label_studio
    root = out / "manifests" / "label_studio"
    config = (root / "labeling_config.xml").read_text()
    files = sorted(root.glob("split=*/part-*.json"))
    assert files
    tasks_total = 0
    for path in files:
        tasks = json.loads(path.read_text())
        tasks_total += len(tasks)
        assert all(isinstance(task.get("id"), int) for task in tasks)
        regions = [r for t in tasks for u in t.get("annotations", []) for r in u["result"]
                   if r["type"] in ("rectanglelabels", "polygonlabels")]
        for region in regions:  # one control per region type, all declared in the config
            assert region["from_name"] == {"rectanglelabels": "box", "polygonlabels": "polygon"}[region["type"]]
            assert f'name="{region["from_name"]}"' in config
        result = tmp_path / path.parent.name
        converter.Converter(config=config, project_dir=str(tmp_path), download_resources=False).convert_to_coco(
            str(path), str(result), is_dir=False
        )
        coco = json.loads((result / "result.json").read_text())
        # every region with a label and an image size comes back as a COCO annotation
        convertible = [r for r in regions if r["value"][r["type"]] and "original_width" in r]
        assert len(coco["annotations"]) == len(convertible), path
        names = {c["id"]: c["name"] for c in coco["categories"]}
        assert sorted(names[a["category_id"]] for a in coco["annotations"]) == sorted(
            r["value"][r["type"]][0] for r in convertible
        )
    assert tasks_total == landed(out, "manifests/label_studio")


def test_masks_are_refused_with_a_code_not_dropped(converted_to_label_studio):
    out = converted_to_label_studio
    letters = [json.loads(line) for p in (out / "errors").glob("*.jsonl") for line in p.read_text().splitlines()]
    masked = [r for r in records(out) if (r["mask"] or {}).get("uri")]
    assert masked  # Lookout for Vision's anomaly masks
    refused = [d for d in letters if d["code"] == "MASK_NOT_WRITTEN"]
    assert len(refused) == len(masked)
    written = [t for p in (out / "manifests" / "label_studio").glob("split=*/*.json") for t in json.loads(p.read_text())]
    uris = {t["data"]["image"] for t in written}
    assert not {r["image"]["uri"] for r in masked if r["task"] == "semantic_segmentation"} & uris - {
        r["image"]["uri"] for r in records(out) if not (r["mask"] or {}).get("uri")
    }


def test_no_output_has_an_empty_part_file(demo):
    parts = list((demo / "manifests").glob("*/**/part-*"))
    assert parts and all(p.stat().st_size > 0 for p in parts)
    for p in parts:
        text = p.read_text().strip()
        assert text not in ("", "[]"), p
