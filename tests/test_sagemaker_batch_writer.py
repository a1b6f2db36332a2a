"""The Ground Truth writer's columnar path (plain detections built per RecordBatch) against its
per-row path: the same lines byte for byte, in the same order, the same refusals and counts,
on rows of every shape the writer meets, mixed in one batch, over several seeds."""

from __future__ import annotations

import datetime as dt
import io
import random

import numpy as np
import orjson
import pytest

from transforms import schema
from transforms.formats.base import WriteContext, get_format
from transforms.formats.sagemaker.format import SageMakerFormat
from transforms.formats.sagemaker.write import write_lines
from transforms.formats.sagemaker.write_columns import detection_rows, write_batch
from transforms.output_files import _ManifestFile

CLASSES = ["car", "café", "日本の車", "🚗 truck", "person", "Normal", "anomaly"]
WIDTHS = [1920, 1000, 640, 7, 1, 3]


def _box(rng: random.Random) -> dict:
    pick = rng.random()
    if pick < 0.15:  # pixels a hair away from whole numbers, and exact halves
        x0 = rng.randrange(0, 1000) / 1000 + rng.choice([0, 1e-9, -1e-9, 4e-7, 2e-6])
        return {"x_min": x0, "y_min": x0 / 2, "x_max": x0 + 0.0625, "y_max": x0 + 0.5}
    if pick < 0.2:  # a box drawn backwards and signed zeros
        return {"x_min": 0.5, "y_min": -0.0, "x_max": 0.25, "y_max": 0.0}
    x0, y0 = rng.random() * 0.8, rng.random() * 0.8
    return {"x_min": x0, "y_min": y0, "x_max": x0 + rng.random() * 0.2, "y_max": y0 + rng.random() * 0.2}


def _object(rng: random.Random, shape: str) -> dict:
    obj = {"label": rng.choice(CLASSES), "bbox": _box(rng)}
    if rng.random() < 0.2:
        obj["score"] = rng.choice([rng.random(), 0.5, 0.1234567891])
    if shape == "no_box":
        obj["bbox"] = None
    elif shape == "half_box":
        obj["bbox"] = {**obj["bbox"], "y_max": None}
    elif shape == "unlabelled":
        obj["label"] = None
    elif shape == "unknown_class":
        obj["label"] = "zebra"
    elif shape == "class_id":  # a Ground Truth source's own id
        obj["attributes"] = orjson.dumps({"class_id": 7}).decode()
    elif shape == "raw_attributes":  # a Label Studio region's raw result: no id in it
        obj["attributes"] = orjson.dumps({"ls": [{"id": "a", "type": "rectanglelabels"}]}).decode()
    elif shape == "brush":
        obj["mask_rle"] = b"not an rle"
    elif shape == "keypoint":
        obj = {"label": "nose", "keypoints": [{"label": "nose", "x": 0.3, "y": 0.4, "visible": True}]}
    return obj


# (a half box, or a NaN corner, makes the per-row writer raise: the writing core's test below)
OBJECT_SHAPES = ["plain"] * 14 + ["no_box", "unlabelled", "unknown_class", "class_id", "raw_attributes", "brush", "keypoint"]
ROW_SHAPES = ["boxes"] * 12 + ["mixed", "empty", "unsized", "zero_width", "labels", "mask", "no_uri", "sagemaker_extra", "other_extra", "no_annotation"]


def _row(i: int, rng: random.Random) -> dict:
    shape = rng.choice(ROW_SHAPES)
    objects = [_object(rng, "plain" if rng.random() < 0.9 else "raw_attributes") for _ in range(rng.randint(1, 6))]
    created = dt.datetime(2024, 5, 1 + i % 28, i % 24, i % 60, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=i * 7)
    row = {
        "record_id": f"rec-{i}", "origin": "ground_truth", "split": "train",
        "image": {"uri": f"s3://bucket/图像/{i}.jpg", "width": rng.choice(WIDTHS), "height": rng.choice(WIDTHS)},
        "objects": objects,
        "annotation": {"job_name": rng.choice([None, "", "job-1"]), "human_annotated": rng.choice([None, True, False]),
                       "created_at": rng.choice([None, created])},
    }  # fmt: skip
    if shape == "mixed":
        objects.insert(rng.randrange(len(objects) + 1), _object(rng, rng.choice(OBJECT_SHAPES[14:])))
    elif shape == "empty":
        row["objects"] = rng.choice([[], None])
    elif shape == "unsized":
        row["image"]["height"] = None
    elif shape == "zero_width":
        row["image"]["width"] = 0
    elif shape == "labels":
        row["labels"] = [{"name": rng.choice(CLASSES), "score": None}]
    elif shape == "mask":
        row["mask"] = {"uri": "s3://bucket/m.png", "color_map": [{"index": 1, "class_name": "car", "hex_color": "#ff0000"}]}
    elif shape == "no_uri":
        row["image"]["uri"] = rng.choice(["", None])
    elif shape == "sagemaker_extra":  # a Ground Truth line's own layout and fields
        row["extra"] = orjson.dumps({"sagemaker": {"fields": {"note": "x"}}}).decode()
    elif shape == "other_extra":
        row["extra"] = orjson.dumps({"label_studio": {"data_key": "image"}}).decode()
    elif shape == "no_annotation":
        row["annotation"] = None
    return row


