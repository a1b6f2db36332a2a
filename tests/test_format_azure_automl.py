"""The azure_automl format: Azure ML AutoML for images JSONL, training lines and endpoint output."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from tests.conftest import need_shared_data
from tests.format_contract import assert_detects, assert_round_trip, parse_all
from transforms import schema
from transforms.errors import RecordError
from transforms.formats.base import ParseContext, WriteContext, get_format

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "azure_automl"
SEED_PAGE = ("seeds", "003_48ad2815b9463712.txt")  # the Azure AutoML data schema page

FMT = get_format("azure_automl")


def ctx(**options) -> ParseContext:
    return ParseContext(uri="memory://manifests/train.jsonl", base_uri="memory://manifests", options=FMT.options(options))


def read_jsonl(path: Path) -> list:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def parse_one(obj, **options) -> dict:
    (row,) = FMT.parse(obj, ctx(**options)).rows
    return row


def codes(row: dict) -> set[str]:
    return {found["code"] for found in row["issues"]}


def write(rows: list[dict], **options) -> tuple[list[dict], WriteContext]:
    wctx = WriteContext(options=FMT.options(options))
    lines = [orjson.loads(e) for e in FMT.write(schema.rows_to_batch(rows).to_pylist(), wctx)]
    return lines, wctx


def points(obj: dict) -> int:
    return sum(len(ring) // 2 for ring in obj["polygon"] or ())


# --- the reference page's examples ------------------------------------------------------------

# Retyped from the reference page (training examples; the long polygons are checked from the page).
RETYPED = [
    {"image_url": "AmlDatastore://image_data/Image_01.jpg", "image_details": {"format": "jpg", "width": "400px", "height": "258px"}, "label": "can"},
    {"image_url": "AmlDatastore://image_data/Image_02.jpg", "image_details": {"format": "jpg", "width": "397px", "height": "296px"}, "label": ["can", "milk_bottle"]},
    {"image_url": "AmlDatastore://image_data/Image_02.jpg", "image_details": {"format": "jpg", "width": "499px", "height": "666px"}, "label": [{"label": "carton", "topX": 0.172, "topY": 0.153, "bottomX": 0.432, "bottomY": 0.659, "isCrowd": 0}, {"label": "milk_bottle", "topX": 0.300, "topY": 0.566, "bottomX": 0.891, "bottomY": 0.735, "isCrowd": 0}]},
    {"filename": "/tmp/tmpdkg2wkdy", "boxes": [{"box": {"topX": 0.224, "topY": 0.285, "bottomX": 0.399, "bottomY": 0.620}, "label": "milk_bottle", "score": 0.937}]},
]


def test_retyped_examples_read_with_their_values():
    multiclass, multilabel, detection, prediction = (parse_one(o) for o in RETYPED)
    assert multiclass["task"] == "classification"
    assert multiclass["labels"] == [{"name": "can"}]
    assert multiclass["image"] == {"uri": "AmlDatastore://image_data/Image_01.jpg", "width": 400, "height": 258, "format": "jpg"}
    assert multilabel["task"] == "multilabel_classification"
    assert [label["name"] for label in multilabel["labels"]] == ["can", "milk_bottle"]
    assert detection["task"] == "object_detection"
    assert [o["bbox"] for o in detection["objects"]] == [
        {"x_min": 0.172, "y_min": 0.153, "x_max": 0.432, "y_max": 0.659},
        {"x_min": 0.3, "y_min": 0.566, "x_max": 0.891, "y_max": 0.735},
    ]
    assert [o["is_crowd"] for o in detection["objects"]] == [False, False]
    assert all(row["origin"] == "ground_truth" and row["issues"] == [] for row in (multiclass, multilabel, detection))
    assert prediction["origin"] == "prediction"
    assert prediction["image"]["uri"] == "/tmp/tmpdkg2wkdy"
    assert prediction["objects"][0]["score"] == pytest.approx(0.937)
    assert_round_trip(FMT, RETYPED, ctx())


def seed_examples() -> tuple[list[dict], list[dict]]:
    """The page's one-line training examples and its multi-line endpoint output examples."""
    text = need_shared_data(*SEED_PAGE).read_text(encoding="utf-8")
    training = [orjson.loads(line.strip()) for line in text.splitlines() if line.strip().startswith('{"image_url"')]
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    inference = [orjson.loads(b) for b in blocks if b.lstrip().startswith("{") and '"filename"' in b]
    return training, inference


