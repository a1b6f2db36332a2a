"""The label_studio format: real exports, our samples, label-studio-sdk as the reference."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests.conftest import need_shared_data
from tests.format_contract import assert_detects, assert_round_trip, canonical, parse_all
from transforms import errors, schema
from transforms.errors import RecordError
from transforms.formats.base import ParseContext, WriteContext, get_format

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "label_studio"
REAL_FILES = ["rectangles.json", "polygons.json", "keypoints.json", "predictions.json"]
REGION_TYPES = {
    "rectanglelabels",
    "polygonlabels",
    "keypointlabels",
    "ellipselabels",
    "brushlabels",
}

FMT = get_format("label_studio")


def _ctx(**options):
    return ParseContext(uri="memory://export.json", base_uri="memory://", options=FMT.options(options))


def _real(name):
    path = need_shared_data("realdata", "label-studio-sdk-converter-tests", name)
    return json.loads(path.read_text())


def _samples():
    tasks = json.loads((SAMPLES / "export.json").read_text())
    return tasks


def _attributes(obj):
    return json.loads(obj["attributes"])


def _only_task(tasks, task_id):
    return [t for t in tasks if t["id"] == task_id]


# ---- real exports ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_exports_read_with_their_counts(name):
    tasks = _real(name)
    annotations = [a for t in tasks for a in t.get("annotations", []) if not a.get("was_cancelled")]
    predictions = [p for t in tasks for p in t.get("predictions", [])]
    units = annotations + predictions
    regions = sum(1 for u in units for r in u["result"] if r["type"] in REGION_TYPES)

    parsed = [FMT.parse(task, _ctx()) for task in tasks]  # no RecordError
    rows = [row for p in parsed for row in p.rows]
    batch = schema.rows_to_batch(rows)

    assert batch.num_rows == len(units)
    assert [r["origin"] for r in rows].count("prediction") == len(predictions)
    assert sum(len(r["objects"]) for r in rows) == regions
    task_ids = {schema.loads_extra(r["extra"])["label_studio"]["task"]["id"] for r in rows}
    assert task_ids == {t["id"] for t in tasks}
    attributes = [r["source"]["attribute"] for r in rows]
    assert attributes == [
        attribute
        for t in tasks
        for attribute in [str(a["id"]) for a in t["annotations"] if not a.get("was_cancelled")]
        + [f"prediction:{p['id']}" for p in t.get("predictions", [])]
    ]


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_exports_round_trip_and_are_detected(name):
    tasks = _real(name)
    assert_round_trip(FMT, tasks, _ctx())
    assert_detects(FMT, tasks)


def test_real_keypoints_keep_parent_links_and_relations():
    rows = FMT.parse(_real("keypoints.json")[0], _ctx()).rows
    (row,) = rows
    assert row["task"] == "keypoints"
    by_label = {o["label"]: o for o in row["objects"]}
    nose = by_label["nose"]
    assert nose["keypoints"][0]["x"] == pytest.approx(0.6444444444444444)
    assert _attributes(nose)["parent_id"] == "hplPm0Szvc"
    person = _attributes(by_label["person"])
    assert [rel["to_id"] for rel in person["relations"]] == ["qwGtX1L1Nm", "hplPm0Szvc"]
    assert row["annotation"]["annotator"] == "sergei@heartex.test"
    assert (row["image"]["width"], row["image"]["height"]) == (216, 174)


def test_real_predictions_carry_scores_and_model_version():
    rows = [r for t in _real("predictions.json") for r in FMT.parse(t, _ctx()).rows]
    predicted = [r for r in rows if r["origin"] == "prediction"]
    assert [r["annotation"]["model_version"] for r in predicted] == ["model 0", "model 0"]
    assert predicted[0]["annotation"]["confidence"] == pytest.approx(0.7212843313260696)
    assert predicted[0]["objects"][0]["score"] == pytest.approx(0.23053804129850775)
    assert predicted[0]["annotation"]["human_annotated"] is False
    # the export's prediction results carry no image size: the task's annotation gives it
    assert "IMAGE_SIZE_UNKNOWN" not in {i["code"] for i in predicted[0]["issues"]}
    assert (predicted[0]["image"]["width"], predicted[0]["image"]["height"]) == (768, 576)
    assert predicted[0]["objects"][0]["area"] == pytest.approx(92.51 * 7.68 * 71.76 * 5.76)
    # a box that leaves the image by 1.57 points is flagged, and tolerated under a wider tolerance
    task2 = _real("predictions.json")[1]
    codes = {i["code"] for r in FMT.parse(task2, _ctx()).rows for i in r["issues"]}
    assert "REGION_OUT_OF_RANGE" in codes
    wide = {i["code"] for r in FMT.parse(task2, _ctx(region_tolerance=2)).rows for i in r["issues"]}
    assert "REGION_OUT_OF_RANGE" not in wide


# ---- our samples -----------------------------------------------------------------------------


def test_samples_round_trip_and_are_detected():
    tasks = _samples()
    assert_round_trip(FMT, tasks, _ctx())
    assert_detects(FMT, tasks)
    lines = [json.loads(line) for line in (SAMPLES / "tasks.jsonl").read_text().splitlines()]
    assert_round_trip(FMT, lines, _ctx())
    single = json.loads((SAMPLES / "single_task.json").read_text())
    assert_round_trip(FMT, [single], _ctx())


def test_samples_have_every_task_kind():
    rows = parse_all(FMT, _samples(), _ctx())
    assert {r["task"] for r in rows} == {
        "object_detection", "instance_segmentation", "keypoints",
        "classification", "multilabel_classification", "unlabeled",
    }  # fmt: skip


def test_cancelled_annotations_are_skipped_and_counted():
    tasks = _samples()
    parsed = FMT.parse(_only_task(tasks, 1)[0], _ctx())
    assert parsed.skipped == {"cancelled_annotations": 1}
    assert "102" not in [r["source"]["attribute"] for r in parsed.rows]
    # a task whose only annotation was cancelled still lists its image, unlabeled
    all_cancelled = FMT.parse(_only_task(tasks, 8)[0], _ctx())
    assert [r["task"] for r in all_cancelled.rows] == ["unlabeled"]
    assert all_cancelled.skipped == {"cancelled_annotations": 1}


@pytest.mark.parametrize(
    "mode, attributes, skipped",
    [
        ("all", ["101", "103", "prediction:7"], {"cancelled_annotations": 1}),
        (
            "latest",
            ["103", "prediction:7"],
            {"cancelled_annotations": 1, "annotations_not_latest": 1},
        ),
        (
            "ground_truth",
            ["101", "prediction:7"],
            {"cancelled_annotations": 1, "annotations_not_ground_truth": 1},
        ),
    ],
)
def test_annotation_selection_option(mode, attributes, skipped):
    task = _only_task(_samples(), 1)[0]
    parsed = FMT.parse(task, _ctx(annotations=mode))
    assert [r["source"]["attribute"] for r in parsed.rows] == attributes
    assert parsed.skipped == skipped


def test_bad_option_is_refused():
    with pytest.raises(ValueError):
        FMT.parse(_samples()[0], _ctx(annotations="newest"))


def test_older_split_form_merges_region_and_labels():
    rows = FMT.parse(_only_task(_samples(), 1)[0], _ctx()).rows
    (split_row,) = [r for r in rows if r["source"]["attribute"] == "103"]
    (obj,) = split_row["objects"]
    assert obj["label"] == "car"
    assert [r["type"] for r in _attributes(obj)["ls"]] == ["rectangle", "labels"]
    assert obj["bbox"] == pytest.approx(
        {"x_min": 0.11, "y_min": 0.21, "x_max": 0.40, "y_max": 0.45}
    )


def test_annotation_columns_and_per_region_text():
    rows = FMT.parse(_only_task(_samples(), 1)[0], _ctx()).rows
    first = rows[0]
    assert first["annotation"]["annotator"] == "ann@example.com"
    assert first["annotation"]["id"] == "101"
    assert first["annotation"]["created_at"].microsecond == 345000
    extra = schema.loads_extra(first["extra"])["label_studio"]
    assert extra["annotation"]["ground_truth"] is True
    assert extra["annotation"]["lead_time"] == 12.5
    assert extra["annotation"]["created_at"] == "2024-03-05T10:11:12.345678Z"
    assert first["labels"] == [{"name": "day", "score": None}]
    truck = first["objects"][1]
    assert _attributes(truck)["text"] == ["parked, half hidden"]
    assert _attributes(first["objects"][0])["relations"][0]["to_id"] == "r2"


def test_image_reference_follows_source_and_to_name():
    task = {
        "id": 1,
        "data": {"photo": "s3://b/p.jpg", "image": "s3://b/wrong.jpg"},
        "annotations": [{"id": 1, "result": [{"id": "a", "type": "choices", "source": "$photo",
                                              "value": {"choices": ["x"]}, "to_name": "img"}]}],
    }  # fmt: skip
    assert FMT.parse(task, _ctx()).rows[0]["image"]["uri"] == "s3://b/p.jpg"
    task["annotations"][0]["result"][0].pop("source")
    task["data"] = {"img": "/data/upload/1/q.png", "image": "s3://b/wrong.jpg"}
    assert FMT.parse(task, _ctx()).rows[0]["image"]["uri"] == "/data/upload/1/q.png"
    guessed = {"id": 2, "data": {"text": "a caption", "pic": "gs://b/r.webp"}}
    assert FMT.parse(guessed, _ctx()).rows[0]["image"]["uri"] == "gs://b/r.webp"


@pytest.mark.parametrize(
    "task, code",
    [
        ([1, 2], errors.NOT_AN_OBJECT),
        ({"id": 1}, errors.MISSING_SOURCE_REF),
        ({"id": 1, "data": {"text": "no image here"}}, errors.MISSING_SOURCE_REF),
        (
            {"id": 1, "data": {"image": "a.jpg"}, "annotations": {"id": 1}},
            errors.INVALID_FIELD_TYPE,
        ),
        (
            {"id": 1, "data": {"image": "a.jpg"}, "annotations": [{"result": ["x"]}]},
            errors.INVALID_FIELD_TYPE,
        ),
        (
            {
                "id": 1,
                "data": {"image": "a.jpg"},
                "annotations": [
                    {
                        "result": [
                            {
                                "id": "r",
                                "type": "rectanglelabels",
                                "value": {"x": "10", "y": 1, "width": 1, "height": 1},
                            }
                        ]
                    }
                ],
            },
            errors.INVALID_FIELD_TYPE,
        ),
        (
            {
                "id": 1,
                "data": {"image": "a.jpg"},
                "annotations": [
                    {
                        "result": [
                            {"id": "p", "type": "polygonlabels", "value": {"points": [[1, 2, 3]]}}
                        ]
                    }
                ],
            },
            errors.INVALID_FIELD_TYPE,
        ),
        (
            {
                "id": 1,
                "data": {"image": "a.jpg"},
                "annotations": [{"result": [{"id": ["x"], "type": "choices"}]}],
            },
            errors.INVALID_FIELD_TYPE,
        ),
    ],
)
def test_bad_tasks_are_record_errors(task, code):
    with pytest.raises(RecordError) as info:
        FMT.parse(task, _ctx())
    assert info.value.code == code


# ---- geometry against label-studio-sdk ---------------------------------------------------------


def _rotated_tasks(width=640, height=480):
    rng = np.random.default_rng(3)
    tasks = []
    for n in range(5):
        results = []
        for k in range(3):
            value = {
                "x": float(rng.uniform(10, 60)), "y": float(rng.uniform(10, 60)),
                "width": float(rng.uniform(5, 30)), "height": float(rng.uniform(5, 30)),
                "rotation": float(rng.choice([0, 15, 30, 90, 135, 200, 333.3])) if k else 45.0,
                "rectanglelabels": ["car"],
            }  # fmt: skip
            results.append({"id": f"r{n}{k}", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                            "original_width": width, "original_height": height, "value": value})  # fmt: skip
        tasks.append({"id": n + 1, "data": {"image": f"/data/upload/1/img{n}.jpg"},
                      "annotations": [{"id": n + 1, "result": results}]})  # fmt: skip
    return tasks


def test_rotated_rectangles_match_label_studio_sdk_yolo_obb_export(tmp_path):
    from label_studio_sdk.converter import Converter

    tasks = _rotated_tasks()
    source = tmp_path / "tasks.json"
    source.write_text(json.dumps(tasks))
    config = (
        '<View><Image name="image" value="$image"/>'
        '<RectangleLabels name="label" toName="image"><Label value="car"/></RectangleLabels></View>'
    )
    converter = Converter(config, project_dir=str(tmp_path), download_resources=False)
    converter.convert_to_yolo(str(source), str(tmp_path / "out"), is_dir=False, is_obb=True)
    for task in tasks:
        (row,) = FMT.parse(task, _ctx()).rows
        name = Path(task["data"]["image"]).stem
        lines = (tmp_path / "out" / "labels" / f"{name}.txt").read_text().split("\n")
        expected = [[float(v) for v in line.split()[1:]] for line in lines if line.strip()]
        ours = []
        for obj in row["objects"]:
            if obj.get("polygon"):
                ours.append(obj["polygon"][0])
            else:  # unrotated: corners of the box, clockwise from the anchor
                b = obj["bbox"]
                ours.append(
                    [
                        b["x_min"],
                        b["y_min"],
                        b["x_max"],
                        b["y_min"],
                        b["x_max"],
                        b["y_max"],
                        b["x_min"],
                        b["y_max"],
                    ]
                )
        assert np.allclose(ours, expected, atol=1e-12)
        for obj, corners in zip(row["objects"], expected):
            assert obj["bbox"]["x_min"] == pytest.approx(min(corners[0::2]))
            assert obj["bbox"]["y_max"] == pytest.approx(max(corners[1::2]))


def test_rotation_is_computed_in_pixel_space_for_non_square_images():
    """A 90 degree turn of a 10%-wide box on a 2:1 image is 20% tall, not 10%."""
    task = _rotated_tasks(width=800, height=400)[0]
    task["annotations"][0]["result"] = [
        {"id": "r", "type": "rectanglelabels", "original_width": 800, "original_height": 400,
         "value": {"x": 50, "y": 10, "width": 10, "height": 5, "rotation": 90, "rectanglelabels": ["a"]}}
    ]  # fmt: skip
    (obj,) = FMT.parse(task, _ctx()).rows[0]["objects"]
    assert obj["rotation"] == 90
    assert obj["bbox"] == pytest.approx({"x_min": 0.475, "y_min": 0.1, "x_max": 0.5, "y_max": 0.3})
    assert _attributes(obj)["ls"][0]["value"]["width"] == 10  # the unrotated box, as written


def test_brush_area_and_box_match_label_studio_sdk_decoder():
    from label_studio_sdk.converter.brush import decode_rle

    task = _only_task(_samples(), 4)[0]
    rows = FMT.parse(task, _ctx()).rows
    region = task["annotations"][0]["result"][0]
    width, height = region["original_width"], region["original_height"]
    alpha = decode_rle(region["value"]["rle"]).reshape(height, width, 4)[:, :, 3]
    for threshold in (1, 128, 255):
        obj = FMT.parse(task, _ctx(brush_alpha_threshold=threshold)).rows[0]["objects"][0]
        assert obj["area"] == int((alpha >= threshold).sum())
    obj = rows[0]["objects"][0]
    ys, xs = np.nonzero(alpha >= 128)
    assert obj["bbox"] == pytest.approx(
        {"x_min": xs.min() / width, "y_min": ys.min() / height,
         "x_max": (xs.max() + 1) / width, "y_max": (ys.max() + 1) / height}
    )  # fmt: skip
    assert list(obj["mask_rle"]) == region["value"]["rle"]
    assert "rle" not in _attributes(obj)["ls"][0]["value"]  # stored once, as bytes
    assert rows[0]["task"] == "instance_segmentation"


def test_invalid_rle_is_a_warning_and_round_trips():
    task = copy.deepcopy(_only_task(_samples(), 4)[0])
    results = task["annotations"][0]["result"]
    results[0]["value"]["rle"] = results[0]["value"]["rle"][:40]  # cut short
    results[1]["value"]["rle"] = [1, 2, 999]  # not bytes
    (row,) = FMT.parse(task, _ctx()).rows
    assert [i["code"] for i in row["issues"]] == ["RLE_INVALID", "RLE_INVALID"]
    assert row["objects"][0].get("area") is None and row["objects"][0]["mask_rle"] is not None
    assert _attributes(row["objects"][1])["ls"][0]["value"]["rle"] == [1, 2, 999]
    assert_round_trip(FMT, [task], _ctx())


def test_ellipse_box_is_the_envelope_of_the_turned_ellipse():
    (row,) = FMT.parse(_only_task(_samples(), 2)[0], _ctx()).rows
    ellipse = row["objects"][1]
    width, height = row["image"]["width"], row["image"]["height"]
    t = np.linspace(0, 2 * np.pi, 20001)
    rx, ry, angle = 10 / 100 * width, 5 / 100 * height, math.radians(45)
    px = 0.70 * width + rx * np.cos(t) * math.cos(angle) - ry * np.sin(t) * math.sin(angle)
    py = 0.60 * height + rx * np.cos(t) * math.sin(angle) + ry * np.sin(t) * math.cos(angle)
    box = ellipse["bbox"]
    assert box["x_min"] == pytest.approx(px.min() / width, abs=1e-6)
    assert box["y_max"] == pytest.approx(py.max() / height, abs=1e-6)
    assert ellipse["area"] == pytest.approx(math.pi * rx * ry)
    polygon = row["objects"][0]
    assert polygon["area"] == pytest.approx(0.5 * abs(
        sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(
            [(10, 10), (40, 12), (35, 45), (12, 40)], [(40, 12), (35, 45), (12, 40), (10, 10)])))
        / 100 / 100 * width * height)  # fmt: skip


def test_unknown_result_type_is_kept_with_a_warning():
    (row,) = FMT.parse(_only_task(_samples(), 7)[0], _ctx()).rows
    assert {"UNKNOWN_RESULT_TYPE", "REGION_OUT_OF_RANGE", "IMAGE_SIZE_UNKNOWN"} <= {
        i["code"] for i in row["issues"]
    }
    kept = schema.loads_extra(row["extra"])["label_studio"]["results"]
    assert kept[0]["type"] == "videorectangle"
    assert row["image"]["width"] is None


# ---- writing ---------------------------------------------------------------------------------


def test_writer_gives_one_importable_task_per_row():
    tasks = _samples()
    rows = schema.rows_to_batch(parse_all(FMT, tasks, _ctx())).to_pylist()
    written = [orjson.loads(e) for e in FMT.write(rows, WriteContext())]
    assert len(written) == len(rows)
    for row, task in zip(rows, written):
        assert task["data"]["image"] == row["image"]["uri"]
        units = task.get("predictions" if row["origin"] == "prediction" else "annotations", [])
        assert len(units) == (0 if row["origin"] is None else 1)
    brush = next(t for t in written if t["data"]["image"].endswith("blob-1.jpg"))
    original = _only_task(tasks, 4)[0]["annotations"][0]["result"][0]
    assert brush["annotations"][0]["result"][0]["value"]["rle"] == original["value"]["rle"]


def test_rows_of_other_formats_write_as_label_studio():
    from transforms.formats.label_studio import rectangle_corners

    pixels = rectangle_corners(10, 20, 30, 25, 30, 200, 100)
    turned = [c / (200 if i % 2 == 0 else 100) for i, c in enumerate(pixels)]
    foreign = [
        {"image": {"uri": "s3://b/1.jpg", "width": 200, "height": 100}, "task": "object_detection",
         "origin": "ground_truth", "annotation": {"annotator": "7"},
         "objects": [{"label": "box", "bbox": {"x_min": 0.1, "y_min": 0.2, "x_max": 0.5, "y_max": 0.6}},
                     {"label": "poly", "polygon": [[0.1, 0.1, 0.3, 0.1, 0.2, 0.4]]},
                     {"label": "turned", "rotation": 30.0, "polygon": [turned]}],
         "extra": '{"sagemaker": {"x": 1}}'},
        {"image": {"uri": "s3://b/2.jpg"}, "task": "multilabel_classification", "origin": "prediction",
         "annotation": {"model_version": "m", "confidence": 0.5},
         "labels": [{"name": "a", "score": 0.9}, {"name": "b", "score": 0.4}]},
    ]  # fmt: skip
    ctx = WriteContext()
    written = [orjson.loads(e) for e in FMT.write(schema.rows_to_batch(foreign).to_pylist(), ctx)]
    assert not ctx.rejected
    again = [row for task in written for row in FMT.parse(task, _ctx()).rows]
    boxes = again[0]["objects"]
    assert [o["label"] for o in boxes] == ["box", "poly", "turned"]
    assert boxes[0]["bbox"] == pytest.approx(foreign[0]["objects"][0]["bbox"])
    assert boxes[1]["polygon"][0] == pytest.approx(foreign[0]["objects"][1]["polygon"][0])
    assert boxes[2]["rotation"] == pytest.approx(30.0)
    assert boxes[2]["polygon"][0] == pytest.approx(turned)
    assert again[0]["annotation"]["annotator"] == "7"
    assert written[0]["annotations"][0]["completed_by"] == 7
    # one choices result carries one score: the highest of the row's labels
    assert [label["name"] for label in again[1]["labels"]] == ["a", "b"]
    assert [label["score"] for label in again[1]["labels"]] == pytest.approx([0.9, 0.9])
    assert again[1]["annotation"]["model_version"] == "m"
    assert again[1]["task"] == "multilabel_classification"


def test_rows_that_cannot_be_written_are_rejected():
    rows = [
        {"image": {"uri": None}, "task": "unlabeled"},
        {"image": {"uri": "a.jpg"}, "task": "instance_segmentation", "origin": "ground_truth",
         "objects": [{"label": "m", "mask_rle": b"\x00\x01"}]},
    ]  # fmt: skip
    ctx = WriteContext()
    (task,) = [orjson.loads(e) for e in FMT.write(schema.rows_to_batch(rows).to_pylist(), ctx)]
    assert [code for _, code, _ in ctx.rejected] == [errors.OUTPUT_UNREPRESENTABLE]  # no image: the row
    # an object without geometry: refused alone, the task is written without it
    assert [(row["image"]["uri"], index, code) for row, index, code, _ in ctx.rejected_objects] == [("a.jpg", 0, errors.OBJECT_UNREPRESENTABLE)]
    assert task["data"]["image"] == "a.jpg" and task["annotations"][0]["result"] == []


def test_detect_rejects_other_formats():
    assert FMT.detect([{"source-ref": "s3://b/a.jpg", "class": 1}]) == 0.0
    assert (
        FMT.detect([{"image_url": "a.jpg", "label": "cat"}, {"data": {"image": "x"}, "id": 1}])
        == 0.5
    )
    assert FMT.detect([]) == 0.0


def test_canonical_rows_are_stable_across_two_round_trips():
    tasks = _samples()
    first, encoded = assert_round_trip(FMT, tasks, _ctx())
    twice, _ = assert_round_trip(FMT, [orjson.loads(e) for e in encoded], _ctx())
    assert twice == first == canonical(parse_all(FMT, tasks, _ctx()))


def test_results_on_several_images_are_flagged():
    from transforms.formats.base import ParseContext, get_format

    task = {
        "id": 1,
        "data": {"image1": "/data/a.jpg", "image2": "/data/b.jpg"},
        "annotations": [{"id": 5, "result": [
            {"id": "r1", "type": "rectanglelabels", "from_name": "box", "to_name": "image1", "original_width": 100, "original_height": 100,
             "value": {"x": 10, "y": 10, "width": 10, "height": 10, "rotation": 0, "rectanglelabels": ["a"]}},
            {"id": "r2", "type": "rectanglelabels", "from_name": "box", "to_name": "image2", "original_width": 100, "original_height": 100,
             "value": {"x": 50, "y": 50, "width": 10, "height": 10, "rotation": 0, "rectanglelabels": ["b"]}},
        ]}],
    }
    (row,) = get_format("label_studio").parse(task, ParseContext(uri="x", base_uri="")).rows
    assert "MULTIPLE_IMAGES" in [i["code"] for i in row["issues"]]


def _one_name_for_boxes_and_keypoints() -> list[dict]:
    """Tasks whose boxes and keypoints share one from_name (`label`), as ML back ends write."""
    tasks = []
    for n in range(2):
        size = {"to_name": "image", "original_width": 200, "original_height": 100}
        results = [
            {"id": f"b{n}", "type": "rectanglelabels", "from_name": "label", **size,
             "value": {"x": 10, "y": 20, "width": 40, "height": 50, "rotation": 0, "rectanglelabels": ["person"]}},
            {"id": f"k{n}a", "type": "keypointlabels", "from_name": "label", "parentID": f"b{n}", **size,
             "value": {"x": 20, "y": 30, "width": 1, "keypointlabels": ["nose"]}},
            {"id": f"k{n}b", "type": "keypointlabels", "from_name": "label", "parentID": f"b{n}", **size,
             "value": {"x": 30, "y": 60, "width": 1, "keypointlabels": ["hand"]}},
        ]  # fmt: skip
        tasks.append({"id": n + 1, "data": {"image": f"/data/upload/1/p{n}.jpg"}, "annotations": [{"id": n + 1, "result": results}]})
    return tasks


def test_one_source_name_for_several_types_gives_a_config_the_sdk_converts_with_keypoints(tmp_path):
    """The labeling config has one control per name; every written result names a control of
    its own type on the image; label-studio-sdk's Converter then finds the keypoint order and
    converts boxes and keypoints to COCO. Read back, the source's names return."""
    from label_studio_sdk.converter import Converter

    from transforms.formats.label_studio.labeling_config import config_files

    tasks = _one_name_for_boxes_and_keypoints()
    rows = schema.rows_to_batch(parse_all(FMT, tasks, _ctx())).to_pylist()
    ctx = WriteContext()
    written = [orjson.loads(e) for e in FMT.write(rows, ctx)]
    config = config_files([ctx.summary])["labeling_config.xml"].decode()
    import xml.etree.ElementTree as ET

    controls = [(e.tag, e.get("name"), e.get("toName")) for e in ET.fromstring(config) if e.tag != "Image"]
    assert len({name for _, name, _ in controls}) == len(controls) == 2
    images = {e.get("name") for e in ET.fromstring(config) if e.tag == "Image"}
    tags = {name: tag for tag, name, _ in controls}
    for result in (r for t in written for r in t["annotations"][0]["result"]):
        assert tags[result["from_name"]].lower() == result["type"] and result["to_name"] in images
    (tmp_path / "tasks.json").write_text(json.dumps(written))
    Converter(config, project_dir=str(tmp_path), download_resources=False).convert_to_coco(
        str(tmp_path / "tasks.json"), str(tmp_path / "coco"), is_dir=False
    )
    coco = json.loads((tmp_path / "coco" / "result.json").read_text())
    boxes = [a for a in coco["annotations"] if a.get("bbox") and "keypoints" not in a]
    points = [a for a in coco["annotations"] if "keypoints" in a]
    assert len(boxes) == 2 and len(points) == 2
    assert all(a["num_keypoints"] == 2 for a in points)
    assert sorted(points[0]["keypoints"][0::3]) == [40, 60]  # nose at 20%, hand at 30% of 200 px
    # the written names are the config's, the names read back the source's
    again = [row for task in written for row in FMT.parse(task, _ctx()).rows]
    assert canonical(again) == canonical(rows)
