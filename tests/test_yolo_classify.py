"""yolo.task=classify: Ultralytics' folder-per-class layout (images/<split>/<class>/<image>),
written with --copy_images. The Lookout for Vision sample (normal / anomaly image labels) is
run through the whole job and its tree read back with Pillow, every image opened (neither
torchvision's ImageFolder nor ultralytics is a dependency of this project); the refusals are
checked on the writer's part alone."""

from __future__ import annotations

import collections
import hashlib
import io
import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from PIL import Image

from pipelines.normalize_manifests import run
from transforms import errors
from transforms.formats import yolo
from transforms.formats.base import WriteContext
from transforms.image_copies import copy_name
from transforms.partitions import value_of_folder

REPO = Path(__file__).resolve().parents[1]
LOOKOUT = REPO / "samples" / "sagemaker" / "lookout-for-vision.manifest"
CLASSIFY = ["--output_format", "yolo", "--format_option", "yolo.task=classify"]


def _row(record_id, uri, labels=(), objects=(), split="train", origin="ground_truth", mask=None):
    return {"record_id": record_id, "image": {"uri": uri}, "labels": [{"name": name} for name in labels], "objects": list(objects), "split": split, "origin": origin, "mask": mask}


def test_a_copy_goes_in_the_folder_of_its_split_and_one_class():
    assert yolo.classify_folder(_row("r", "a.jpg", ["normal"], split="validation")) == "val/normal"  # Ultralytics' val
    assert yolo.classify_folder(_row("r", "a.jpg", ["normal", "normal"], split="test")) == "test/normal"  # one class, said twice
    assert yolo.classify_folder(_row("r", "a.jpg", ["a/b"])) == "train/a%2Fb"  # one safe path segment
    for row in (_row("r", "a.jpg"), _row("r", "a.jpg", ["a", "b"]), _row("r", "a.jpg", ["a"], origin="prediction")):
        assert yolo.classify_folder(row) is None  # not copied: the writer refuses it
    name = copy_name("s3://b/x/cam.jpg", "train", folder="val/normal")
    assert name.startswith("images/val/normal/cam__") and name.endswith(".jpg")
    assert name.rsplit("/", 1)[1] == copy_name("s3://b/x/cam.jpg", "train").rsplit("/", 1)[1]  # named as every copy


def test_records_classify_cannot_hold_are_refused_whole_and_objects_alone():
    box = {"label": "dent", "bbox": {"x_min": 0, "y_min": 0, "x_max": 0.5, "y_max": 0.5}}
    rows = [
        _row("ok", "./images/train/normal/a__1.jpg", ["normal"]),
        _row("boxed", "./images/train/anomaly/b__2.jpg", ["anomaly"], [box], mask={"uri": "m.png"}),
        _row("none", "c.jpg"),
        _row("objects", "d.jpg", objects=[box]),
        _row("several", "e.jpg", ["normal", "anomaly"]),
        _row("guess", "f.jpg", ["normal"], origin="prediction"),
    ]
    options = yolo.YoloOptions(task="classify")
    ctx, handle = WriteContext(options=options), io.BytesIO()
    part = yolo.YoloPart(handle, options)
    part.write(rows, ctx)
    summary = part.close()
    assert {row["record_id"]: code for row, code, _ in ctx.rejected} == {
        "none": errors.YOLO_CLASSIFY_NO_LABEL, "objects": errors.YOLO_CLASSIFY_OBJECTS_ONLY,
        "several": errors.YOLO_CLASSIFY_SEVERAL_LABELS, "guess": errors.YOLO_CLASSIFY_PREDICTION,
    }
    # the written record's box and mask are refused alone: a class folder holds neither
    assert [(row["record_id"], index, code) for row, index, code, _ in ctx.rejected_objects] == [("boxed", 0, errors.OBJECT_UNREPRESENTABLE), ("boxed", 1, errors.MASK_NOT_WRITTEN)]
    assert (part.count, part.annotations_written, summary[yolo.PART_CLASSES]) == (2, 0, ["anomaly", "normal"])

    files = {}

    class _Out(io.BytesIO):
        def __init__(self, name):
            super().__init__()
            self.name_ = name

        def __exit__(self, *exc):
            files[self.name_] = self.getvalue()

    content = handle.getvalue()
    yolo.assemble([("split=validation/origin=ground_truth", [(lambda: io.BytesIO(content), summary)])], options, lambda partition, name: _Out(name))
    assert sorted(files) == ["data.yaml", "val.txt"]  # no label file
    assert files["val.txt"].decode().splitlines() == ["./images/train/normal/a__1.jpg", "./images/train/anomaly/b__2.jpg"]
    assert b"task: classify" in files["data.yaml"] and b'1: "normal"' in files["data.yaml"]
    fmt = yolo.YoloFormat()
    assert fmt.file_counts("val.txt", 2) == (2, 0)  # each line one record landed