# (task, label names, points per object) of each one-line training example, in page order.
SEED_TRAINING = [
    ("classification", ["can"], []),
    ("classification", ["milk_bottle"], []),
    ("classification", ["water_bottle"], []),
    ("multilabel_classification", ["can"], []),
    ("multilabel_classification", ["can", "milk_bottle"], []),
    ("multilabel_classification", ["carton", "milk_bottle", "water_bottle"], []),
    ("object_detection", [], [0]),
    ("object_detection", [], [0, 0]),
    ("object_detection", [], [0, 0, 0]),
    ("instance_segmentation", [], [29]),
    ("instance_segmentation", [], [22, 19]),
    ("instance_segmentation", [], [20, 16]),
]
# (task, label count, points per object, object scores) of each endpoint output example.
SEED_INFERENCE = [
    ("classification", 4, [], []),
    ("multilabel_classification", 4, [], []),
    ("object_detection", 0, [0, 0, 0], [0.937, 0.891, 0.876]),
    ("instance_segmentation", 0, [17, 22, 16], [0.992, 0.989, 0.988]),
]


def test_seed_training_examples_read_into_their_tasks():
    training, _ = seed_examples()
    assert len(training) == len(SEED_TRAINING)
    for obj, (task, names, object_points) in zip(training, SEED_TRAINING):
        row = parse_one(obj)
        assert (row["task"], row["origin"]) == (task, "ground_truth")
        assert [label["name"] for label in row["labels"]] == names
        assert [points(o) for o in row["objects"]] == object_points
        assert row["image"]["width"] == int(obj["image_details"]["width"].removesuffix("px"))
        assert row["issues"] == [], row["issues"]
    assert_round_trip(FMT, training, ctx())


def test_seed_segmentation_bbox_is_the_polygon_envelope():
    training, _ = seed_examples()
    row = parse_one(training[9])  # instance segmentation, Image_01, one "can" polygon
    ring = training[9]["label"][0]["polygon"][0]
    assert row["objects"][0]["bbox"] == {
        "x_min": min(ring[0::2]), "y_min": min(ring[1::2]), "x_max": max(ring[0::2]), "y_max": max(ring[1::2]),
    }


def test_seed_inference_examples_read_as_predictions():
    _, inference = seed_examples()
    assert len(inference) == len(SEED_INFERENCE)
    for obj, (task, n_labels, object_points, scores) in zip(inference, SEED_INFERENCE):
        row = parse_one(obj)
        assert (row["task"], row["origin"]) == (task, "prediction")
        assert row["image"]["uri"] == obj["filename"]
        assert len(row["labels"]) == n_labels
        assert all(label["score"] is not None for label in row["labels"])
        assert [points(o) for o in row["objects"]] == object_points
        assert [o["score"] for o in row["objects"]] == pytest.approx(scores)
        assert row["issues"] == [], row["issues"]
    assert_round_trip(FMT, inference, ctx())


def test_seed_detection_prediction_keeps_the_endpoint_box():
    _, inference = seed_examples()
    row = parse_one(inference[3])
    assert row["objects"][0]["bbox"] == {"x_min": 0.679, "y_min": 0.491, "x_max": 0.926, "y_max": 0.810}


# --- sample files ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name, tasks",
    [
        ("multiclass.jsonl", {"classification"}),
        ("multilabel.jsonl", {"multilabel_classification"}),
        ("object_detection.jsonl", {"object_detection"}),
        ("instance_segmentation.jsonl", {"instance_segmentation"}),
        ("inference_output.jsonl", {"classification", "multilabel_classification", "object_detection", "instance_segmentation"}),
    ],
)
def test_sample_files_read_detect_and_round_trip(name, tasks):
    objs = read_jsonl(SAMPLES / name)
    rows = parse_all(FMT, objs, ctx())
    assert {row["task"] for row in rows} == tasks
    assert all(row["issues"] == [] for row in rows)
    assert_detects(FMT, objs)
    assert_round_trip(FMT, objs, ctx())


