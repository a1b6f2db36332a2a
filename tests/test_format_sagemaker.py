"""The sagemaker format: every Ground Truth shape, errors with codes, and the round trip."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import orjson
import pytest

from tests.conftest import need_shared_data
from tests.format_contract import assert_detects, assert_round_trip, canonical
from transforms import errors
from transforms.errors import RecordError
from transforms.formats.base import ParseContext, get_format

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "sagemaker"
FMT = get_format("sagemaker")
CTX = ParseContext(uri="/data/manifests/m.manifest", base_uri="/data/manifests")


def parse_one(obj, ctx=CTX) -> dict:
    (row,) = canonical(FMT.parse(obj, ctx).rows)
    return row


def sample(name: str) -> list[dict]:
    return [orjson.loads(line) for line in (SAMPLES / name).read_bytes().splitlines() if line.strip()]


def seed_examples(name: str) -> list[dict]:
    """The JSON lines quoted in a seed page (whitespace and the page's `s3: //` typo kept)."""
    path = need_shared_data("seeds", name)
    found = []
    for match in re.finditer(r"^\s*(\{.*\})\s*$", path.read_text(), flags=re.MULTILINE):
        try:
            found.append(orjson.loads(match.group(1)))
        except orjson.JSONDecodeError:
            continue
    return found


LFV_ANOMALY = {
    "source-ref": "s3://bucket/image/anomaly/abnormal-1.jpg",
    "anomaly-label-metadata": {
        "confidence": 1,
        "job-name": "labeling-job/auto-label",
        "class-name": "anomaly",
        "human-annotated": "yes",
        "creation-date": "2020-11-10T03:37:09.600",
        "type": "groundtruth/image-classification",
    },
    "anomaly-label": 0,
}


def test_classification_label_is_the_class_name_not_the_number():
    row = parse_one(LFV_ANOMALY)  # value 0, class-name anomaly: class-name decides
    assert row["task"] == "classification"
    assert row["labels"] == [{"name": "anomaly", "score": 1.0}]
    assert row["annotation"]["job_name"] == "labeling-job/auto-label"
    assert row["annotation"]["human_annotated"] is True
    assert row["annotation"]["created_at"] == dt.datetime(2020, 11, 10, 3, 37, 9, 600000, tzinfo=dt.timezone.utc)
    assert row["origin"] == "ground_truth"


def test_any_class_name_is_kept_as_written():
    obj = dict(LFV_ANOMALY)
    obj["anomaly-label-metadata"] = dict(obj["anomaly-label-metadata"], **{"class-name": "Scratched Lid"})
    assert parse_one(obj)["labels"][0]["name"] == "Scratched Lid"


@pytest.mark.parametrize("seed", ["000_db9ab5d90ee33870.txt", "001_67bad1425c9ed028.txt", "002_0103263986cb9a74.txt"])
def test_seed_examples_parse_and_round_trip(seed):
    examples = seed_examples(seed)
    assert examples, "the seed page quotes JSON lines"
    rows, _ = assert_round_trip(FMT, examples, CTX)
    names = {label["name"].lower() for row in rows for label in row["labels"]}
    assert names <= {"normal", "anomaly"} and names
    if seed.startswith("002"):
        (row,) = [r for r in rows if r["mask"]]
        assert row["task"] == "semantic_segmentation"
        assert [c["class_name"] for c in row["mask"]["color_map"]] == ["BACKGROUND", "scratch", "dent"]
        assert row["mask"]["color_map"][0]["hex_color"] == "#ffffff"


def test_realdata_lookout_template():
    path = need_shared_data("realdata", "lookout-for-vision-getting-started", "manifests", "template.manifest")
    base = str(path.parent)
    ctx = ParseContext(uri=str(path), base_uri=base)
    objs = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    rows = canonical([r for o in objs for r in FMT.parse(o, ctx).rows])
    assert len(rows) == 63
    classes = [row["labels"][0]["name"] for row in rows]
    assert classes.count("anomaly") == 32 and classes.count("normal") == 31
    masks = [row["mask"]["uri"] for row in rows if row["mask"]]
    assert len(masks) == 32 and all(m.startswith(base + "/mask-images/") for m in masks)
    # The mask metadata's creation-date is a JavaScript Date string; it parses, no warning.
    assert all(not row["issues"] for row in rows)
    assert_round_trip(FMT, objs, ctx)
    assert_detects(FMT, objs)


def test_js_date_form():
    obj = {"source-ref": "a.jpg", "x": 1, "x-metadata": {"class-name": "c", "creation-date": "Mon Aug 22 2022 13:52:52 GMT-0700 (Pacific Daylight Time)"}}
    assert parse_one(obj)["annotation"]["created_at"] == dt.datetime(2022, 8, 22, 20, 52, 52, tzinfo=dt.timezone.utc)


def test_bad_date_is_a_warning_and_the_record_is_kept():
    obj = {"source-ref": "a.jpg", "x": 1, "x-metadata": {"class-name": "c", "creation-date": "yesterday"}}
    row = parse_one(obj)
    assert row["annotation"]["created_at"] is None
    assert [i["code"] for i in row["issues"]] == [errors.INVALID_DATE]


def test_relative_refs_resolve_against_the_manifest_folder():
    row = parse_one({"source-ref": "../images/a.jpg", "m-ref": "masks/a.png", "m-ref-metadata": {"internal-color-map": {}}})
    assert row["image"]["uri"] == "/data/images/a.jpg"
    assert row["mask"]["uri"] == "/data/manifests/masks/a.png"
    s3 = ParseContext(uri="s3://b/p/m.manifest", base_uri="s3://b/p")
    assert parse_one({"source-ref": "img/a.jpg"}, s3)["image"]["uri"] == "s3://b/p/img/a.jpg"
    assert parse_one({"source-ref": "gs://o/a.jpg"}, s3)["image"]["uri"] == "gs://o/a.jpg"


def test_only_source_ref_is_unlabeled():
    row = parse_one({"source-ref": "s3://b/a.jpg"})
    assert row["task"] == "unlabeled" and row["labels"] == [] and row["annotation"] is None


def test_ground_truth_sample_shapes():
    by_image = {Path(r["image"]["uri"]).name: r for r in canonical([r for o in sample("ground-truth.jsonl") for r in FMT.parse(o, CTX).rows])}
    multilabel = by_image["street-1.jpg"]
    assert multilabel["task"] == "multilabel_classification"
    assert [(lab["name"], round(lab["score"], 2)) for lab in multilabel["labels"]] == [("car", 0.91), ("bicycle", 0.62)]
    detection = by_image["street-2.jpg"]
    assert detection["task"] == "object_detection"
    assert (detection["image"]["width"], detection["image"]["height"]) == (64, 48)
    assert [o["label"] for o in detection["objects"]] == ["car", "person"]
    assert detection["objects"][0]["bbox"] == {"x_min": 4 / 64, "y_min": 6 / 48, "x_max": 24 / 64, "y_max": 18 / 48}
    assert detection["objects"][0]["area"] == 240
    chained = by_image["street-3.jpg"]
    assert len(chained["objects"]) == 3
    (raw_chained,) = FMT.parse(sample("ground-truth.jsonl")[2], CTX).rows
    assert raw_chained["source"]["attribute"] == "bounding-box,bounding-box-chained"
    rekognition = by_image["kitchen-1.jpg"]
    assert rekognition["task"] == "multilabel_classification"
    assert [lab["name"] for lab in rekognition["labels"]] == ["kitchen", "window"]
    segmentation = by_image["street-4.jpg"]
    assert segmentation["task"] == "semantic_segmentation" and segmentation["labels"] == []
    assert by_image["street-5.jpg"]["task"] == "unlabeled"
    assert by_image["far-away.jpg"]["image"]["uri"] == "s3://example-bucket/images/far-away.jpg"


@pytest.mark.parametrize("name", ["ground-truth.jsonl", "lookout-for-vision.manifest"])
def test_samples_round_trip_and_detect(name):
    objs = sample(name)
    assert_round_trip(FMT, objs, CTX)
    assert_detects(FMT, objs)


def test_metadata_before_label_and_any_attribute_name():
    obj = {"zz-meta-first-metadata": {"class-name": "Normal", "type": "groundtruth/image-classification"}, "zz-meta-first": 7, "source-ref": "a.jpg"}
    (row,) = FMT.parse(obj, CTX).rows
    assert row["labels"][0]["name"] == "Normal" and row["source"]["attribute"] == "zz-meta-first"


def test_unknown_type_kept_in_extra_with_a_warning():
    obj = {"source-ref": "a.jpg", "verify": {"x": 1}, "verify-metadata": {"type": "groundtruth/label-verification"}}
    row = parse_one(obj)
    assert [i["code"] for i in row["issues"]] == [errors.UNKNOWN_LABEL_TYPE]
    assert_round_trip(FMT, [obj], CTX)


def test_unknown_top_level_fields_survive_the_round_trip():
    obj = dict(LFV_ANOMALY, **{"my-team-note": {"reviewed": True}})
    _, encoded = assert_round_trip(FMT, [obj], CTX)
    assert orjson.loads(encoded[0])["my-team-note"] == {"reviewed": True}


@pytest.mark.parametrize(
    "obj, code",
    [
        ({"label": 1, "label-metadata": {"class-name": "x"}}, errors.MISSING_SOURCE_REF),
        ({"source-ref": "a", "m-ref": "m.png"}, errors.MISSING_LABEL_METADATA),
        ({"source-ref": "a", "lost-metadata": {"class-name": "x"}}, errors.MISSING_LABEL_METADATA),
        ({"source-ref": 5}, errors.INVALID_FIELD_TYPE),
        ({"source-ref": "a", "l": 1, "l-metadata": "not an object"}, errors.INVALID_FIELD_TYPE),
        ({"source-ref": "a", "l": 1, "l-metadata": {"class-name": 3}}, errors.INVALID_FIELD_TYPE),
        ({"source-ref": "a", "l": 1, "l-metadata": {"type": "groundtruth/image-classification"}}, errors.MISSING_CLASS_NAME),
        ({"source-ref": "a", "b": {"annotations": []}, "b-metadata": {"type": "groundtruth/object-detection"}}, errors.MISSING_IMAGE_SIZE),
        ({"source-ref": "a", "l": [0, 9], "l-metadata": {"class-map": {"0": "a"}, "type": "groundtruth/image-classification-multilabel"}}, errors.MISSING_CLASS_NAME),
    ],
)
def test_record_errors_have_codes(obj, code):
    with pytest.raises(RecordError) as caught:
        FMT.parse(obj, CTX)
    assert caught.value.code == code


def test_rows_from_elsewhere_write_default_attributes():
    from transforms.formats.base import WriteContext

    row = {
        "image": {"uri": "s3://b/a.jpg", "width": 100, "height": 50},
        "task": "object_detection",
        "labels": [],
        "objects": [{"label": "cat", "score": 0.5, "bbox": {"x_min": 0.1, "y_min": 0.2, "x_max": 0.5, "y_max": 0.6}}],
        "annotation": {"job_name": "elsewhere", "human_annotated": True},
    }
    ctx = WriteContext()
    (line,) = [orjson.loads(e) for e in FMT.write([row], ctx)]
    assert line["bounding-box"]["annotations"] == [{"class_id": 0, "left": 10, "top": 10, "width": 40, "height": 20}]
    assert line["bounding-box-metadata"]["class-map"] == {"0": "cat"}
    no_size = dict(row, image={"uri": "s3://b/a.jpg"})
    assert list(FMT.write([no_size], ctx)) == []
    assert [code for _, code, _ in ctx.rejected] == [errors.OUTPUT_UNREPRESENTABLE]


def _detection_line(class_map, boxes):
    return {
        "source-ref": "s3://b/a.jpg",
        "bb": {"image_size": [{"width": 100, "height": 100, "depth": 3}], "annotations": boxes},
        "bb-metadata": {"class-map": class_map, "type": "groundtruth/object-detection"},
    }


def test_class_ids_and_unused_classes_survive_the_writer():
    obj = _detection_line(
        {"0": "car", "1": "car", "7": "unused"},
        [{"class_id": 0, "left": 1, "top": 1, "width": 5, "height": 5}, {"class_id": 1, "left": 9, "top": 9, "width": 5, "height": 5}],
    )
    _, encoded = assert_round_trip(FMT, [obj], CTX)
    line = orjson.loads(encoded[0])
    assert [a["class_id"] for a in line["bb"]["annotations"]] == [0, 1]
    assert line["bb-metadata"]["class-map"] == {"0": "car", "1": "car", "7": "unused"}


def test_empty_source_ref_is_missing():
    with pytest.raises(RecordError) as caught:
        FMT.parse({"source-ref": " "}, CTX)
    assert caught.value.code == errors.MISSING_SOURCE_REF


def test_sagemaker_classes_option_gives_every_line_the_same_ids():
    from transforms.formats.base import WriteContext

    def foreign(label):
        return {
            "image": {"uri": f"s3://b/{label}.jpg", "width": 10, "height": 10},
            "task": "object_detection",
            "objects": [{"label": label, "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.5, "y_max": 0.5}}],
        }

    ctx = WriteContext(options=get_format("sagemaker").options({"classes": "can,carton,milk_bottle"}))
    lines = [orjson.loads(e) for e in FMT.write([foreign("carton"), foreign("can"), foreign("juice")], ctx)]
    assert [[a["class_id"] for a in line["bounding-box"]["annotations"]] for line in lines] == [[1], [0], []]
    assert lines[0]["bounding-box-metadata"]["class-map"] == {"1": "carton"}
    # a box of a class outside the list: refused alone, its line written without it
    assert ctx.rejected == []
    assert [(index, code, "juice" in message) for _, index, code, message in ctx.rejected_objects] == [(0, errors.OBJECT_UNREPRESENTABLE, True)]
    classification = {"image": {"uri": "s3://b/x.jpg"}, "task": "classification", "labels": [{"name": "milk_bottle"}]}
    (line,) = [orjson.loads(e) for e in FMT.write([classification], ctx)]
    assert line["label"] == 2 and line["label-metadata"]["class-name"] == "milk_bottle"


def test_dates_shifted_out_of_range_are_invalid_not_a_crash():
    from transforms.dates import parse_timestamp

    with pytest.raises(ValueError):
        parse_timestamp("0001-01-01T00:00:00+01:00")
    obj = {"source-ref": "a.jpg", "x": 1, "x-metadata": {"class-name": "c", "creation-date": "9999-12-31T23:59:59-01:00"}}
    assert [i["code"] for i in parse_one(obj)["issues"]] == [errors.INVALID_DATE]


def test_multilabel_rows_from_elsewhere_get_one_id_per_label():
    from transforms import schema
    from transforms.formats.base import WriteContext

    row = {"image": {"uri": "s3://b/a.jpg"}, "task": "multilabel_classification", "origin": "ground_truth",
           "labels": [{"name": n} for n in ("water_bottle", "can", "carton", "milk_bottle")]}
    rows = schema.rows_to_batch([row]).to_pylist()
    (alone,) = [orjson.loads(e) for e in FMT.write(rows, WriteContext())]
    assert alone["labels"] == [0, 1, 2, 3]
    assert alone["labels-metadata"]["class-map"] == {"0": "water_bottle", "1": "can", "2": "carton", "3": "milk_bottle"}
    # with the output's class names (the write stage's first pass) ids are sorted positions
    names = ["can", "carton", "glass", "milk_bottle", "water_bottle"]
    (job,) = [orjson.loads(e) for e in FMT.write(rows, WriteContext(classes=names))]
    assert job["labels"] == [4, 0, 1, 3]
    assert [r["labels"] for r in canonical(FMT.parse(job, CTX).rows)] == [[{"name": n, "score": None} for n in ("water_bottle", "can", "carton", "milk_bottle")]]
    # only normal / anomaly: Lookout for Vision's 0 / 1, not sorted order
    lfv = schema.rows_to_batch([{"image": {"uri": "s3://b/n.jpg"}, "task": "classification", "labels": [{"name": "anomaly"}]}]).to_pylist()
    (line,) = [orjson.loads(e) for e in FMT.write(lfv, WriteContext(classes=["anomaly", "normal"]))]
    assert line["label"] == 1
