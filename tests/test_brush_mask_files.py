"""Label Studio brushes -> Ground Truth semantic-segmentation mask PNGs (`sagemaker.mask_files`),
read back by Pillow and by labelbeam's own Ground Truth reader, counted as landed files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from PIL import Image

from pipelines.normalize_manifests import run

WIDTH, HEIGHT = 40, 30


def _brush(mask: np.ndarray) -> list[int]:
    brush = pytest.importorskip("label_studio_sdk.converter.brush")
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[mask] = (255, 0, 0, 255)
    return [int(v) for v in brush.encode_rle(rgba.ravel())]


def _region(rid: str, kind: str, value: dict) -> dict:
    return {"id": rid, "type": kind, "from_name": "tag", "to_name": "image", "value": value,
            "original_width": WIDTH, "original_height": HEIGHT, "image_rotation": 0}


def _masks():
    cat = np.zeros((HEIGHT, WIDTH), bool)
    cat[2:20, 3:25] = True  # 18 x 22
    dog = np.zeros((HEIGHT, WIDTH), bool)
    dog[10:28, 15:35] = True  # 18 x 20, over part of the cat: drawn later, it wins there
    return cat, dog


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("brushes")
    cat, dog = _masks()
    tasks = [
        {"id": 1, "data": {"image": "/data/one.jpg"}, "annotations": [{"id": 11, "result": [
            _region("a", "brushlabels", {"format": "rle", "rle": _brush(cat), "brushlabels": ["cat"]}),
            _region("b", "brushlabels", {"format": "rle", "rle": _brush(dog), "brushlabels": ["dog"]}),
            _region("c", "rectanglelabels", {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0, "rectanglelabels": ["cat"]}),
        ]}]},
        {"id": 2, "data": {"image": "/data/two.jpg"}, "annotations": [{"id": 21, "result": [
            _region("d", "rectanglelabels", {"x": 5, "y": 5, "width": 50, "height": 50, "rotation": 0, "rectanglelabels": ["dog"]}),
        ]}]},
    ]
    source = folder / "tasks.json"
    source.write_text(json.dumps(tasks))
    out = folder / "out"
    argv = ["--input", str(source), "--output", str(out), "--runner=FnApiRunner", "--output_format=sagemaker",
            "--format_option", "sagemaker.mask_files=true"]
    assert run(argv) == 0
    return out


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for p in sorted((out / "manifests" / "sagemaker").glob("split=*/*.manifest")) for line in p.read_text().splitlines()]


def test_each_record_with_brushes_gets_one_palette_png_later_region_winning(written):
    lines = {line["source-ref"]: line for line in _lines(written)}
    assert set(lines) == {"/data/one.jpg", "/data/two.jpg"}
    one, two = lines["/data/one.jpg"], lines["/data/two.jpg"]
    assert "label-ref" not in two  # no brush: no mask, its box as before
    assert len(two["bounding-box"]["annotations"]) == 1
    # the rectangle stays a box; the two brushes are the mask
    assert len(one["bounding-box"]["annotations"]) == 1
    metadata = one["label-ref-metadata"]
    assert metadata["type"] == "groundtruth/semantic-segmentation"
    colours = metadata["internal-color-map"]
    assert colours["0"] == {"class-name": "BACKGROUND", "hex-color": "#ffffff"}
    by_name = {v["class-name"]: int(k) for k, v in colours.items() if k != "0"}
    assert set(by_name) == {"cat", "dog"}
    path = Path(one["label-ref"])
    assert path.is_file() and path.parent.parent.name == "masks"
    assert path.is_relative_to(written / "manifests" / "sagemaker")  # where it is published, not the staging folder
    with Image.open(path) as image:
        assert image.mode == "P" and image.size == (WIDTH, HEIGHT)
        pixels = np.asarray(image)
        palette = image.getpalette()
    cat, dog = _masks()
    assert (pixels == by_name["dog"]).sum() == dog.sum()
    assert (pixels == by_name["cat"]).sum() == (cat & ~dog).sum()  # the later region wins
    assert (pixels == 0).sum() == (~(cat | dog)).sum()
    for index in by_name.values():  # the palette holds the colour the map names
        assert "#%02x%02x%02x" % tuple(palette[3 * index:3 * index + 3]) == colours[str(index)]["hex-color"]


def test_mask_pngs_are_counted_as_published_files(written):
    report = json.loads((written / "run.json").read_text())["outputs"]["manifests/sagemaker"]
    pngs = {name: entry for name, entry in report["published"].items() if name.endswith(".png")}
    assert len(pngs) == 1
    for name, entry in pngs.items():
        data = (written / "manifests" / "sagemaker" / name).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["rows"] == 0
    assert report["landed"] == 2 and report["files"] == len(report["published"])
    assert not report["problems"]


def test_labelbeam_reads_the_line_and_png_back_to_the_same_class_pixels(written, tmp_path):
    manifests = sorted((written / "manifests" / "sagemaker").glob("split=*/*.manifest"))
    out = tmp_path / "again"
    masks = written / "manifests" / "sagemaker" / "masks"  # beside the manifests' folders: allowed by name
    assert run(["--input", *map(str, manifests), "--output", str(out), "--runner=FnApiRunner", f"--allowed_roots={masks}"]) == 0
    rows = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()
    masked = [r for r in rows if (r["mask"] or {}).get("uri")]
    assert len(masked) == 1 and masked[0]["mask"]["validated"]
    found = {c["class_name"]: c["pixels"] for c in masked[0]["mask"]["class_pixels"] if c["pixels"]}
    cat, dog = _masks()
    assert found == {"cat": int((cat & ~dog).sum()), "dog": int(dog.sum())}


def test_without_the_option_brushes_are_boxes_as_before(tmp_path, written):
    source = next(written.parent.glob("tasks.json"))
    out = tmp_path / "out"
    assert run(["--input", str(source), "--output", str(out), "--runner=FnApiRunner", "--output_format=sagemaker"]) == 0
    lines = {line["source-ref"]: line for line in _lines(out)}
    assert "label-ref" not in lines["/data/one.jpg"]
    assert len(lines["/data/one.jpg"]["bounding-box"]["annotations"]) == 3
    assert not (out / "manifests" / "sagemaker" / "masks").exists()


def test_brushes_of_a_record_without_an_image_size_are_refused_alone():
    from transforms.formats.base import WriteContext, get_format

    fmt = get_format("sagemaker")
    cat, _ = _masks()
    row = {"record_id": "r1", "split": "train", "image": {"uri": "/data/x.jpg"}, "objects": [
        {"label": "cat", "mask_rle": bytes(_brush(cat)), "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.5, "y_max": 0.5}},
    ], "labels": [{"name": "indoor"}]}
    written = []

    class Files:
        def write(self, name, content):
            written.append(name)
            return "/out/" + name

    ctx = WriteContext(options=fmt.options({"mask_files": True}), files=Files())
    lines = [json.loads(line) for line in fmt.write([row], ctx)]
    assert len(lines) == 1 and "label-ref" not in lines[0] and lines[0]["label-metadata"]["class-name"] == "indoor"
    assert [(index, code) for _, index, code, _ in ctx.rejected_objects] == [(0, "OBJECT_UNREPRESENTABLE")]
    assert not ctx.rejected and not written
    row["image"].update(width=WIDTH, height=HEIGHT)  # with the size: painted, one file
    ctx = WriteContext(options=fmt.options({"mask_files": True}), files=Files())
    line = json.loads(next(iter(fmt.write([row], ctx))))
    assert line["label-ref"] == "/out/" + written[0] and written[0].startswith("masks/train/x__")
    assert not ctx.rejected_objects
