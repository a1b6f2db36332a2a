"""The duplicate policies on the records of one image (transforms/dedupe.py), and how the ledger
counts what they fold, without a pipeline."""

from __future__ import annotations

import random

import pytest

from transforms import dedupe, errors, ledger
from transforms.schema import rows_to_batch
from transforms.stages import accounting
from transforms.stages.dedupe import _ResolveFn

IMAGE = "s3://bucket/x.jpg"


def _row(uri: str, line: int, labels=(), objects=(), origin="ground_truth", task="classification", attribute=None, width=None):
    return {
        "record_id": f"{uri}:{line}:{attribute}",
        "source": {"uri": uri, "line": line, "offset": line * 100, "format": "sagemaker", "attribute": attribute},
        "image": {"uri": IMAGE, "width": width, "height": width, "format": None},
        "task": task,
        "origin": origin,
        "labels": [{"name": name, "score": None} for name in labels],
        "objects": [{"label": name, "bbox": {"x_min": x, "y_min": x, "x_max": x + 0.1, "y_max": x + 0.1}} for name, x in objects],
        "issues": [],
    }


def _codes(row):
    return [found["code"] for found in row["issues"]]


def test_first_keeps_the_smallest_source_line_and_attribute_whatever_the_arrival_order():
    rows = [_row("b.json", 1, ["cat"]), _row("a.manifest", 7, ["cat"], attribute="z"), _row("a.manifest", 7, ["cat"], attribute="k"), _row("a.manifest", 9, ["cat"])]
    for _ in range(5):
        random.shuffle(rows)
        result = dedupe.resolve(rows, dedupe.FIRST)
        (kept,) = result.kept
        assert (kept["source"]["uri"], kept["source"]["line"], kept["source"]["attribute"]) == ("a.manifest", 7, "k")
        assert _codes(kept) == [errors.DUPLICATE_SUPERSEDED]
        assert sorted((r["source"]["uri"], r["source"]["line"]) for r, outcome in result.removed if outcome == dedupe.SUPERSEDED) == [
            ("a.manifest", 7), ("a.manifest", 9), ("b.json", 1)]


def test_a_prediction_is_neither_superseded_by_nor_merged_into_ground_truth():
    rows = [_row("a", 1, ["cat"]), _row("b", 1, ["cat"]), _row("c", 1, ["dog"], origin="prediction")]
    for policy in (dedupe.FIRST, dedupe.MERGE):
        result = dedupe.resolve(rows, policy)
        assert sorted((r["source"]["uri"], r["origin"]) for r in result.kept) == [("a", "ground_truth"), ("c", "prediction")]
        assert [(r["source"]["uri"], outcome) for r, outcome in result.removed] == [("b", dedupe.SUPERSEDED if policy == dedupe.FIRST else dedupe.MERGED)]
        assert not any(errors.CONFLICTING_LABELS in _codes(r) for r in result.kept)  # a disagreeing prediction is no conflict


def test_merge_unions_distinct_objects_and_labels_and_fills_the_image_size():
    rows = [
        _row("a", 1, objects=[("car", 0.1)], task="object_detection"),
        _row("b", 1, objects=[("car", 0.1), ("person", 0.5)], task="object_detection", width=640),
        _row("c", 1, labels=["day"], task="classification"),
    ]
    result = dedupe.resolve(rows, dedupe.MERGE)
    (merged,) = result.kept
    assert [o["label"] for o in merged["objects"]] == ["car", "person"]  # the same car box once
    assert [label["name"] for label in merged["labels"]] == ["day"]
    assert merged["task"] == "object_detection" and merged["source"]["uri"] == "a"
    assert (merged["image"]["width"], merged["image"]["height"]) == (640, 640)
    assert _codes(merged) == [errors.DUPLICATES_MERGED]
    assert len(result.removed) == 2
    assert rows[0]["issues"] == [] and rows[0]["image"]["width"] is None  # the inputs are not changed


def test_conflicting_labels_warn_under_keep_all_and_refuse_every_record_under_error():
    rows = [_row("a", 1, ["cat"]), _row("b", 1, ["dog"]), _row("c", 1, objects=[("car", 0.2)], task="object_detection")]
    kept_all = dedupe.resolve(rows, dedupe.KEEP_ALL)
    assert len(kept_all.kept) == 3 and all(_codes(r) == [errors.CONFLICTING_LABELS] for r in kept_all.kept)
    refused = dedupe.resolve(rows, dedupe.ERROR)
    assert refused.kept == [] and len(refused.refused) == 3
    assert "cat / dog" in refused.refused[0][1]
    agreeing = [_row("a", 1, ["cat"]), _row("b", 1, ["cat"])]
    assert len(dedupe.resolve(agreeing, dedupe.ERROR).kept) == 2  # error acts on conflicts only
    merged = dedupe.resolve(rows[:2], dedupe.MERGE).kept[0]
    assert merged["task"] == "multilabel_classification" and errors.CONFLICTING_LABELS in _codes(merged)


def test_multilabel_sets_conflict_when_they_differ():
    assert dedupe.conflicting_label_sets([_row("a", 1, ["car", "bus"]), _row("b", 1, ["bus", "car"])]) == []
    assert dedupe.conflicting_label_sets([_row("a", 1, ["car", "bus"]), _row("b", 1, ["car"])]) == ["bus,car", "car"]


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="unknown duplicate policy"):
        dedupe.resolve([_row("a", 1)], "newest")


def test_the_ledger_balances_folded_records_and_breaks_when_they_are_not_counted():
    stages = {"dedupe": {"in": 4, "out": 1, "refused": {}, "superseded": 3}, "split": {"in": 1, "out": 1}}
    flow, broken = ledger.stage_flow(stages, 4, ["dedupe", "split"])
    assert broken == [] and flow["dedupe"]["superseded"] == 3
    _, broken = ledger.stage_flow({**stages, "dedupe": {"in": 4, "out": 1}}, 4, ["dedupe", "split"])
    assert broken == ["dedupe: 4 rows in, 1 out + 0 refused"]


def test_the_resolve_step_counts_out_refused_and_folded_per_file():
    fn = _ResolveFn(dedupe.FIRST, batch_rows=1000)
    fn.start_bundle()
    cats = [_row("a", 1, ["cat"]), _row("b", 1, ["cat"]), _row("b", 2, ["cat"])]
    outputs = list(fn.process(("x", [rows_to_batch([r]).to_pylist()[0] for r in cats]))) + list(fn.finish_bundle())
    batches = [o.value for o in outputs if not hasattr(o, "tag")]
    assert sum(b.num_rows for b in batches) == 1
    (counted,) = [dict([o.value.value]) for o in outputs if getattr(o, "tag", None) == accounting.LEDGER and o.value.value[0] == "b"]
    assert counted["b"]["stages"]["dedupe"] == {"superseded": 2}
    (kept,) = [dict([o.value.value]) for o in outputs if getattr(o, "tag", None) == accounting.LEDGER and o.value.value[0] == "a"]
    assert kept["a"]["stages"]["dedupe"] == {"out": 1}