def test_classify_without_copied_images_is_refused_at_launch(tmp_path, capsys):
    assert run(["--input", str(LOOKOUT), "--output", str(tmp_path / "out"), *CLASSIFY, "--quiet"]) == 2
    assert "--copy_images" in capsys.readouterr().err
    assert not (tmp_path / "out" / "manifests").exists()


def _classes_by_image(manifest: Path) -> dict[str, str]:
    """image file name -> its class, read from the Lookout manifest itself."""
    lines = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return {Path(line["source-ref"]).name: line["anomaly-label-metadata"]["class-name"] for line in lines}


@pytest.mark.e2e
def test_lookout_images_land_in_the_classify_layout_and_read_back_with_pillow(tmp_path):
    out = tmp_path / "out"
    flags = ["--copy_images", "--split_ratios", "train=0.6,validation=0.2,test=0.2", "--quiet"]
    assert run(["--input", str(LOOKOUT), "--output", str(out), *CLASSIFY, *flags]) == 0
    root = out / "manifests" / "yolo"
    classes = _classes_by_image(LOOKOUT)
    # the split each record was given, read from records/ (Hive folders) by pyarrow
    records = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table(columns=["image", "split"]).to_pylist()
    split_of = {Path(r["image"]["uri"]).name: {"validation": "val"}.get(r["split"], r["split"]) for r in records}

    # Ultralytics' classify root: images/<split>/<class>/<file>, splits among train / val / test
    tree = collections.Counter()
    seen = {}
    for path in sorted(p for p in (root / "images").rglob("*") if p.is_file()):
        split, class_folder, name = path.relative_to(root / "images").parts
        assert split in ("train", "val", "test")
        source = name.split("__")[0] + path.suffix
        with Image.open(path) as image:  # every image opened and decoded
            image.load()
            assert image.size[0] > 0 and image.format == "JPEG"
        assert path.read_bytes() == (LOOKOUT.parent / "images" / source).read_bytes()
        assert value_of_folder(class_folder) == classes[source] and split == split_of[source]
        seen[source] = path
        tree[split, classes[source].lower()] += 1
    assert sorted(seen) == sorted(classes)  # each record's image once
    assert sum(n for (_, c), n in tree.items() if c == "normal") == 6 and sum(n for (_, c), n in tree.items() if c == "anomaly") == 4
    expected = collections.Counter((split_of[name], cls.lower()) for name, cls in classes.items())
    assert tree == expected
    assert not (root / "labels").exists()

    # each split's list names its copies; run.json counts the copies like the other outputs
    for split in {s for s, _ in tree}:
        listed = (root / f"{split}.txt").read_text().split()
        assert sorted((root / line).resolve() for line in listed) == sorted(p.resolve() for p in seen.values() if p.parts[-3] == split)
    entry = json.loads((out / "run.json").read_text())["outputs"]["manifests/yolo"]
    assert entry["images"]["copied"] == entry["images"]["landed"] == 10 and entry["landed"] == 10 and entry["problems"] == []
    assert entry["images"]["bytes"] == sum(p.stat().st_size for p in seen.values())
    assert entry["refused_objects"] == 4  # the anomaly masks: a class folder holds no mask
    published = json.loads((out / ".labelbeam" / "published.json").read_text())["outputs"]["manifests/yolo"]
    for path in seen.values():
        record = published[path.relative_to(root).as_posix()]
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