def test_mixed_file_reads_all_four_training_tasks_without_a_record_error():
    objs = read_jsonl(SAMPLES / "mixed_tasks.jsonl")
    rows = parse_all(FMT, objs, ctx())  # a RecordError would fail the test here
    assert [row["task"] for row in rows] == [
        "classification", "multilabel_classification", "object_detection", "instance_segmentation", "object_detection",
    ]
    assert rows[-1]["objects"] == []  # "label": [] is an image without objects
    assert_round_trip(FMT, objs, ctx())


def test_image_url_forms_are_kept_as_written():
    objs = read_jsonl(SAMPLES / "multiclass.jsonl")
    uris = [parse_one(o)["image"]["uri"] for o in objs]
    assert uris == [o["image_url"] for o in objs]
    assert uris[0].startswith("AmlDatastore://") and uris[1].startswith("azureml://datastores/")


def test_relative_image_url_resolves_against_the_manifest():
    row = parse_one({"image_url": "images/a.jpg", "label": "cat"})
    assert row["image"]["uri"] == "memory://manifests/images/a.jpg"


@pytest.mark.parametrize("width, expected", [(400, 400), ("400px", 400), ("400", 400), (" 400 PX", 400), (400.0, 400)])
def test_image_width_forms(width, expected):
    row = parse_one({"image_url": "a.jpg", "image_details": {"width": width, "height": "20px"}, "label": "cat"})
    assert (row["image"]["width"], row["image"]["height"]) == (expected, 20)
    assert row["issues"] == []


# --- malformed input ------------------------------------------------------------------------

# malformed.jsonl, line by line: warning codes on a kept row, or the dead-letter code.
MALFORMED = [
    {"warnings": {"NUMBER_AS_STRING"}},
    {"warnings": {"BBOX_OUT_OF_RANGE"}},
    {"warnings": {"BBOX_INVERTED"}},
    {"warnings": {"POLYGON_INVALID"}},  # odd count
    {"warnings": {"POLYGON_INVALID"}},  # 2 points
    {"warnings": {"POLYGON_INVALID", "NUMBER_AS_STRING"}},  # outside [0, 1], "0.647", isCrowd "1"
    {"warnings": {"LABEL_MISSING"}},  # a box without a class name
    {"warnings": {"FIELD_UNREADABLE"}},  # width "wide", isCrowd "maybe"
    {"warnings": {"LABEL_MISSING"}},  # no label at all: an unlabeled image
    {"warnings": {"NUMBER_AS_STRING"}},  # probs as strings
    {"error": "MISSING_IMAGE_URL"},
    {"error": "INVALID_FIELD_TYPE"},  # label 7
    {"error": "INVALID_FIELD_TYPE"},  # topX "left"
    {"error": "GEOMETRY_MISSING"},  # half a box
    {"error": "INVALID_FIELD_TYPE"},  # strings and boxes mixed
    {"error": "INVALID_FIELD_TYPE"},  # 1 prob for 2 labels
]


def test_malformed_lines_get_their_codes():
    objs = read_jsonl(SAMPLES / "malformed.jsonl")
    assert len(objs) == len(MALFORMED)
    for number, (obj, expected) in enumerate(zip(objs, MALFORMED), start=1):
        if "error" in expected:
            with pytest.raises(RecordError) as caught:
                FMT.parse(obj, ctx())
            assert caught.value.code == expected["error"], number
        else:
            row = parse_one(obj)
            assert codes(row) == expected["warnings"], (number, row["issues"])
            assert all(found["severity"] == "warning" for found in row["issues"])


def test_string_numbers_are_read_as_numbers():
    objs = read_jsonl(SAMPLES / "malformed.jsonl")
    box_row, polygon_row = parse_one(objs[0]), parse_one(objs[5])
    assert box_row["objects"][0]["bbox"] == {"x_min": 0.26, "y_min": 0.406, "x_max": 0.735, "y_max": 0.701}
    assert box_row["objects"][0]["is_crowd"] is True
    assert polygon_row["objects"][0]["polygon"] == [[0.24, 0.65, 1.234, 0.654, 0.23, 0.647]]
    assert polygon_row["objects"][0]["is_crowd"] is True
    probs_row = parse_one(objs[9])
    assert [label["score"] for label in probs_row["labels"]] == pytest.approx([0.9, 0.1])
    assert probs_row["task"] == "classification"


