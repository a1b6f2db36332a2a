"""The COCO writer's columnar path (box-only rows built per RecordBatch) against its per-record
path: the same parts, refusals, counts and assembled documents, byte for byte, on rows of
every shape the writer meets, mixed in one batch."""

from __future__ import annotations

import io
import random

import numpy as np
import orjson
import pytest

from transforms import schema
from transforms.formats.coco import CocoOptions, assemble, output_categories
from transforms.formats.coco.boxes import _round3, box_rows
from transforms.output_files import _ManifestFile

CLASSES = ["car", "café", "日本の車", "🚗 truck", "person"]
WIDTHS = [1920, 1000, 640, 7, 1, 3]


def _box(rng: random.Random) -> dict:
    if rng.random() < 0.2:  # values whose pixels end in a half at the fourth decimal
        x0 = rng.randrange(0, 1000) / 16000
        return {"x_min": x0, "y_min": x0 / 2, "x_max": x0 + 0.0625, "y_max": x0 + 0.03125}
    x0, y0 = rng.random() * 0.8, rng.random() * 0.8
    return {"x_min": x0, "y_min": y0, "x_max": x0 + rng.random() * 0.2, "y_max": y0 + rng.random() * 0.2}


def _object(rng: random.Random, shape: str, prediction: bool) -> dict:
    obj = {"label": rng.choice(CLASSES), "bbox": _box(rng)}
    if prediction and rng.random() < 0.9:  # a prediction's object without a score is written without one
        obj["score"] = rng.choice([rng.random(), 0.5, 0.25])
    if shape == "crowd":
        obj["is_crowd"] = True
        obj["area"] = rng.random() * 1000
    elif shape == "edge":  # -0.0 pixels, a NaN coordinate and area, a box past the image
        obj["bbox"] = {"x_min": -1e-9, "y_min": float("nan"), "x_max": 1.5, "y_max": 0.5}
        obj["area"] = float("nan") if rng.random() < 0.5 else None
    elif shape == "rotated":
        obj["rotation"] = 12.5
    elif shape == "polygon":
        obj["polygon"] = [[0.1, 0.1, 0.4, 0.1, 0.3, 0.5]]
        if rng.random() < 0.5:
            obj["bbox"] = None
    elif shape == "keypoint":
        obj = {"label": "nose", "keypoints": [{"label": "nose", "x": 0.3, "y": 0.4, "visible": True}]}
    elif shape == "unlabelled":
        obj["label"] = None
    elif shape == "no_box":
        obj["bbox"] = None
    elif shape == "half_box":
        obj["bbox"] = {**obj["bbox"], "y_max": None}
    elif shape == "brush":
        obj["mask_rle"] = b"not an rle"
    return obj


OBJECT_SHAPES = ["plain"] * 12 + ["crowd", "edge", "rotated", "polygon", "keypoint", "unlabelled", "no_box", "half_box", "brush"]
ROW_SHAPES = ["boxes"] * 10 + ["mixed", "negative", "negative_unsized", "unsized", "labels", "no_uri", "label_jobs", "empty_uri"]


def _row(i: int, rng: random.Random) -> dict:
    shape = rng.choice(ROW_SHAPES)
    prediction = rng.random() < 0.3
    width, height = rng.choice(WIDTHS), rng.choice(WIDTHS)
    uri = f"s3://bucket/图像/{i % 40}.jpg"
    if i % 17 == 0:  # a name JSON escapes: a quote, a backslash, a control character
        uri = f's3://bucket/"q\\b\t{i % 40}.jpg'
    objects = [_object(rng, rng.choice(["plain"] * 8 + ["crowd", "edge", "rotated"]), prediction) for _ in range(rng.randint(1, 5))]
    row = {"record_id": f"rec-{i}", "origin": "prediction" if prediction else "ground_truth", "split": "train",
           "image": {"uri": uri, "width": width, "height": height}, "objects": objects}  # fmt: skip
    if shape == "mixed":
        objects.insert(rng.randrange(len(objects) + 1), _object(rng, rng.choice(OBJECT_SHAPES[12:]), prediction))
    elif shape == "negative":
        row["objects"] = [] if rng.random() < 0.5 else None
    elif shape == "negative_unsized":
        row["objects"], row["image"]["width"] = [], None
    elif shape == "unsized":  # IMAGE_SIZE_REQUIRED
        row["image"]["height"] = None if rng.random() < 0.5 else 0
    elif shape == "labels":
        row["labels"] = [{"name": "outdoor", "score": 0.25}]
    elif shape == "no_uri":
        row["image"]["uri"] = None
    elif shape == "empty_uri":
        row["image"]["uri"] = ""
    elif shape == "label_jobs":  # two detection jobs: the writer takes the last one's objects
        objects[:] = objects[:1] * 2 if len(objects) == 1 else objects[:2]
        attributes = [{"kind": "detection", "name": "first", "objects": [0]}, {"kind": "detection", "name": "second", "objects": [1]}]
        row["extra"] = orjson.dumps({"sagemaker": {"attributes": attributes}}).decode()
    return row


