"""The Label Studio fast path (transforms/formats/label_studio/fast_tasks.py) against parse.py.

Each variant below is a task the reference reads in some other way than a plain rectangle task
(a warning, a skip, several rows, a polygon, a score kept on the object...): the fast path must
decline it, and whatever it takes must be exactly the reference's row. Batches mix the
variants with clean tasks, under each annotations mode.
"""

from __future__ import annotations

import copy
import random

import orjson
import pytest

from benchmarks.label_studio_convert import LABEL_STUDIO_SHAPES, rectangles_task, task
from transforms.formats.base import ParseContext, get_format
from transforms.formats.label_studio.fast_tasks import TaskColumnsPath
from transforms.normalizer import RecordNormalizer
from transforms.schema import RawBatch


def _first(obj: dict) -> dict:
    return obj["annotations"][0]["result"][0]


def _set(path_fn, key, value):
    def change(obj):
        path_fn(obj)[key] = value
        return obj

    return change


def _second_annotation(obj):
    obj["annotations"].append({**copy.deepcopy(obj["annotations"][0]), "id": 99})
    return obj


def _two(obj) -> list[dict]:
    """The annotation's results, a second box added when it has one."""
    results = obj["annotations"][0]["result"]
    if len(results) < 2:
        results.append({**copy.deepcopy(results[0]), "id": "second"})
    return results


def _relation(obj):
    first, second = _two(obj)[:2]
    obj["annotations"][0]["result"].append({"from_id": first["id"], "to_id": second["id"], "type": "relation", "direction": "right"})
    return obj


def _choices(obj):
    obj["annotations"][0]["result"].append({"id": "c1", "type": "choices", "from_name": "q", "to_name": "image", "value": {"choices": ["day"]}})
    return obj


def _prediction(obj):
    obj["predictions"] = [{"id": 5, "model_version": "m", "score": 0.5, "result": copy.deepcopy(obj["annotations"][0]["result"])}]
    return obj


def _no_size(obj):
    for result in obj["annotations"][0]["result"]:
        del result["original_width"], result["original_height"]
    return obj


def _duplicate_id(obj):
    results = _two(obj)
    results[1]["id"] = results[0]["id"]
    return obj


def _other_size_on_one(obj):
    _first(obj)["original_width"] = 640
    return obj


def _second_image(obj):
    obj["data"]["other"] = "/data/b.jpg"
    _first(obj)["to_name"] = "other"
    _two(obj)[1]["to_name"] = "image"
    return obj


def _value(key, value):
    return _set(lambda obj: _first(obj)["value"], key, value)


def _result(key, value):
    return _set(_first, key, value)


def _unit(key, value):
    return _set(lambda obj: obj["annotations"][0], key, value)


def _polygon(points):
    def change(obj):
        first = _first(obj)
        first["type"] = "polygonlabels"
        first["value"] = {"points": points, "closed": True, "polygonlabels": first["value"]["rectanglelabels"]}
        return obj

    return change