def test_out_of_range_and_inverted_boxes_are_kept_as_written():
    objs = read_jsonl(SAMPLES / "malformed.jsonl")
    assert parse_one(objs[1])["objects"][0]["bbox"] == {"x_min": -0.2, "y_min": 0.406, "x_max": 1.5, "y_max": 0.701}
    assert parse_one(objs[2])["objects"][0]["bbox"]["x_min"] == 0.735


def test_unreadable_optional_values_are_kept_in_records_but_never_written():
    obj = read_jsonl(SAMPLES / "malformed.jsonl")[7]
    row = parse_one(obj)
    assert row["image"]["width"] is None and row["image"]["height"] == 666
    assert row["objects"][0]["is_crowd"] is None
    assert orjson.loads(row["extra"])["azure_automl"]["image_details"]["width"] == "wide"  # kept in records/
    (line,), _ = write([row])
    assert line["image_details"] == {"height": 666, **({"format": row["image"]["format"]} if row["image"]["format"] else {})}
    assert "isCrowd" not in line["label"][0]  # "maybe" is not a value AutoML reads
    again = parse_one(line)
    assert not {i["code"] for i in again["issues"]} & {"FIELD_UNREADABLE"}
    assert [{**o, "attributes": None} for o in row["objects"]] == again["objects"] and again["image"] == row["image"]


def test_bbox_tolerance_option():
    obj = {"image_url": "a.jpg", "label": [{"label": "c", "topX": -1e-9, "topY": 0.1, "bottomX": 1.0000005, "bottomY": 0.2}]}
    assert codes(parse_one(obj)) == set()  # within the default 1e-6
    assert codes(parse_one(obj, bbox_tolerance=0.0)) == {"BBOX_OUT_OF_RANGE"}
    far = {"image_url": "a.jpg", "label": [{"label": "c", "topX": -0.01, "topY": 0.1, "bottomX": 0.5, "bottomY": 0.2}]}
    assert codes(parse_one(far)) == {"BBOX_OUT_OF_RANGE"}
    assert codes(parse_one(far, bbox_tolerance=0.02)) == set()


def test_flat_polygon_is_read_as_one_ring_with_a_warning():
    row = parse_one({"image_url": "a.jpg", "label": [{"label": "c", "polygon": [0.1, 0.1, 0.5, 0.1, 0.5, 0.5]}]})
    assert row["objects"][0]["polygon"] == [[0.1, 0.1, 0.5, 0.1, 0.5, 0.5]]
    assert codes(row) == {"POLYGON_INVALID"}


def test_many_findings_make_one_issue_per_code():
    label = [{"label": "c", "topX": "0.1", "topY": "0.1", "bottomX": "0.2", "bottomY": "0.2"} for _ in range(10)]
    row = parse_one({"image_url": "a.jpg", "label": label})
    (found,) = row["issues"]
    assert found["code"] == "NUMBER_AS_STRING"
    assert found["message"].endswith("and 35 more")


@pytest.mark.parametrize("obj, code", [
    ([1, 2], "NOT_AN_OBJECT"),
    ({"image_url": "", "label": "cat"}, "MISSING_IMAGE_URL"),
    ({"image_url": 5, "label": "cat"}, "INVALID_FIELD_TYPE"),
    ({"image_url": "a.jpg", "label": {"name": "cat"}}, "INVALID_FIELD_TYPE"),
    ({"image_url": "a.jpg", "label": [{"label": "c", "polygon": "0.1 0.2"}]}, "INVALID_FIELD_TYPE"),
    ({"image_url": "a.jpg", "label": [{"label": "c", "topX": "nan", "topY": 0, "bottomX": 1, "bottomY": 1}]}, "INVALID_FIELD_TYPE"),
    ({"image_url": "a.jpg", "label": [{"label": "c", "isCrowd": 0}]}, "GEOMETRY_MISSING"),
    ({"filename": "x.jpg", "boxes": [{"label": "c", "score": 0.5}]}, "GEOMETRY_MISSING"),
    ({"filename": "x.jpg", "boxes": {"box": {}}}, "INVALID_FIELD_TYPE"),
])
def test_lines_that_cannot_be_rows_are_record_errors(obj, code):
    with pytest.raises(RecordError) as caught:
        FMT.parse(obj, ctx())
    assert caught.value.code == code


# --- extra, predictions ---------------------------------------------------------------------

