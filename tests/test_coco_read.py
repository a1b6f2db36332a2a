"""COCO as an input, without a pipeline: a document's members located and cut into parts, the
elements keyed by image id, joined and parsed; every entry a record part, a coded dead letter
or counted. The whole job on COCO files is tests/test_coco_input.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tests.coco_fixtures import FAULTS, RESULTS, clean_document, faulty_document, write
from tests.format_contract import read_documents
from transforms.checks.rle import decode_rle
from transforms.formats.base import detect_format, document_format, get_format
from transforms.formats.coco import read
from transforms.json_array import ArrayPart, JsonArrayError, iter_json_array, member_ranges
from transforms.read_layout import sample_records, sniff

COCO = get_format("coco")


def _opener(data: bytes):
    return lambda: io.BytesIO(data)


def read_document(paths, part_bytes: int = 64):
    """What the read and join stages do, in one process (tests/format_contract.read_documents).
    -> (rows, dead letters, ok count, parsed count, elements read)."""
    return read_documents(COCO, [Path(p) for p in paths], part_bytes, base_uri="/data")


def test_member_ranges_find_every_top_level_value_past_brackets_and_quotes_in_strings():
    doc = {"info": {"a": [1, {"b": "}]\"\\"}]}, "images": [{"id": i, "file_name": f"{i}[.jpg"} for i in range(40)], "annotations": [], "n": 5, "s": "x}"}
    for indent in (None, 2):
        data = b"\xef\xbb\xbf" + json.dumps(doc, indent=indent).encode()
        ranges = member_ranges(io.BytesIO(data), chunk_size=16)  # chunks far smaller than a member
        assert list(ranges) == list(doc)
        assert {name: json.loads(data[start:end]) for name, (start, end) in ranges.items()} == doc


@pytest.mark.parametrize("bad", [b'{"images": [1, 2}', b'{"images" [1]}', b'{"images": [1]', b'{"images": [1]} x', b"[1]"])
def test_a_malformed_document_is_refused_where_it_breaks(bad):
    with pytest.raises(JsonArrayError):
        member_ranges(io.BytesIO(bad))


def test_plan_cuts_each_member_into_parts_that_hold_every_element_once_in_order(tmp_path):
    doc = clean_document()
    data = json.dumps(doc, indent=1).encode()
    parts = read.plan_document(_opener(data), 100)
    assert {member for member, *_ in parts} == {"images", "annotations", "categories"}
    assert len([p for p in parts if p[0] == "annotations"]) > 1  # the annotations are read by several workers
    for member in read.MEMBERS:
        found = []
        for name, start, end, before, count in parts:
            if name == member:
                assert before == len(found) and count >= 1
                found += [json.loads(raw) for _, raw in iter_json_array(ArrayPart(io.BytesIO(data), start, end))]
        assert found == doc[member]


def test_a_document_is_detected_by_its_head_and_a_results_file_by_its_elements(tmp_path):
    one_line = json.dumps(clean_document()).encode()
    assert document_format(one_line[:300]) == "coco"  # a one-line file of any size: its head says so
    assert sniff(one_line[:300], complete=False) == "jsonl"  # which the layout sniff alone would not
    assert document_format(b'{"annotations": [{"result": []}], "data": {"image": "x.jpg"}}') is None  # a Label Studio task
    results = json.dumps(RESULTS).encode()
    assert detect_format(sample_records(results, "json_array", True)) == "coco"
    assert read.plan_document(_opener(results), 40)[0][0] == read.RESULTS


def test_every_entry_of_a_clean_document_is_part_of_a_record(tmp_path):
    path = write(tmp_path / "instances.json", clean_document(), indent=2)
    rows, dead, ok, parsed, elements = read_document([path])
    doc = clean_document()
    assert dead == []
    assert elements == len(doc["images"]) + len(doc["annotations"]) + len(doc["categories"])
    assert ok + parsed == elements  # images parsed; annotations and categories counted ok
    assert len(rows) == len(doc["images"]) == 5
    by_file = {row["image"]["uri"]: row for row in rows}
    assert by_file["/data/images/img4.jpg"]["objects"] == [] and by_file["/data/images/img4.jpg"]["task"] == "object_detection"
    first = by_file["/data/images/img1.jpg"]
    polygon, crowd = first["objects"]
    assert polygon["label"] == "cat" and polygon["polygon"][0][:2] == [1.5 / 64, 2 / 48]
    assert polygon["bbox"] == {"x_min": 1.5 / 64, "y_min": 2 / 48, "x_max": 11.5 / 64, "y_max": 22 / 48}
    assert crowd["is_crowd"] and crowd["label"] == "blob"
    pixels = decode_rle(crowd["mask_rle"], 64, 48)[:, :, 3] >= 128  # the brush RLE holds COCO's mask
    assert int(pixels.sum()) == crowd["area"] == 10 * 25 + 10 * 20
    second = by_file["/data/images/img2.jpg"]
    assert second["task"] == "instance_segmentation"  # its RLE; the person's keypoints ride on its box
    (person,) = [obj for obj in second["objects"] if obj["label"] == "person"]
    assert [(p["label"], p["visible"]) for p in person["keypoints"]] == [("nose", True), ("right_eye", False)]  # v=0 is no point
    assert json.loads(first["extra"]) == {"coco_image": {"id": 1, "license": 1}}


def test_each_fault_is_a_dead_letter_with_its_code_and_nothing_is_lost(tmp_path):
    doc = faulty_document()
    path = write(tmp_path / "instances.json", doc)
    rows, dead, ok, parsed, elements = read_document([path])
    codes = {}
    for letter in dead:
        codes[letter["code"]] = codes.get(letter["code"], 0) + 1
    assert codes == FAULTS
    assert ok + parsed + len(dead) == elements
    assert len(rows) == 5  # image 5 once (its first entry), image 6 refused
    (again,) = [letter for letter in dead if letter["code"] == "COCO_IMAGE_ID_REPEATED"]
    assert "again.jpg" in again["raw"] and again["line"] == 6  # where the repeat was read


def test_results_join_their_instances_as_prediction_records_and_alone_have_no_image(tmp_path):
    instances = write(tmp_path / "instances.json", clean_document())
    results = write(tmp_path / "results.json", RESULTS)
    rows, dead, ok, parsed, elements = read_document([instances, results])
    assert dead == [] and ok + parsed == elements
    predictions = [row for row in rows if row["origin"] == "prediction"]
    assert len(predictions) == 2 and len(rows) == 5 + 2
    scores = sorted(obj["score"] for row in predictions for obj in row["objects"])
    assert scores == [0.25, 0.5, 0.9]
    _, dead, ok, parsed, elements = read_document([results])
    assert [letter["code"] for letter in dead] == ["COCO_IMAGE_MISSING"] * len(RESULTS) and parsed == 0


def test_an_rle_of_another_size_than_its_image_is_refused_alone(tmp_path):
    doc = clean_document()
    doc["annotations"][2]["segmentation"] = mask_utils.encode(np.asfortranarray(np.ones((4, 4), np.uint8)))
    doc["annotations"][2]["segmentation"]["counts"] = doc["annotations"][2]["segmentation"]["counts"].decode()
    rows, dead, *_ = read_document([write(tmp_path / "i.json", doc)])
    assert [letter["code"] for letter in dead] == ["INVALID_FIELD_TYPE"] and "size" in dead[0]["message"]
    assert len(rows) == 5


def _transform_labels(pipeline) -> list[str]:
    from apache_beam.pipeline import PipelineVisitor

    found = []

    class _Visitor(PipelineVisitor):
        def visit_transform(self, node):
            found.append(node.full_label)

    pipeline.visit(_Visitor())
    return found


@pytest.mark.parametrize(
    "names, extra, join, around",
    [
        (["in.json"], [], True, False),  # detected from the file's head: every input is COCO, nothing goes around the join
        (["in.json", "other.manifest"], [], True, True),  # a mix: the other batches go around the join
        (["in.json"], ["--format=coco"], True, False),
        (["other.manifest"], [], False, False),  # no input is COCO: the graph has no join
        (["export.json"], [], False, False),  # a .json that is no COCO (a Label Studio export)
    ],
)
def test_the_join_is_wired_only_when_the_job_reads_coco(tmp_path, names, extra, join, around):
    from pipelines import runners
    from pipelines.normalize_manifests import build
    from pipelines.options import parse_launch

    contents = {
        "in.json": json.dumps(clean_document()),
        "other.manifest": '{"source-ref": "s3://b/x.jpg", "label": 0, "label-metadata": {"class-name": "cat"}}\n',
        "export.json": json.dumps([{"id": 1, "data": {"image": "x.jpg"}, "annotations": []}]),
    }
    args = []
    for name in names:
        (tmp_path / name).write_text(contents[name])
        args += ["--input", str(tmp_path / name)]
    launch = parse_launch([*args, "--output", str(tmp_path / "out"), "--runner=FnApiRunner", *extra])
    pipeline = runners.new_pipeline(launch.pipeline_options)
    build(pipeline, launch.job, str(tmp_path / "staging"), inputs=launch.inputs)
    labels = _transform_labels(pipeline)
    assert any(label.startswith("JoinDocuments/GroupByBucket") for label in labels) == join
    assert any(label.startswith("JoinDocuments/DocumentParts") for label in labels) == around


def test_spilled_entries_come_back_grouped_by_key_each_key_in_one_bucket(tmp_path):
    from transforms import spill

    def open_file(url, mode):
        return open(url, mode)

    entries = [(i % 7, f"entry {i}\n{{}}".encode()) for i in range(100)] + [("7", b"a string key"), (7, b"")]
    first = spill.write_buckets(open_file, str(tmp_path), entries[:60], 3)
    second = spill.write_buckets(open_file, str(tmp_path), entries[60:], 3)
    groups = {}
    for bucket in range(3):
        urls = [url for b, url in first + second if b == bucket]
        for key, values in spill.read_bucket(open_file, urls).items():
            assert key not in groups  # a key lives in one bucket only
            assert all(spill.bucket_of(key, 3) == bucket for _ in values)
            groups[key] = values
    assert groups == {key: [value for k, value in entries if k == key and type(k) is type(key)] for key, _ in entries}
    assert spill.bucket_count(0) == 1 and spill.bucket_count(2 << 30) == 128 and spill.bucket_count(1 << 50) == spill.MAX_BUCKETS