def _batch(seed: int, n: int = 300):
    rng = random.Random(seed)
    return schema.rows_to_batch([_row(i, rng) for i in range(n)])


def _refusals(ctx: WriteContext):
    return ([(row["record_id"], code, message) for row, code, message in ctx.rejected],
            sorted((row["record_id"], index, code, message) for row, index, code, message in ctx.rejected_objects))


OPTION_CASES = [
    ({}, sorted(CLASSES)),  # the output's class names known (the write stage's first pass)
    ({}, sorted(CLASSES + ["zebra"])),
    ({"classes": ["person", "car", "café"]}, None),  # a pinned list
    ({"mask_files": True}, sorted(CLASSES)),
    ({}, None),  # a writer alone: ids from each line's class-map, all row by row
]


@pytest.mark.parametrize("options,classes", OPTION_CASES)
@pytest.mark.parametrize("seed", range(5))
def test_batch_lines_equal_the_row_lines(seed, options, classes):
    batch = _batch(seed)
    opts = get_format("sagemaker").options(options)
    by_row = WriteContext(options=opts, classes=classes)
    want = list(write_lines(schema.batch_rows(batch), by_row, opts))
    by_batch = WriteContext(options=opts, classes=classes)
    got = write_batch(batch, by_batch, opts, schema.batch_rows)
    assert got == want
    assert _refusals(by_batch) == _refusals(by_row)
    assert by_batch.objects_written == by_row.objects_written
    if classes == sorted(CLASSES) and not options:
        assert detection_rows(batch, {name: i for i, name in enumerate(classes)}, False).sum() > 150  # most rows columnar


def test_rows_from_label_studio_go_the_columnar_way_and_read_back():
    """Rows parsed from a Label Studio export: every one columnar, every box written."""
    from benchmarks.label_studio_convert import task
    from transforms.normalizer import RecordNormalizer
    from transforms.schema import RawBatch

    raws = [orjson.dumps(task(i, random.Random(i))) for i in range(1, 101)]
    rows, _, _ = RecordNormalizer().normalize(RawBatch("/x.json", "label_studio", 0, list(range(1, 101)), list(range(0, 1000, 10)), raws))
    names = sorted(set(np.unique(np.array([o["label"] for r in schema.batch_rows(rows) for o in r["objects"]]))))
    assert detection_rows(rows, {name: i for i, name in enumerate(names)}, False).all()
    opts = get_format("sagemaker").options({})
    ctx = WriteContext(options=opts, classes=names)
    lines = write_batch(rows, ctx, opts, schema.batch_rows)
    assert lines == list(write_lines(schema.batch_rows(rows), WriteContext(options=opts, classes=names), opts))
    assert ctx.objects_written == 800 == sum(len(orjson.loads(line)["bounding-box"]["annotations"]) for line in lines)


def _file_bytes(batches, monkeypatch, columnar: bool) -> tuple[bytes, list, int, int, int]:
    if not columnar:
        monkeypatch.setattr(SageMakerFormat, "write_batch", None)
    handle = io.BytesIO()
    out = _ManifestFile(handle, "sagemaker", get_format("sagemaker").options({}), classes=sorted(CLASSES))
    letters = [letter for batch in batches for letter in out.write(batch)]
    out.close()
    monkeypatch.undo()
    return handle.getvalue(), letters, out.objects_given, out.objects_written, out.objects_other_jobs