def test_unknown_keys_are_kept_and_written_back():
    obj = {
        "image_url": "a.jpg",
        "image_details": {"format": "jpg", "width": 10, "height": 20, "dpi": 72},
        "label": [{"label": "c", "topX": 0.1, "topY": 0.1, "bottomX": 0.2, "bottomY": 0.2, "occluded": True}],
        "label_confidence": [0.8],
    }
    row = parse_one(obj)
    assert schema.loads_extra(row["extra"]) == {"azure_automl": {"image_details": {"dpi": 72}, "label_confidence": [0.8]}}
    assert schema.loads_extra(row["objects"][0]["attributes"]) == {"azure_automl": {"occluded": True}}
    (line,), _ = write([row])
    assert line["image_details"] == {"format": "jpg", "width": 10, "height": 20, "dpi": 72}
    assert line["label_confidence"] == [0.8]
    assert line["label"][0]["occluded"] is True
    assert_round_trip(FMT, [obj], ctx())


def test_prediction_task_option_overrides_the_softmax_guess():
    obj = {"filename": "x.jpg", "probs": [0.6, 0.4], "labels": ["a", "b"]}
    assert parse_one(obj)["task"] == "classification"
    assert parse_one(obj, prediction_task="multilabel_classification")["task"] == "multilabel_classification"
    assert parse_one({**obj, "probs": [0.9, 0.8]})["task"] == "multilabel_classification"


def test_written_scores_have_the_digits_they_were_read_with():
    lines, _ = write(parse_all(FMT, read_jsonl(SAMPLES / "inference_output.jsonl"), ctx()))
    assert lines[0]["probs"] == [2.098e-06, 4.783e-08, 0.999, 8.637e-06]
    assert [b["score"] for b in lines[2]["boxes"]] == [0.937, 0.891]


# --- writing rows from other formats ----------------------------------------------------------

def other_row(task: str, objects=None, labels=None, origin="ground_truth", uri="s3://bucket/images/a/1.jpg") -> dict:
    return {"record_id": "r1", "image": {"uri": uri, "width": 100, "height": 50}, "task": task,
            "origin": origin, "labels": labels or [], "objects": objects or []}


ROTATED = {  # a rotated box from another format: corners in polygon, envelope in bbox
    "label": "car", "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.5, "y_max": 0.5}, "rotation": 45.0,
    "polygon": [[0.3, 0.1, 0.5, 0.3, 0.3, 0.5, 0.1, 0.3]],
}


def test_detection_writes_the_bbox_and_segmentation_writes_polygons():
    (detection, segmentation), wctx = write([other_row("object_detection", [ROTATED]), other_row("instance_segmentation", [ROTATED])])
    assert not wctx.rejected
    assert detection["label"] == [{"label": "car", "topX": 0.1, "topY": 0.1, "bottomX": 0.5, "bottomY": 0.5}]
    assert segmentation["label"] == [{"label": "car", "polygon": ROTATED["polygon"]}]
    assert detection["image_details"] == {"width": 100, "height": 50}


def test_segmentation_object_with_only_a_box_writes_its_rectangle():
    box_only = {"label": "car", "bbox": {"x_min": 0.1, "y_min": 0.2, "x_max": 0.3, "y_max": 0.4}, "is_crowd": True}
    (line,), _ = write([other_row("instance_segmentation", [box_only])])
    assert line["label"] == [{"label": "car", "polygon": [[0.1, 0.2, 0.3, 0.2, 0.3, 0.4, 0.1, 0.4]], "isCrowd": 1}]
    assert parse_one(line)["objects"][0]["bbox"] == box_only["bbox"]


def test_segmentation_with_its_own_box_keeps_it():
    obj = {"image_url": "a.jpg", "label": [{"label": "c", "topX": 0.0, "topY": 0.0, "bottomX": 0.9, "bottomY": 0.9,
                                             "polygon": [[0.1, 0.1, 0.5, 0.1, 0.5, 0.5]]}]}
    assert parse_one(obj)["objects"][0]["bbox"]["x_max"] == 0.9
    assert_round_trip(FMT, [obj], ctx())


def test_predictions_from_other_formats_write_the_endpoint_form():
    scored = {"label": "car", "score": 0.75, "bbox": {"x_min": 0.1, "y_min": 0.2, "x_max": 0.3, "y_max": 0.4}}
    (line,), _ = write([other_row("object_detection", [scored], origin="prediction")])
    assert line == {"filename": "s3://bucket/images/a/1.jpg", "image_details": {"width": 100, "height": 50},
                    "boxes": [{"box": {"topX": 0.1, "topY": 0.2, "bottomX": 0.3, "bottomY": 0.4}, "label": "car", "score": 0.75}]}