#: variant name -> (change of a clean task, whether the fast path may take it)
VARIANTS = {
    "clean": (lambda obj: obj, True),
    "rotated": (_value("rotation", 30), False),
    "rotation_float_zero": (_value("rotation", 0.0), True),
    "rotation_null": (_value("rotation", None), True),
    "no_rotation": (lambda obj: (_first(obj)["value"].pop("rotation"), obj)[1], True),
    "x_as_text": (_value("x", "12"), False),
    "x_as_bool": (_value("x", True), False),
    "no_x": (lambda obj: (_first(obj)["value"].pop("x"), obj)[1], False),
    "out_of_range": (_value("x", 99.5), False),
    "negative_width": (_value("width", -5.0), True),
    "labels_key": (lambda obj: (_first(obj)["value"].__setitem__("labels", _first(obj)["value"].pop("rectanglelabels")), obj)[1], False),
    "no_label": (_value("rectanglelabels", []), False),
    "two_labels": (_value("rectanglelabels", ["car", "bus"]), True),
    "label_number": (_value("rectanglelabels", [7]), False),
    "score": (_result("score", 0.9), False),
    "score_null": (_result("score", None), True),
    "parent": (_result("parentID", "abc"), False),
    "type_case": (_result("type", "RectangleLabels"), False),
    "polygon": (_result("type", "polygonlabels"), False),
    "int_id": (_result("id", 7), False),
    "no_id": (lambda obj: (_first(obj).pop("id"), obj)[1], False),
    "duplicate_id": (_duplicate_id, False),
    "written_control_name": (_result("from_name", "label__rectanglelabels"), False),
    "source_field": (_result("source", "$image"), False),
    "value_not_object": (_result("value", [1, 2]), False),
    "relation": (_relation, False),
    "choices": (_choices, True),
    "choices_only": (lambda obj: (_unit("result", [])(obj), _choices(obj))[1], True),
    "choices_scored": (lambda obj: (_choices(obj), obj["annotations"][0]["result"][-1].__setitem__("score", 0.25), obj)[2], True),
    "choices_score_text": (lambda obj: (_choices(obj), obj["annotations"][0]["result"][-1].__setitem__("score", "1"), obj)[2], False),
    "choices_not_list": (lambda obj: (_choices(obj), obj["annotations"][0]["result"][-1]["value"].__setitem__("choices", "day"), obj)[2], False),
    "choices_of_numbers": (lambda obj: (_choices(obj), obj["annotations"][0]["result"][-1]["value"].__setitem__("choices", [1, 2.5, True]), obj)[2], True),
    "choices_empty": (lambda obj: (_unit("result", [])(obj), _choices(obj), obj["annotations"][0]["result"][-1]["value"].__setitem__("choices", []), obj)[3], True),
    "choices_no_id": (lambda obj: (_choices(obj), obj["annotations"][0]["result"][-1].pop("id"), obj)[2], False),
    "second_annotation": (_second_annotation, False),
    "cancelled": (_unit("was_cancelled", True), False),
    "ground_truth_marked": (_unit("ground_truth", True), True),
    "bad_date": (_unit("created_at", "yesterday"), False),
    "no_date": (lambda obj: (obj["annotations"][0].pop("created_at"), obj)[1], True),
    "annotator_object": (_unit("completed_by", {"id": 3, "email": "a@b.c"}), True),
    "result_null": (_unit("result", None), True),
    "result_object": (_unit("result", {"a": 1}), False),
    "no_annotation_id": (lambda obj: (obj["annotations"][0].pop("id"), obj)[1], True),
    "prediction": (_prediction, False),
    "predictions_null": (_set(lambda obj: obj, "predictions", None), True),
    "predictions_object": (_set(lambda obj: obj, "predictions", {}), False),
    "no_annotations": (_set(lambda obj: obj, "annotations", []), False),
    "no_size": (_no_size, False),
    "other_size_on_one": (_other_size_on_one, True),
    "second_image": (_second_image, False),
    "data_extra_field": (_set(lambda obj: obj["data"], "text", "hello"), True),
    "image_not_text": (_set(lambda obj: obj["data"], "image", 5), False),
    "no_data": (lambda obj: (obj.pop("data"), obj)[1], False),
    "unicode_label": (_value("rectanglelabels", ["caf\u00e9 \u2603"]), True),
    "escaped_id": (_result("id", 'a"b\\c'), True),
    "task_fields_nested": (_set(lambda obj: obj, "meta", {"z": [1, {"b": None, "a": 1.5}]}), True),
    "polygon_region": (_polygon([[10, 10], [20.5, 10], [15, 30.25]]), True),
    "polygon_two_points": (_polygon([[10, 10], [20, 10]]), False),
    "polygon_no_points": (_polygon([]), False),
    "polygon_triple": (_polygon([[10, 10, 1], [20, 10, 1], [15, 30, 1]]), False),
    "polygon_text_point": (_polygon([[10, 10], ["20", 10], [15, 30]]), False),
    "polygon_out_of_range": (_polygon([[10, 10], [120, 10], [15, 30]]), False),
    "polygon_backwards": (_polygon([[15, 30], [20, 10], [10, 10], [12, 12]]), True),
    "polygon_labels_key": (lambda obj: (_polygon([[1, 1], [2, 2], [1, 3]])(obj), _first(obj)["value"].__setitem__("labels", _first(obj)["value"].pop("polygonlabels")), obj)[2], False),
}


def _normalizers(options: dict | None):
    opts = {"label_studio": get_format("label_studio").options(options)} if options else None
    return RecordNormalizer(opts, fast=True), RecordNormalizer(opts, fast=False)