def test_the_manifest_file_writes_the_same_bytes_and_refusals_either_way(monkeypatch):
    """Through the writing core (label jobs, refusals, counts), with a batch whose NaN corner
    makes the columnar path raise and a half box the per-row writer raises on: that batch goes
    row by row, as it did before, and the row that breaks the writer alone is refused."""
    batches = [_batch(seed, 120) for seed in range(3)]
    rows = schema.batch_rows(_batch(9, 20))
    rows[3]["objects"][0]["bbox"]["x_min"] = float("nan")
    rows[5]["objects"] = [*(rows[5]["objects"] or []), _object(random.Random(1), "half_box")]
    batches.append(schema.rows_to_batch(rows))
    # a row of two label jobs (the writer takes the first; the other's object is counted apart)
    # in a batch the columnar path gives up on after asking for its rows (the half box)
    rows = schema.batch_rows(_batch(11, 20))
    rows[2]["objects"] = [_object(random.Random(2), "box"), _object(random.Random(3), "box")]
    rows[2]["extra"] = orjson.dumps({"sagemaker": {"attributes": [
        {"kind": "detection", "labels": [], "name": "job-a", "objects": [0]},
        {"kind": "detection", "labels": [], "name": "job-b", "objects": [1]},
    ]}}).decode()
    rows[4]["objects"] = [*(rows[4]["objects"] or []), _object(random.Random(4), "half_box")]
    batches.append(schema.rows_to_batch(rows))
    columnar = _file_bytes(batches, monkeypatch, True)
    assert columnar == _file_bytes(batches, monkeypatch, False)
    assert columnar[4] == 1  # the other job's object, counted once though the batch went row by row


def test_pixel_values_equal_pixels_value_by_value():
    """numpy's rounding where it is exact, write.pixels (Python's round) where it may not be:
    the same ints and floats, of the same types, on random values and on values next to whole
    pixels, next to a half millionth, negative, tiny, huge and not finite."""
    from transforms.formats.sagemaker.write import pixels
    from transforms.formats.sagemaker.write_columns import pixel_values

    rng = np.random.default_rng(5)
    near_whole = rng.integers(0, 4000, 2000) + rng.choice([1e-7, -1e-7, 9.99e-7, 1.001e-6, -0.0], 2000)
    half_millionths = (rng.integers(0, 10**9, 20000) + 0.5) / 1e6
    cases = [
        rng.random(200_000) * 2000, near_whole, half_millionths, rng.integers(0, 4000, 5000) / 16,
        -rng.random(5000) * 100, rng.random(5000) * 1e-5, rng.random(5000) * 1e8, np.array([]),
    ]
    for values in cases:
        got = pixel_values(values)
        want = [pixels(v) for v in values.tolist()]
        assert got == want and [type(v) for v in got] == [type(v) for v in want]
    assert pixel_values(np.array([1e300, 2.5])) == [pixels(1e300), pixels(2.5)]
    with pytest.raises(ValueError):  # as write.pixels: the writing core then goes row by row
        pixel_values(np.array([1.0, float("nan")]))


def test_creation_dates_equal_format_timestamp():
    """Arrow's strftime where it spells as dates.format_timestamp does; the years it spells
    otherwise (below 1000) through format_timestamp."""
    import pyarrow as pa

    from transforms.dates import format_timestamp
    from transforms.formats.sagemaker.write_columns import _creation_dates

    rng = random.Random(2)
    values = [None, dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.timezone.utc)]
    values += [dt.datetime(rng.randrange(1, 10000), rng.randrange(1, 13), rng.randrange(1, 29), rng.randrange(24), rng.randrange(60),
                           rng.randrange(60), rng.randrange(1000) * 1000, tzinfo=dt.timezone.utc) for _ in range(3000)]  # fmt: skip
    column = pa.array(values, pa.timestamp("ms", tz="UTC"))
    assert _creation_dates(column) == [None if v is None else format_timestamp(v) for v in column.to_pylist()]


@pytest.mark.parametrize("layout", ["string", "large_string", "dictionary"])
def test_contains_finds_text_in_every_string_layout(layout):
    """The search that sends rows with a source's own ids row by row finds them whatever the
    column's layout (a miss would write such a row from the columns)."""
    import pyarrow as pa

    from transforms.formats.sagemaker.write_columns import _contains

    values = pa.array(['{"class_id": 7}', None, "", '{"ls": []}'])
    if layout == "large_string":
        values = values.cast(pa.large_string())
    elif layout == "dictionary":
        values = values.dictionary_encode()
    assert _contains(values, '"class_id"').to_pylist() == [True, None, False, False]
    assert _contains(values.slice(1), '"class_id"').to_pylist() == [None, False, False]