@pytest.mark.parametrize("row, why", [
    (other_row("unlabeled"), "unlabeled"),
    (other_row("classification", labels=[{"name": "a"}, {"name": "b"}]), "one label"),
    (other_row("classification", labels=[{"name": "a"}], origin="prediction"), "score"),
    (other_row("classification", labels=[{"name": "a"}], uri=None), "image uri"),
])
def test_unrepresentable_rows_are_rejected(row, why):
    lines, wctx = write([row, other_row("classification", labels=[{"name": "ok"}])])
    assert [line["label"] for line in lines] == ["ok"]
    ((_, code, message),) = wctx.rejected
    assert code == "OUTPUT_UNREPRESENTABLE" and why in message


def test_an_object_without_geometry_is_refused_alone():
    box = {"label": "car", "bbox": {"x_min": 0.1, "y_min": 0.2, "x_max": 0.3, "y_max": 0.4}}
    point = {"label": "nose", "keypoints": [{"label": "nose", "x": 0.2, "y": 0.3, "visible": True}]}
    for task in ("object_detection", "keypoints"):
        (line,), wctx = write([other_row(task, [point, box])])
        assert [entry["label"] for entry in line["label"]] == ["car"]
        assert wctx.rejected == [] and [(i, code) for _, i, code, _ in wctx.rejected_objects] == [(0, "OBJECT_UNREPRESENTABLE")]
        assert wctx.objects_written == 1
    # nothing left: AutoML's image without objects
    (line,), wctx = write([other_row("object_detection", [point])])
    assert line["label"] == [] and len(wctx.rejected_objects) == 1


def test_datastore_map_rewrites_image_url_prefixes():
    rows = [other_row("classification", labels=[{"name": "a"}], uri=uri) for uri in
            ("s3://bucket/images/a/1.jpg", "s3://bucket/images2/1.jpg", "s3://bucket/images/special/2.jpg", "https://x/1.jpg")]
    mapping = [("s3://bucket/images", "azureml://datastores/images/paths/images"),
               ("s3://bucket/images/special/", "azureml://datastores/special/paths")]
    lines, _ = write(rows, datastore_map=mapping)
    assert [line["image_url"] for line in lines] == [
        "azureml://datastores/images/paths/images/a/1.jpg",
        "s3://bucket/images2/1.jpg",  # a prefix matches whole path segments only
        "azureml://datastores/special/paths/2.jpg",  # the longest prefix wins
        "https://x/1.jpg",
    ]
    with pytest.raises(ValueError):
        write(rows, datastore_map=[("only-one",)])


# --- detection ------------------------------------------------------------------------------

def test_detect_share_and_other_formats():
    training = read_jsonl(SAMPLES / "object_detection.jsonl")
    inference = read_jsonl(SAMPLES / "inference_output.jsonl")
    sagemaker_like = [{"source-ref": "s3://b/1.jpg", "job": 1, "job-metadata": {}}] * 2
    assert FMT.detect(training + inference) == 1.0
    assert FMT.detect(training[:2] + sagemaker_like) == 0.5
    assert FMT.detect(sagemaker_like + [{"filename": "x.jpg"}]) == 0.0  # filename alone is not output
    assert FMT.detect([]) == 0.0


def test_digit_like_characters_in_a_size_are_unreadable_not_a_crash():
    obj = {"image_url": "a.jpg", "image_details": {"width": "\u00b2", "height": 10}, "label": "x"}
    (row,) = FMT.parse(obj, ctx()).rows
    assert row["image"]["width"] is None and row["image"]["height"] == 10
    assert "FIELD_UNREADABLE" in [i["code"] for i in row["issues"]]


def test_datastore_map_from_a_bare_scheme():
    from transforms.formats.azure_automl import DatastoreMap

    rewrite = DatastoreMap([("s3://", "azureml://datastores/img/paths/")]).rewrite
    assert rewrite("s3://bucket/a.jpg") == "azureml://datastores/img/paths/bucket/a.jpg"
    assert rewrite("gs://bucket/a.jpg") == "gs://bucket/a.jpg"