def _batch(raws: list[bytes], uri: str = "s3://bucket/export.json") -> RawBatch:
    offsets, at = [], 1
    for raw in raws:
        offsets.append(at)
        at += len(raw) + 2
    return RawBatch(uri, "label_studio", 0, lines=list(range(1, len(raws) + 1)), offsets=offsets, raws=raws)


def _assert_same(batch: RawBatch, options: dict | None = None) -> dict:
    fast, slow = _normalizers(options)
    got, got_dead, got_counts = fast.normalize(batch)
    want, want_dead, want_counts = slow.normalize(batch)
    assert got.schema == want.schema
    assert got.to_pylist() == want.to_pylist()
    assert got.equals(want)
    assert got_dead == want_dead
    assert got_counts == want_counts
    return fast.fast_lines


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_variant_is_read_as_the_reference_reads_it(name):
    change, may_take = VARIANTS[name]
    rng = random.Random(name)
    raw = orjson.dumps(change(task(1, rng)))
    part = TaskColumnsPath().read(_batch([raw]), ParseContext("s3://bucket/export.json", "s3://bucket"))
    taken = bool(part and part.taken)
    assert taken == may_take, f"{name}: taken={taken}"
    _assert_same(_batch([raw]))


@pytest.mark.parametrize("options", [None, {"annotations": "latest"}, {"annotations": "ground_truth"}, {"region_tolerance": 0}])
@pytest.mark.parametrize("seed", range(4))
def test_mixed_batches_under_each_option(options, seed):
    rng = random.Random(seed)
    names = sorted(VARIANTS)
    raws = []
    for i in range(1, 160):
        obj = rectangles_task(i, rng)
        if rng.random() < 0.4:
            obj = VARIANTS[rng.choice(names)][0](obj)
        raws.append(orjson.dumps(obj))
    taken = _assert_same(_batch(raws), options)
    if options != {"annotations": "ground_truth"}:  # the generator marks no annotation ground_truth
        assert taken["tasks"] > 80


def test_pretty_printed_tasks_and_every_shape():
    """Tasks as Label Studio's export writes them (indented), and both shapes the path claims."""
    rng = random.Random(3)
    raws = [orjson.dumps(make(i, rng), option=orjson.OPT_INDENT_2) for i in range(50) for make in LABEL_STUDIO_SHAPES.values()]
    assert _assert_same(_batch(raws)) == {"tasks": 50 * len(LABEL_STUDIO_SHAPES)}


def test_real_label_studio_exports():
    """label-studio-sdk's own test exports, element by element as the reader cuts them: equal
    rows; the single-annotation rectangle and polygon tasks are taken."""
    from tests.conftest import need_shared_data
    from transforms.json_array import iter_json_array

    folder = need_shared_data("realdata", "label-studio-sdk-converter-tests")
    taken = {}
    for path in sorted(folder.glob("*.json")):
        with open(path, "rb") as handle:
            elements = list(iter_json_array(handle))
        batch = RawBatch(str(path), "label_studio", 0, lines=list(range(1, len(elements) + 1)),
                         offsets=[offset for offset, _ in elements], raws=[raw for _, raw in elements])  # fmt: skip
        taken[path.name] = _assert_same(batch).get("tasks", 0)
    assert taken["rectangles.json"] >= 1 and taken["polygons.json"] >= 1


def test_the_samples_element_by_element():
    """samples/label_studio/: every region type, predictions, cancelled and unlabelled tasks,
    as JSON-array elements, JSONL lines and one object: equal rows whatever the path took."""
    from pathlib import Path

    from transforms.json_array import iter_json_array

    for path in sorted((Path(__file__).resolve().parents[1] / "samples" / "label_studio").iterdir()):
        if path.is_dir():
            continue
        if path.suffix == ".jsonl":
            raws = [line for line in path.read_bytes().splitlines() if line.strip()]
        elif path.read_bytes().lstrip().startswith(b"["):
            with open(path, "rb") as handle:
                raws = [raw for _, raw in iter_json_array(handle)]
        elif path.suffix == ".json":
            raws = [path.read_bytes()]
        else:
            continue
        _assert_same(_batch(raws, str(path)))
