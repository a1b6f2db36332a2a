"""Semantic mask PNGs written by every format that has a form for them, read back with the
clients people use: pycocotools (annToMask), label-studio-sdk's brush decoder, labelbeam's own
Azure reader. Masks are real PNG files: the samples' and generated ones (palette with a tRNS
alpha ramp, RGBA, RGB, several classes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

from transforms import errors
from transforms.checks import contours, masks, rle
from transforms.formats import coco
from transforms.formats._mask_pixels import MaskReader
from transforms.formats.azure_automl import with_mask_task
from transforms.formats.base import ParseContext, WriteContext, get_format
from transforms.schema import SCHEMA

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
CRACKED = [{"index": 0, "class_name": "cracked", "hex_color": "#23A436"}]
SCRATCH = [{"index": 0, "class_name": "BACKGROUND", "hex_color": "#ffffff"}, {"index": 1, "class_name": "scratch", "hex_color": "#2ca02c"}]
TWO_CLASSES = [
    {"index": 0, "class_name": "BACKGROUND", "hex_color": "#ffffff"},
    {"index": 1, "class_name": "scratch", "hex_color": "#2ca02c"},
    {"index": 2, "class_name": "dent", "hex_color": "#1f77b4"},
]
POLICY = masks.MaskPolicy()


def save_png(path: Path, image: Image.Image, **params) -> Path:
    image.save(path, format="PNG", **params)
    return path


def palette_with_alpha_ramp(width=60, height=40) -> Image.Image:
    """Lookout for Vision's shape: index 0 transparent, a blob in #23A436 whose edge entries
    fade from alpha 0 to 255 (anti-aliasing), so the alpha threshold decides the edge."""
    indices = np.zeros((height, width), np.uint8)
    indices[10:30, 15:45] = 255  # opaque core
    for ring, alpha_index in enumerate((64, 128, 200)):  # fainter rings around it
        indices[9 - ring, 14 - ring : 46 + ring] = alpha_index
        indices[30 + ring, 14 - ring : 46 + ring] = alpha_index
    image = Image.fromarray(indices, mode="P")
    palette = [0, 0, 0] + [0x23, 0xA4, 0x36] * 255
    image.putpalette(palette)
    transparency = bytes([0] + list(range(1, 256)))  # index i has alpha i
    image.info["transparency"] = transparency
    return image


def two_class_rgba(width=50, height=30) -> Image.Image:
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[2:10, 3:20] = (0x2C, 0xA0, 0x2C, 255)  # scratch
    rgba[15:28, 25:48] = (0x1F, 0x77, 0xB4, 255)  # dent
    rgba[15:18, 25:30, 3] = 100  # faint pixels of the dent: not labelled
    rgba[0, 0] = (255, 255, 255, 255)  # background colour
    return Image.fromarray(rgba, mode="RGBA")


def mask_row(mask_path: Path, color_map, width=None, height=None, labels=None, validated=True, objects=None) -> dict:
    """A canonical row as CheckFiles leaves it: the mask measured by check_mask."""
    data = mask_path.read_bytes()
    report = masks.check_mask(data, color_map, POLICY)
    row = {name: None for name in SCHEMA.names}
    row.update(
        record_id=mask_path.stem.encode().hex()[:24],
        source={"uri": "m.manifest", "line": 1, "offset": 0, "format": "sagemaker", "attribute": None},
        image={"uri": f"images/{mask_path.stem}.jpg", "width": width, "height": height, "format": None},
        task="semantic_segmentation",
        origin="ground_truth",
        labels=labels or [],
        objects=objects or [],
        mask={"uri": str(mask_path), "color_map": color_map, "width": report.width, "height": report.height,
              "class_pixels": report.class_pixels, "foreground_bbox": report.foreground_bbox, "validated": validated},
    )  # fmt: skip
    return row


def expected_pixels(row: dict) -> dict[str, int]:
    return {c["class_name"]: c["pixels"] for c in row["mask"]["class_pixels"] if c["pixels"]}


@pytest.fixture
def generated(tmp_path) -> list[dict]:
    ramp = save_png(tmp_path / "ramp.png", palette_with_alpha_ramp(), transparency=bytes([0] + list(range(1, 256))))
    two = save_png(tmp_path / "two.png", two_class_rgba())
    rgb = save_png(tmp_path / "rgb.png", two_class_rgba().convert("RGB"))  # no alpha: every pixel labelled
    rows = [
        mask_row(ramp, CRACKED, labels=[{"name": "anomaly", "score": None}]),
        mask_row(two, TWO_CLASSES, width=50, height=30),
        mask_row(rgb, TWO_CLASSES),
    ]
    rows += [mask_row(p, SCRATCH, labels=[{"name": "anomaly", "score": None}]) for p in sorted((SAMPLES / "sagemaker" / "masks").glob("anomaly-*.png"))]
    assert all(expected_pixels(row) for row in rows)  # every mask has labelled pixels
    return rows


def test_class_masks_count_what_the_check_counts(generated):
    for row in generated:
        decoded = masks.class_masks(Path(row["mask"]["uri"]).read_bytes(), row["mask"]["color_map"], POLICY)
        assert {name: int(m.sum()) for name, m in decoded.masks.items()} == expected_pixels(row)
        assert (decoded.width, decoded.height) == (row["mask"]["width"], row["mask"]["height"])
    ramp, two, rgb = generated[:3]
    # the alpha ramp: entries at alpha >= 128 are labelled, fainter ones are not
    assert expected_pixels(ramp) == {"cracked": 20 * 30 + 2 * 34 + 2 * 36}
    assert expected_pixels(two) == {"scratch": 8 * 17, "dent": 13 * 23 - 15}
    assert expected_pixels(rgb) == {"scratch": 8 * 17, "dent": 13 * 23}


def test_a_threshold_moves_the_edge_in_the_writer_as_in_the_check(generated):
    ramp = generated[0]
    strict = masks.MaskPolicy(alpha_threshold=201)
    data = Path(ramp["mask"]["uri"]).read_bytes()
    checked = masks.check_mask(data, CRACKED, strict).class_pixels[0]["pixels"]
    assert int(masks.class_masks(data, CRACKED, strict).masks["cracked"].sum()) == checked == 20 * 30


def test_brush_rle_encoder_is_read_back_by_label_studio_sdk_and_by_ours():
    brush = pytest.importorskip("label_studio_sdk.converter.brush")
    rng = np.random.default_rng(3)
    for shape in ((1, 1), (3, 5), (64, 48)):
        for density in (0.0, 0.05, 0.5, 1.0):
            foreground = rng.random(shape) < density
            encoded = rle.encode_mask(foreground)
            sdk = np.asarray(brush.decode_rle(list(encoded))).reshape(*shape, 4)
            assert ((sdk[:, :, 3] >= 128) == foreground).all()
            assert ((rle.decode_rle(encoded, shape[1], shape[0])[:, :, 3] >= 128) == foreground).all()
    long = np.zeros(70_000 * 4, np.uint8)  # a run longer than the largest run size splits
    assert (rle.decode_values(rle.encode_values(long)) == long).all()
    values = np.repeat(np.array([0, 0, 255, 255, 0], np.uint8), 4)
    assert (rle.decode_values(rle.encode_values(values)) == values).all()
    assert (rle.decode_values(bytes(brush.encode_rle(values))) == values).all()


def coco_of(rows: list[dict], classes: list[str], masks_reader=None) -> tuple[dict, WriteContext]:
    fmt = get_format("coco")
    ctx = WriteContext(options=fmt.options(None), classes=classes, masks=masks_reader)
    return json.loads(coco.document_of(rows, ctx)), ctx


def test_coco_writes_one_rle_annotation_per_mask_class_read_by_pycocotools(generated, tmp_path):
    coco_module = pytest.importorskip("pycocotools.coco")
    classes = sorted({"anomaly", "cracked", "scratch", "dent"})
    document, ctx = coco_of(generated, classes)
    assert not ctx.rejected and not ctx.rejected_objects
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(document))
    coco = coco_module.COCO(str(path))
    assert len(coco.imgs) == len(generated)
    for row in generated:
        (image,) = [i for i in coco.imgs.values() if i["file_name"] == row["image"]["uri"]]
        # the size comes from the mask when the image's is unknown: a mask covers its image
        assert (image["width"], image["height"]) == (row["mask"]["width"], row["mask"]["height"])
        assert [label["name"] for label in image.get("image_labels", [])] == [label["name"] for label in row["labels"]]
        found = {}
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]])):
            pixels = coco.annToMask(ann)
            ys, xs = np.nonzero(pixels)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
            assert isinstance(ann["segmentation"]["counts"], str) and ann["iscrowd"] == 0
            found[coco.cats[ann["category_id"]]["name"]] = int(pixels.sum())
            assert ann["area"] == pixels.sum()
        assert found == expected_pixels(row)


def test_an_image_with_only_an_image_label_is_an_image_without_annotations():
    row = {name: None for name in SCHEMA.names}
    row.update(record_id="n", image={"uri": "images/normal.jpg", "width": None, "height": None, "format": None},
               task="classification", origin="ground_truth", labels=[{"name": "normal", "score": 1.0}], objects=[])
    document, ctx = coco_of([row], ["anomaly", "normal"])
    assert not ctx.rejected and document["annotations"] == []
    assert document["images"] == [{"id": document["images"][0]["id"], "file_name": "images/normal.jpg", "width": None,
                                   "height": None, "image_labels": [{"name": "normal", "score": 1.0}]}]


def test_a_mask_that_cannot_be_written_is_refused_alone_and_the_image_is_written(generated, tmp_path):
    box = {"label": "dent", "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.5, "y_max": 0.5}}
    unvalidated = dict(generated[1], record_id="0a", mask=dict(generated[1]["mask"], validated=False), objects=[box])
    corrupt_path = tmp_path / "corrupt.png"
    corrupt_path.write_bytes(Path(generated[1]["mask"]["uri"]).read_bytes()[:60])
    corrupt = dict(generated[1], record_id="0b", mask=dict(generated[1]["mask"], uri=str(corrupt_path)))
    changed_path = save_png(tmp_path / "changed.png", two_class_rgba(50, 30).transpose(Image.Transpose.FLIP_LEFT_RIGHT).crop((0, 0, 50, 30)))
    changed_image = np.asarray(Image.open(changed_path)).copy()
    changed_image[0:2, 0:2] = (0x2C, 0xA0, 0x2C, 255)
    Image.fromarray(changed_image).save(changed_path)
    changed = dict(generated[1], record_id="0c", mask=dict(generated[1]["mask"], uri=str(changed_path)))
    rows = [unvalidated, corrupt, changed]
    document, ctx = coco_of(rows, ["dent", "scratch"])
    assert not ctx.rejected and len(document["images"]) == 1  # one image uri, one size
    assert len(document["annotations"]) == 1  # the box: no mask annotation was written
    refused = {row["record_id"]: (index, code, message) for row, index, code, message in ctx.rejected_objects}
    assert {k: v[:2] for k, v in refused.items()} == {
        "0a": (1, errors.MASK_NOT_WRITTEN), "0b": (0, errors.MASK_NOT_WRITTEN), "0c": (0, errors.MASK_NOT_WRITTEN)}
    assert "not opened by the file checks" in refused["0a"][2]
    assert "MASK_CORRUPT" in refused["0b"][2] and "changed since" in refused["0c"][2]
    letter = errors.object_dead_letter(unvalidated, 1, "write", errors.MASK_NOT_WRITTEN, "x")
    assert letter["object_index"] == 1 and json.loads(letter["raw"])["mask"]["uri"] == unvalidated["mask"]["uri"]


def test_a_missing_mask_file_at_write_time_is_refused_not_raised(generated, tmp_path):
    gone = dict(generated[0], mask=dict(generated[0]["mask"], uri=str(tmp_path / "gone.png")))
    with pytest.raises(masks.MaskRejected) as caught:
        MaskReader().read(gone)
    assert caught.value.finding.code == errors.MASK_NOT_WRITTEN
    fmt = get_format("label_studio")
    ctx = WriteContext(options=fmt.options(None))
    (task,) = [orjson.loads(t) for t in fmt.write([gone], ctx)]
    assert [r["type"] for r in task["annotations"][0]["result"]] == ["choices"]
    assert [(index, code) for _, index, code, _ in ctx.rejected_objects] == [(0, errors.MASK_NOT_WRITTEN)]


def test_label_studio_writes_brush_labels_decoded_by_the_sdk_and_reread_by_labelbeam(generated):
    brush = pytest.importorskip("label_studio_sdk.converter.brush")
    fmt = get_format("label_studio")
    ctx = WriteContext(options=fmt.options(None))
    tasks = [orjson.loads(t) for t in fmt.write(generated, ctx)]
    assert len(tasks) == len(generated) and not ctx.rejected and not ctx.rejected_objects
    parse = ParseContext(uri="x.json", base_uri="")
    for row, task in zip(generated, tasks):
        results = task["annotations"][0]["result"]
        found = {}
        for result in [r for r in results if r["type"] == "brushlabels"]:
            rgba = np.asarray(brush.decode_rle(result["value"]["rle"])).reshape(result["original_height"], result["original_width"], 4)
            found[result["value"]["brushlabels"][0]] = int((rgba[:, :, 3] >= 128).sum())
        assert found == expected_pixels(row)
        choices = [r["value"]["choices"] for r in results if r["type"] == "choices"]
        assert choices == ([[label["name"] for label in row["labels"]]] if row["labels"] else [])
        (back,) = fmt.parse(task, parse).rows  # labelbeam reads its own brushes back: the same pixels
        assert {o["label"]: o["area"] for o in back["objects"]} == expected_pixels(row)


def test_azure_writes_both_classes_by_default_and_polygons_when_asked(generated):
    import pyarrow as pa

    fmt = get_format("azure_automl")
    batch = pa.RecordBatch.from_pylist(generated, schema=SCHEMA)
    tasks = with_mask_task(batch, "auto").column("task").to_pylist()
    assert tasks == ["classification", "instance_segmentation", "instance_segmentation"] + ["classification"] * 4
    assert set(with_mask_task(batch, "instance_segmentation").column("task").to_pylist()) == {"instance_segmentation"}
    # classification: the image label; the mask has no form there and is refused alone
    rows = with_mask_task(batch, "classification").to_pylist()
    ctx = WriteContext(options=fmt.options({"mask_task": "classification"}))
    lines = [orjson.loads(line) for line in fmt.write(rows[:1], ctx)]
    assert lines[0]["label"] == "anomaly" and [c for _, _, c, _ in ctx.rejected_objects] == [errors.MASK_NOT_WRITTEN]
    # instance segmentation: one polygon object per class, traced from the mask
    rows = with_mask_task(batch, "instance_segmentation").to_pylist()
    ctx = WriteContext(options=fmt.options({"mask_task": "instance_segmentation"}))
    lines = [orjson.loads(line) for line in fmt.write(rows, ctx)]
    assert len(lines) == len(rows) and not ctx.rejected and not ctx.rejected_objects
    parse = ParseContext(uri="x.jsonl", base_uri="")
    for row, line in zip(rows, lines):
        (back,) = fmt.parse(line, parse).rows
        assert back["task"] == "instance_segmentation"
        width, height = row["mask"]["width"], row["mask"]["height"]
        for obj in back["objects"]:
            traced = polygon_pixels(obj["polygon"], width, height)
            pixels = expected_pixels(row)[obj["label"]]
            # border-pixel centres, simplified within 1 pixel: about half the perimeter less
            assert abs(traced - pixels) <= perimeter(row, obj["label"]) * 0.75 + 4, (obj["label"], traced, pixels)
        assert {o["label"] for o in back["objects"]} == set(expected_pixels(row))


def polygon_pixels(rings: list[list[float]], width: int, height: int) -> int:
    import cv2

    canvas = np.zeros((height, width), np.uint8)
    for ring in rings:
        points = np.round(np.array(ring).reshape(-1, 2) * [width, height] - 0.5).astype(np.int32)
        cv2.fillPoly(canvas, [points], 1)
    return int(canvas.sum())


def perimeter(row: dict, name: str) -> int:
    decoded = masks.class_masks(Path(row["mask"]["uri"]).read_bytes(), row["mask"]["color_map"], POLICY).masks[name]
    padded = np.pad(decoded, 1)
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return int(decoded.sum() - inner.sum())


def test_contours_keep_thin_regions_as_rectangles_and_simplify_within_tolerance():
    foreground = np.zeros((20, 30), bool)
    foreground[5, 7] = True  # one pixel
    foreground[10:18, 2:25] = True
    rings = contours.trace(foreground, tolerance=1.0)
    assert len(rings) == 2
    single = [r for r in rings if len(r) == 8 and r[0] == pytest.approx(7 / 30)]
    assert single and single[0] == pytest.approx([7 / 30, 5 / 20, 8 / 30, 5 / 20, 8 / 30, 6 / 20, 7 / 30, 6 / 20])
    exact = contours.trace(foreground, tolerance=0)
    assert sum(len(r) for r in exact) > sum(len(r) for r in rings)


def test_sagemaker_keeps_the_mask_reference_and_color_map(generated):
    fmt = get_format("sagemaker")
    ctx = WriteContext(options=fmt.options(None), classes=["anomaly", "cracked", "dent", "scratch"])
    lines = [orjson.loads(line) for line in fmt.write(generated, ctx)]
    assert len(lines) == len(generated) and not ctx.rejected
    for row, line in zip(generated, lines):
        ref = [v for k, v in line.items() if isinstance(v, str) and v == row["mask"]["uri"]]
        assert ref, line
        (meta,) = [v for k, v in line.items() if k.endswith("-metadata") and "internal-color-map" in v]
        assert sorted(c["class-name"] for c in meta["internal-color-map"].values()) == sorted(c["class_name"] for c in row["mask"]["color_map"])


def test_sagemaker_keeps_lookout_ids_when_mask_classes_join_the_class_list():
    from transforms import schema

    fmt = get_format("sagemaker")
    rows = schema.rows_to_batch([{"image": {"uri": "s3://b/a.jpg"}, "task": "classification", "labels": [{"name": name}]}
                                 for name in ("anomaly", "normal")]).to_pylist()  # fmt: skip
    lines = [orjson.loads(e) for e in fmt.write(rows, WriteContext(classes=["anomaly", "cracked", "normal"]))]
    assert [line["label"] for line in lines] == [1, 0]


def test_azure_traces_label_studio_brushes_into_polygons():
    fmt = get_format("azure_automl")
    foreground = np.zeros((40, 60), bool)
    foreground[5:25, 10:50] = True
    row = {name: None for name in SCHEMA.names}
    row.update(record_id="ab", image={"uri": "a.jpg", "width": 60, "height": 40, "format": None}, task="instance_segmentation",
               origin="ground_truth", labels=[], objects=[{"label": "dent", "mask_rle": rle.encode_mask(foreground), "area": 800.0,
               "bbox": {"x_min": 10 / 60, "y_min": 5 / 40, "x_max": 50 / 60, "y_max": 25 / 40}}])  # fmt: skip
    (line,) = [orjson.loads(e) for e in fmt.write([row], WriteContext(options=fmt.options(None)))]
    (obj,) = line["label"]
    assert obj["label"] == "dent" and polygon_pixels(obj["polygon"], 60, 40) == 800
