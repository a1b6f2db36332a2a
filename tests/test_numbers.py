"""Absurd numbers: 1e308 coordinates, 30-digit integers, duplicate keys (end to end and unit)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pyarrow.dataset as ds
import pytest

from pipelines.normalize_manifests import run
from tests.test_check_files import make_row
from transforms import schema
from transforms.checks import numbers
from transforms.checks.numbers import non_finite_findings

pytestmark = pytest.mark.e2e  # runs the whole job: deselect with -m "not e2e" for the fast subset

RUNNER = "--runner=FnApiRunner"


def _detection(left, width, score=0.9) -> str:
    return json.dumps({
        "source-ref": "images/street.jpg",
        "bounding-box": {"image_size": [{"width": 64, "height": 48, "depth": 3}], "annotations": [{"class_id": 0, "left": left, "top": 6, "width": width, "height": 12}]},
        "bounding-box-metadata": {"objects": [{"confidence": score}], "class-map": {"0": "car"}, "type": "groundtruth/object-detection", "human-annotated": "yes", "job-name": "j"},
    })


def test_1e308_boxes_are_refused_before_any_writer(tmp_path):
    manifest = tmp_path / "in" / "boxes.manifest"
    manifest.parent.mkdir()
    manifest.write_text("\n".join([_detection(4, 20), _detection(1e308, 1e308), _detection(10, 20)]) + "\n")
    out = tmp_path / "out"
    code = run(["--input", str(manifest), "--output", str(out), RUNNER, "--output_format=sagemaker", "--output_format=azure_automl"])
    assert code == 0
    summary = json.loads((out / "run.json").read_text())
    assert summary["totals"]["refused_by_stage"] == {"validate": {"COORDINATE_NOT_FINITE": 1}}
    assert "INTERNAL_ERROR" not in (out / "run.json").read_text()
    letters = [orjson.loads(line) for p in (out / "errors").glob("*.jsonl") for line in p.read_bytes().splitlines()]
    assert [(d["code"], d["line"], d["stage"]) for d in letters] == [("COORDINATE_NOT_FINITE", 2, "validate")]
    rows = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()
    assert sorted(r["source"]["line"] for r in rows) == [1, 3]
    for name in ("sagemaker", "azure_automl"):
        written = [orjson.loads(line) for p in (out / "manifests" / name).rglob("*") if p.is_file() for line in p.read_bytes().splitlines()]
        assert len(written) == 2 and b"Infinity" not in b"".join(orjson.dumps(w) for w in written)


def test_non_finite_numbers_are_found_in_every_float_field():
    box = {"x_min": 0.1, "y_min": 0.1, "x_max": float("inf"), "y_max": 0.5}
    rows = [
        make_row(1, objects=[{"label": "a", "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.2, "y_max": 0.2}, "area": 1.0}]),
        make_row(2, objects=[{"label": "a", "bbox": box}]),
        make_row(3, objects=[{"label": "a", "polygon": [[0.1, 0.1, float("nan"), 0.2, 0.3, 0.3]]}]),
        make_row(4, objects=[{"label": "a", "keypoints": [{"label": "k", "x": 0.1, "y": float("-inf")}]}]),
        make_row(5, objects=[{"label": "a"}, {"label": "b", "area": float("inf"), "score": float("inf")}]),
        make_row(6, labels=[{"name": "x", "score": float("inf")}]),
    ]
    found = non_finite_findings(schema.rows_to_batch(rows))
    assert [(row, code) for row, code, _ in found] == [(i, "COORDINATE_NOT_FINITE") for i in (1, 2, 3, 4, 5)]
    messages = {row: message for row, _, message in found}
    assert messages[1].endswith("bbox") and messages[2].endswith("polygon") and messages[3].endswith("keypoints")
    assert messages[4].endswith("area, score") and messages[5].endswith("label score")


def _classification(ref: str, extra: str = "") -> str:
    return ('{"source-ref": "%s", "label": 1, %s"label-metadata": {"class-name": "cat", "type": "groundtruth/image-classification", "job-name": "j", "human-annotated": "yes"}}' % (ref, extra))


def test_cr_only_files_big_integers_and_duplicate_keys(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    # Classic Mac line endings: five records, CR only.
    (folder / "mac.manifest").write_bytes("\r".join(_classification(f"images/{i}.jpg") for i in range(5)).encode() + b"\r")
    lines = [
        _classification("images/big.jpg", '"ticket": 123456789012345678901234567890, '),
        _classification("images/u64.jpg", '"ticket": 18446744073709551615, '),  # fits: exact, no warning
        _classification("images/text.jpg", '"ticket": "123456789012345678901234567890", '),  # a string: exact
        _classification("images/first.jpg", '"source-ref": "images/last.jpg", '),  # duplicate key: the last wins
    ]
    (folder / "numbers.manifest").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert run(["--input", str(folder / "*.manifest"), "--output", str(out), RUNNER, "--output_format=sagemaker"]) == 0
    summary = json.loads((out / "run.json").read_text())
    by_file = {Path(f["uri"]).name: f for f in summary["files"]}
    assert by_file["mac.manifest"]["lines"] == 5 and by_file["mac.manifest"]["ok"] == 5 and by_file["mac.manifest"]["layout"] == "jsonl_cr"
    rows = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()
    by_image = {r["image"]["uri"].rsplit("/", 1)[-1]: r for r in rows}
    assert {f"{i}.jpg" for i in range(5)} <= set(by_image)
    assert [i["code"] for i in by_image["big.jpg"]["issues"]] == ["INTEGER_TOO_LARGE"]
    assert by_image["u64.jpg"]["issues"] == [] and by_image["text.jpg"]["issues"] == []
    assert "18446744073709551615" in by_image["u64.jpg"]["extra"]
    assert "last.jpg" in by_image and "first.jpg" not in by_image  # documented: the last duplicate wins
    assert summary["totals"]["warnings_by_code"] == {"INTEGER_TOO_LARGE": 1}


@pytest.mark.parametrize(
    "raws",
    [
        [b'{"id": 12345678901234567890}'],
        [b'{"a": 1}', b'{"id": "x", "n": 99999999999999999999999}'],
        [b'{"a": 1}', b"12345678901234567890"],
        [b"1234567890", b"1234567890"],  # two 10-digit lines: the join must not make a 20-digit run
        [b'{"score": 0.1234567890123456789}'],
        [b'{"a": "\\xd9\\xa0\\xd9\\xa1"}'],  # non-ASCII digits are not JSON numbers
        [],
    ],
)
def test_the_batch_test_of_long_digit_runs_agrees_with_the_line_test(raws):
    assert numbers.any_might_be_inexact(raws) == any(numbers.might_be_inexact(raw) for raw in raws)


@pytest.mark.parametrize(
    ("value", "inexact"),
    [
        (-(2**63), False),
        (-(2**63) - 1, True),  # 19 digits: a 20-digit test misses it
        (-(10**19) + 1, True),
        (-(10**18), False),
        (2**64 - 1, False),
        (2**64, True),
        (-(2**64), True),
    ],
)
def test_the_integer_bound_is_exact_on_both_sides(value, inexact):
    raw = _classification("images/x.jpg", f'"ticket": {value}, ').encode()
    assert numbers.has_inexact_integer(raw) is inexact
    assert numbers.might_be_inexact(raw) or not inexact
    assert numbers.any_might_be_inexact([b'{"a": 1}', raw]) or not inexact


def test_an_integer_just_below_the_64_bit_range_warns_on_the_fast_path_and_the_plugin():
    from tests.test_fast_normalize import _batches, assert_same
    from transforms.normalizer import RecordNormalizer

    raws = [_classification(f"images/{i}.jpg").encode() for i in range(20)]
    raws[7] = _classification("images/low.jpg", '"ticket": -9223372036854775809, ').encode()
    batches = _batches("/data/m.manifest", "sagemaker", raws)
    assert_same(batches)
    rows = RecordNormalizer().normalize(batches[0])[0].to_pylist()
    flagged = [r["image"]["uri"].rsplit("/", 1)[-1] for r in rows if r["issues"]]
    assert flagged == ["low.jpg"] and rows[7]["issues"][0]["code"] == "INTEGER_TOO_LARGE"
