"""Objects cross over: a writer refuses one object, not its record; COCO keypoints; Label
Studio's magic wand, unsized brushes and predictions sized by their task (no Beam)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest

from transforms import errors, schema
from transforms.formats import coco
from transforms.formats.base import ParseContext, WriteContext, get_format

REPO = Path(__file__).resolve().parents[1]
LS_REAL = REPO.parent / "shared" / "realdata" / "label-studio-sdk-converter-tests"
LS = get_format("label_studio")
COCO = get_format("coco")


def parse(task: dict) -> list[dict]:
    return LS.parse(task, ParseContext(uri="memory://t.json", base_uri="memory://")).rows


def coco_of(rows: list[dict], **options) -> tuple[dict, WriteContext]:
    """Rows -> one COCO document (as the write stage writes it), loaded back, and the context."""
    rows = schema.rows_to_batch(rows).to_pylist()
    classes = sorted({o["label"] for r in rows for o in r["objects"] or [] if o["label"]})
    ctx = WriteContext(options=COCO.options(options), classes=classes)
    return orjson.loads(coco.document_of(rows, ctx)), ctx


def _brush_rle(mask: np.ndarray) -> list[int]:
    """An RGBA brush RLE as Label Studio writes it (its SDK's encoder)."""
    brush = pytest.importorskip("label_studio_sdk.converter.brush")
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[mask] = (255, 0, 0, 255)
    return [int(v) for v in brush.encode_rle(rgba.ravel())]


def _result(rid, kind, value, size=(200, 100), **more):
    result = {"id": rid, "type": kind, "from_name": kind, "to_name": "image", "value": value, **more}
    if size:
        result.update(original_width=size[0], original_height=size[1])
    return result


RECT = {"x": 10, "y": 10, "width": 40, "height": 50, "rotation": 0}
POLY = {"points": [[60, 10], [90, 10], [90, 60]]}


def task_rect_polygon_two_points(parented: bool = False) -> dict:
    """1 rectangle + 1 polygon + 2 keypoints (free, or linked to the rectangle)."""
    link = {"parentID": "r"} if parented else {}
    return {"id": 7, "data": {"image": "s3://b/a.jpg"}, "annotations": [{"id": 1, "result": [
        _result("r", "rectanglelabels", {**RECT, "rectanglelabels": ["person"]}),
        _result("p", "polygonlabels", {**POLY, "polygonlabels": ["car"]}),
        _result("k1", "keypointlabels", {"x": 20, "y": 20, "width": 0.5, "keypointlabels": ["nose"]}, **link),
        _result("k2", "keypointlabels", {"x": 30, "y": 25, "width": 0.5, "keypointlabels": ["eye"]}, **link),
    ]}]}  # fmt: skip


# ---- refusing objects, not records ---------------------------------------------------------


@pytest.mark.parametrize("name", ["sagemaker", "azure_automl"])
def test_a_keypoint_is_refused_alone_and_the_boxes_are_written(name):
    rows = parse(task_rect_polygon_two_points())
    fmt = get_format(name)
    ctx = WriteContext()
    (line,) = [orjson.loads(e) for e in fmt.write(schema.rows_to_batch(rows).to_pylist(), ctx)]
    assert ctx.rejected == []
    assert [(i, code) for _, i, code, _ in ctx.rejected_objects] == [(2, errors.OBJECT_UNREPRESENTABLE), (3, errors.OBJECT_UNREPRESENTABLE)]
    assert fmt.objects_in(line) == ctx.objects_written == 2  # the rectangle and the polygon (as a box / polygon)


def test_label_studio_rewrites_every_object_of_the_task():
    rows = parse(task_rect_polygon_two_points(parented=True))
    ctx = WriteContext()
    (task,) = [orjson.loads(e) for e in LS.write(schema.rows_to_batch(rows).to_pylist(), ctx)]
    assert ctx.rejected == ctx.rejected_objects == []
    assert LS.objects_in(task) == ctx.objects_written == 4
    assert [r.get("parentID") for r in task["annotations"][0]["result"]] == [None, None, "r", "r"]


def test_coco_record_left_with_nothing_is_a_negative_example():
    row = {"record_id": "x", "image": {"uri": "a.jpg", "width": 10, "height": 10}, "task": "object_detection",
           "origin": "ground_truth", "objects": [{"label": None, "bbox": {"x_min": 0, "y_min": 0, "x_max": 1, "y_max": 1}}]}
    coco, ctx = coco_of([row])
    assert len(coco["images"]) == 1 and coco["annotations"] == [] and ctx.rejected == []
    assert [(i, code) for _, i, code, _ in ctx.rejected_objects] == [(0, errors.OBJECT_UNREPRESENTABLE)]


# ---- COCO keypoints ------------------------------------------------------------------------


def test_free_keypoints_form_one_annotation_beside_the_regions():
    coco, ctx = coco_of(parse(task_rect_polygon_two_points()))
    assert ctx.rejected == ctx.rejected_objects == []
    assert len(coco["annotations"]) == 3  # what label-studio-sdk's exporter writes: 2 regions + 1 of keypoints
    cats = {c["id"]: c for c in coco["categories"]}
    (points,) = [a for a in coco["annotations"] if "keypoints" in a]
    category = cats[points["category_id"]]
    assert category["name"] == "keypoints" and category["keypoints"] == ["nose", "eye"] and category["skeleton"] == []  # the task's order
    assert points["keypoints"] == [40, 20, 2, 60, 25, 2] and points["num_keypoints"] == 2  # pixels, COCO's order
    assert coco["info"]["labelbeam"] == {"records": 1, "annotations": 3, "objects": 4}


def test_linked_keypoints_are_in_their_region_annotation_and_load_in_pycocotools(tmp_path):
    coco_module = pytest.importorskip("pycocotools.coco")
    coco, _ = coco_of(parse(task_rect_polygon_two_points(parented=True)))
    path = tmp_path / "instances.json"
    path.write_bytes(orjson.dumps(coco))
    loaded = coco_module.COCO(str(path))
    person = loaded.getCatIds(catNms=["person"])
    (ann,) = loaded.loadAnns(loaded.getAnnIds(catIds=person))
    assert loaded.loadCats(person)[0]["keypoints"] == ["nose", "eye"]
    assert ann["keypoints"] == [40, 20, 2, 60, 25, 2] and ann["num_keypoints"] == 2
    assert ann["bbox"] == [20, 10, 80, 50]
    assert len(loaded.getAnnIds()) == 2  # the polygon, and the person with its points


def test_pinned_keypoint_names_fix_the_order_and_refuse_others():
    coco, ctx = coco_of(parse(task_rect_polygon_two_points(parented=True)), keypoints="nose,left_eye")
    (ann,) = [a for a in coco["annotations"] if "keypoints" in a]
    assert ann["keypoints"] == [40, 20, 2, 0, 0, 0] and ann["num_keypoints"] == 1
    assert [(i, code) for _, i, code, _ in ctx.rejected_objects] == [(3, errors.OBJECT_UNREPRESENTABLE)]  # "eye"


def test_real_keypoints_export_keeps_its_box_and_points_in_one_annotation():
    if not LS_REAL.exists():
        pytest.skip("shared realdata is not beside the repository")
    tasks = json.loads((LS_REAL / "keypoints.json").read_text())
    rows = [r for t in tasks for r in parse(t)]
    coco, ctx = coco_of(rows)
    assert ctx.rejected == ctx.rejected_objects == []
    (ann,) = coco["annotations"]
    cats = {c["id"]: c for c in coco["categories"]}
    assert cats[ann["category_id"]]["name"] == "person"
    assert cats[ann["category_id"]]["keypoints"] == ["nose", "left_eye", "right_eye"]  # as the task holds them
    assert ann["num_keypoints"] == 3 and ann["keypoints"][2::3] == [2, 2, 2]
    assert ann["keypoints"][0] == pytest.approx(64.44444444444444 / 100 * 216, abs=0.001)  # nose x in pixels


# ---- Label Studio: magic wand, brushes without a size, predictions sized by the task ---------


def test_magic_wand_regions_read_as_brush_masks():
    mask = np.zeros((10, 20), bool)
    mask[2:5, 3:9] = True
    rle = _brush_rle(mask)
    task = {"data": {"image": "a.png"}, "annotations": [{"id": 3, "result": [
        _result("w1", "magicwand", {"format": "rle", "rle": rle}, size=(20, 10)),
        _result("w1", "labels", {"labels": ["crack"]}, size=(20, 10)),
    ]}]}  # fmt: skip
    (row,) = parse(task)
    assert not [i for i in row["issues"] if i["code"] == errors.UNKNOWN_RESULT_TYPE]
    (obj,) = row["objects"]
    assert obj["label"] == "crack" and obj["mask_rle"] == bytes(rle) and obj["area"] == 18
    assert row["task"] == "instance_segmentation"
    coco, _ = coco_of([row])
    assert coco["annotations"][0]["area"] == 18  # not a negative example any more
    ctx = WriteContext()
    (written,) = [orjson.loads(e) for e in LS.write(schema.rows_to_batch([row]).to_pylist(), ctx)]
    assert [r["type"] for r in written["annotations"][0]["result"]] == ["magicwand", "labels"]
    assert written["annotations"][0]["result"][0]["value"]["rle"] == rle
    config = LS.side_files([ctx.summary], None)["labeling_config.xml"].decode()
    assert "<MagicWand" in config and 'value="crack"' in config


def test_brush_without_an_image_size_has_its_area_at_parse_time():
    brush = pytest.importorskip("label_studio_sdk.converter.brush")
    mask = np.zeros((30, 40), bool)
    mask[5:25, 10:12] = True
    rle = _brush_rle(mask)
    task = {"data": {"image": "https://example.com/a.png"}, "annotations": [{"result": [
        _result("b", "brushlabels", {"format": "rle", "rle": rle, "brushlabels": ["wire"]}, size=None)]}]}
    (row,) = parse(task)
    (obj,) = row["objects"]
    decoded = brush.decode_rle(rle)  # the SDK's own decoder: RGBA values, 4 a pixel
    assert obj["area"] == np.count_nonzero(decoded[3::4] >= 128) == 40
    assert obj.get("bbox") is None and row["image"]["width"] is None  # the box does need the size


def test_prediction_without_a_size_takes_its_task_annotation_size():
    task = {"data": {"image": "a.jpg"},
            "annotations": [{"id": 1, "result": [_result("a", "rectanglelabels", {**RECT, "rectanglelabels": ["car"]})]}],
            "predictions": [{"result": [_result("p", "rectanglelabels", {**RECT, "rectanglelabels": ["car"]}, size=None)]}]}
    rows = parse(task)
    assert [(r["origin"], r["image"]["width"], r["image"]["height"]) for r in rows] == [("ground_truth", 200, 100), ("prediction", 200, 100)]
    coco, ctx = coco_of([rows[1]])
    assert ctx.rejected == [] and coco["annotations"][0]["bbox"] == [20, 10, 80, 50]


def test_rotated_rectangle_stays_rotated_in_label_studio_and_is_a_polygon_in_coco():
    task = {"data": {"image": "a.jpg"}, "annotations": [{"id": 1, "result": [
        _result("r", "rectanglelabels", {**RECT, "rotation": 30, "rectanglelabels": ["car"]})]}]}
    rows = parse(task)
    (written,) = [orjson.loads(e) for e in LS.write(schema.rows_to_batch(rows).to_pylist(), WriteContext())]
    assert written["annotations"][0]["result"][0]["value"]["rotation"] == 30
    coco, _ = coco_of(rows)
    (ann,) = coco["annotations"]
    assert len(ann["segmentation"][0]) == 8  # the four corners


# ---- real files, through the whole job, against label-studio-sdk's own COCO exporter ---------


def _sdk_config(tasks: list[dict]) -> str:
    """A labeling config declaring the controls and labels the tasks use (keypoint labels with
    the model_index the SDK's keypoint exporter needs), written here from the tasks alone."""
    controls: dict[tuple, list] = {}
    tags = {"rectanglelabels": "RectangleLabels", "polygonlabels": "PolygonLabels", "keypointlabels": "KeyPointLabels"}
    for task in tasks:
        for unit in task.get("annotations", []):
            for r in unit["result"]:
                if r.get("type") in tags:
                    names = controls.setdefault((r["from_name"], r["type"], r["to_name"]), [])
                    names += [n for n in r["value"][r["type"]] if n not in names]
    lines = ["<View>", '  <Image name="image" value="$image"/>']
    for (from_name, kind, to_name), names in sorted(controls.items()):
        lines.append(f'  <{tags[kind]} name="{from_name}" toName="{to_name}">')
        lines += [f'    <Label value="{n}" model_index="{i}"/>' for i, n in enumerate(sorted(names))]
        lines.append(f"  </{tags[kind]}>")
    return "\n".join([*lines, "</View>"])


def _sdk_coco(path: Path, out: Path) -> dict:
    converter = pytest.importorskip("label_studio_sdk.converter")
    tasks = json.loads(path.read_text())
    result = out / path.stem
    converter.Converter(config=_sdk_config(tasks), project_dir=str(out), download_resources=False).convert_to_coco(
        str(path), str(result), is_dir=False
    )
    return json.loads((result / "result.json").read_text())


def _our_coco(out: Path) -> list[dict]:
    """Every ground-truth COCO document under manifests/coco/, whatever the layout."""
    documents = []
    for path in sorted((out / "manifests" / "coco").rglob("*.json")):
        if "prediction" in str(path.relative_to(out)):
            continue  # predictions: the SDK's exporter converts annotations only
        document = json.loads(path.read_text())
        if isinstance(document, dict) and "annotations" in document:
            documents.append(document)
    return documents


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["rectangles", "polygons", "keypoints", "predictions", "rect_polygon_points"])
def test_label_studio_files_to_coco_match_the_sdk_exporter(name, tmp_path):
    from pipelines.normalize_manifests import run

    if name == "rect_polygon_points":
        path = tmp_path / "rect_polygon_points.json"
        path.write_text(json.dumps([task_rect_polygon_two_points()]))
    else:
        if not LS_REAL.exists():
            pytest.skip("shared realdata is not beside the repository")
        path = LS_REAL / f"{name}.json"
    out = tmp_path / "out"
    assert run(["--input", str(path), "--output", str(out), "--runner=FnApiRunner", "--output_format=coco",
                "--output_format=sagemaker", "--output_format=azure_automl", "--output_format=label_studio"]) == 0
    # no record refused whole because one of its objects has no form in an output
    for output in ("coco", "sagemaker", "azure_automl", "label_studio"):
        letters = [json.loads(line) for p in (out / "refused" / output).rglob("*.jsonl") for line in p.read_text().splitlines()]
        assert all(d["object_index"] is not None or d["code"] == "IMAGE_SIZE_REQUIRED" for d in letters), (output, letters)
    ours = _our_coco(out)
    sdk = _sdk_coco(path, tmp_path / "sdk")
    our_annotations = [a for d in ours for a in d["annotations"]]
    sdk_regions = [a for a in sdk["annotations"] if "keypoints" not in a]
    sdk_points = sum(a.get("num_keypoints", 0) for a in sdk["annotations"])
    our_points = sum(a.get("num_keypoints", 0) for a in our_annotations)
    assert our_points == sdk_points  # every keypoint, in COCO's [x, y, v] form
    if name == "keypoints":  # the SDK adds one annotation for the points; ours are in their box's
        assert len(our_annotations) == len(sdk_regions) == 1 and our_annotations[0]["num_keypoints"] == 3
    else:
        assert len(our_annotations) == len(sdk["annotations"])
    if name == "rect_polygon_points":
        assert len(our_annotations) == 3 and our_points == 2