def _parts(batches: list, options: CocoOptions, columnar: bool) -> list[tuple[bytes, dict, list, tuple]]:
    written = []
    for partition in batches:
        handle = io.BytesIO()
        part = _ManifestFile(handle, "coco", options)
        if not columnar:
            part.document.write_batch = None  # the per-record path
        letters = []
        for batch in partition:
            letters.extend(part.write(batch))
        part.close()
        counts = (part.count, part.objects_given, part.objects_written, part.objects_refused)
        written.append((handle.getvalue(), part.summary, letters, counts))
    return written


def _documents(parts, options: CocoOptions, results: bool) -> bytes:
    out = io.BytesIO()
    categories = output_categories([summary for _, summary, _, _ in parts], options)
    assemble(out, [(lambda data=data: io.BytesIO(data), summary) for data, summary, _, _ in parts], categories, results)
    return out.getvalue()


@pytest.mark.parametrize("pinned", [[], ["car", "日本の車", "person", "keypoints"]])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_columnar_path_writes_the_same_bytes_as_the_per_record_path(seed, pinned):
    rng = random.Random(seed)
    options = CocoOptions(categories=pinned)
    rows = [_row(i, rng) for i in range(900)]
    by_origin = {origin: [row for row in rows if row["origin"] == origin] for origin in ("ground_truth", "prediction")}
    for origin, chosen in by_origin.items():
        # three partitions, each of batches of varied sizes
        partitions = [[], [], []]
        for n, start in enumerate(range(0, len(chosen), 37)):
            partitions[n % 3].append(schema.rows_to_batch(chosen[start : start + 37 + n % 5]))
        fast = _parts(partitions, options, columnar=True)
        slow = _parts(partitions, options, columnar=False)
        for (f_bytes, f_summary, f_letters, f_counts), (s_bytes, s_summary, s_letters, s_counts) in zip(fast, slow):
            assert f_bytes == s_bytes
            assert f_summary == s_summary
            assert f_counts == s_counts
            assert f_letters == s_letters
        assert _documents(fast, options, origin == "prediction") == _documents(slow, options, origin == "prediction")
        codes = {letter["code"] for _, _, letters, _ in fast for letter in letters}
        assert "IMAGE_SIZE_REQUIRED" in codes and "OBJECT_UNREPRESENTABLE" in codes


def test_the_mixed_batches_take_both_paths():
    rng = random.Random(5)
    rows = [_row(i, rng) for i in range(300)]
    taken = box_rows(schema.rows_to_batch(rows), [])
    assert 0.3 < taken.mean() < 0.9
    shapes = {(bool(row.get("labels")), bool(row.get("extra")), row["image"]["uri"] or "") for row, fast in zip(rows, taken) if fast}
    assert all(not labels and not extra and uri for labels, extra, uri in shapes)


def test_rounding_is_pythons_round_to_three_decimals():
    rng = np.random.default_rng(4)
    values = np.concatenate([
        rng.random(20000) * 2000,
        np.arange(0, 5000) / 16.0,  # exact halves at the fourth decimal: Python rounds them half to even
        np.array([2.675, 1.0005, -0.0004, -1.2345, 0.0, np.nan, np.inf, 1e15 + 0.5]),
    ])  # fmt: skip
    got = _round3(values)
    expected = [round(float(v), 3) for v in values]
    assert orjson.dumps(got.tolist()) == orjson.dumps(expected)


def test_ids_are_the_first_52_bits_of_the_blake2b_digest_as_before():
    import hashlib

    from transforms.formats.coco.document import stable_id

    rng = random.Random(9)
    for i in range(5000):
        text = f"rec-{rng.random()}\x00{i % 9}{rng.choice(CLASSES)}"
        assert stable_id(text) == (int(hashlib.blake2b(text.encode(), digest_size=8).hexdigest()[:13], 16) or 1)


def test_a_batch_without_the_record_columns_is_written_row_by_row():
    rng = random.Random(11)
    batch = schema.rows_to_batch([_row(i, rng) for i in range(60)])
    slim = batch.drop_columns(["mask", "extra"])
    fast = _parts([[slim]], CocoOptions(), columnar=True)
    slow = _parts([[slim]], CocoOptions(), columnar=False)
    assert fast[0][0] == slow[0][0] and fast[0][3] == slow[0][3] and fast[0][3][0] > 0
