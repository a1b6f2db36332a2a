"""Amazon Lookout for Vision reached end of support on 2025-10-31: its getting-started dataset
(63 manifest lines, 8 anomaly masks on disk) leaves through every output, every image and every
mask pixel, read back with the clients people use (pycocotools, label-studio-sdk)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from pipelines.normalize_manifests import run

pytestmark = pytest.mark.e2e

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
LOOKOUT = REALDATA / "lookout-for-vision-getting-started"
OUTPUTS = ("coco", "azure_automl", "label_studio", "sagemaker")


def convert(out: Path, *extra: str) -> dict:
    if not LOOKOUT.exists():
        pytest.skip("shared realdata is not beside the repository")
    argv = ["--input", str(LOOKOUT / "manifests" / "template.manifest"), "--relative_to", str(LOOKOUT),
            "--output", str(out), "--runner=FnApiRunner", *extra]
    assert run(argv) == 0
    return json.loads((out / "run.json").read_text())


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lookout") / "out"
    convert(out, *(f"--output_format={name}" for name in OUTPUTS))
    return out


def records(out: Path) -> list[dict]:
    return ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()


def measured_masks(out: Path) -> dict[str, dict[str, int]]:
    """Image URI -> class -> pixels of the masks the file checks opened (the record's counts)."""
    return {
        r["image"]["uri"]: {c["class_name"]: c["pixels"] for c in r["mask"]["class_pixels"] if c["pixels"]}
        for r in records(out) if (r["mask"] or {}).get("validated")
    }  # fmt: skip


def test_every_image_reaches_every_output(converted):
    summary = json.loads((converted / "run.json").read_text())
    assert summary["totals"]["records_kept"] == 63
    for name in OUTPUTS:
        output = summary["outputs"][f"manifests/{name}"]
        assert output["landed"] == output["given"] == 63 and output["refused"] == 0, name
    assert len(measured_masks(converted)) == 8


def test_coco_masks_have_the_records_pixels_in_pycocotools(converted):
    coco_module = pytest.importorskip("pycocotools.coco")
    expected = measured_masks(converted)
    images, found, labels = 0, {}, {}
    for path in sorted((converted / "manifests" / "coco").rglob("*.json")):  # however many files a split has
        coco = coco_module.COCO(str(path))
        images += len(coco.imgs)
        for image in coco.imgs.values():
            labels[image["file_name"]] = [label["name"] for label in image["image_labels"]]
        for ann in coco.anns.values():
            image = coco.imgs[ann["image_id"]]
            pixels = int(coco.annToMask(ann).sum())
            assert pixels == ann["area"]
            found.setdefault(image["file_name"], {})[coco.cats[ann["category_id"]]["name"]] = pixels
    assert images == 63 and found == expected
    assert sorted(set(sum(labels.values(), []))) == ["anomaly", "normal"]
    assert sum(1 for names in labels.values() if names == ["anomaly"]) == 32


def test_label_studio_brushes_decode_to_the_records_pixels_in_the_sdk(converted):
    brush = pytest.importorskip("label_studio_sdk.converter.brush")
    expected = measured_masks(converted)
    tasks = [t for p in (converted / "manifests" / "label_studio").rglob("*.json") for t in json.loads(p.read_text())]
    assert len(tasks) == 63
    found, choices = {}, []
    for task in tasks:
        for result in task["annotations"][0]["result"]:
            if result["type"] == "choices":
                choices += result["value"]["choices"]
            if result["type"] == "brushlabels":
                rgba = np.asarray(brush.decode_rle(result["value"]["rle"])).reshape(result["original_height"], result["original_width"], 4)
                found.setdefault(task["data"]["image"], {})[result["value"]["brushlabels"][0]] = int((rgba[:, :, 3] >= 128).sum())
    assert found == expected
    assert sorted(set(choices)) == ["anomaly", "normal"] and len(choices) == 63


def test_azure_holds_both_classes_and_sagemaker_keeps_the_masks(converted):
    lines = [json.loads(line) for p in (converted / "manifests" / "azure_automl").rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert len(lines) == 63
    assert sorted(line["label"] for line in lines).count("anomaly") == 32
    assert {line["label"] for line in lines} == {"anomaly", "normal"}
    manifest = [json.loads(line) for p in (converted / "manifests" / "sagemaker").rglob("*.manifest") for line in p.read_text().splitlines()]
    assert len(manifest) == 63 and sum(1 for line in manifest if "anomaly-mask-ref" in line) == 32


def test_azure_instance_segmentation_traces_the_masks(tmp_path):
    out = tmp_path / "out"
    summary = convert(out, "--output_format=azure_automl", "--format_option", "azure_automl.mask_task=instance_segmentation")
    assert summary["outputs"]["manifests/azure_automl"]["landed"] == 63
    expected = measured_masks(out)
    folders = sorted(p.parent.name for p in (out / "manifests" / "azure_automl").rglob("*.jsonl"))
    assert set(folders) == {"task=classification", "task=instance_segmentation"}
    segmented = [json.loads(line) for p in (out / "manifests" / "azure_automl").rglob("task=instance_segmentation/*.jsonl")
                 for line in p.read_text().splitlines()]
    assert len(segmented) == 32
    traced = {line["image_url"]: {o["label"] for o in line["label"]} for line in segmented if line["label"]}
    assert traced == {uri: set(classes) for uri, classes in expected.items()}
    # the 24 masks that are not on disk: refused alone, the image written
    refused = [json.loads(line) for p in (out / "refused" / "azure_automl").rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert len(refused) == 24 and {d["code"] for d in refused} == {"MASK_NOT_WRITTEN"}
