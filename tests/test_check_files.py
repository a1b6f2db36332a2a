"""ValidateRecords + CheckFiles in a pipeline (FnApiRunner), and CheckFiles' DoFn called directly."""

from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import apache_beam as beam
import numpy as np
import orjson
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that
from PIL import Image

from tests.conftest import need_shared_data, shared_data
from transforms import errors, file_checks, schema, storage
from transforms.checks import masks as mask_checks
from transforms.file_checks import FileCheckConfig
from transforms.stages import check_files
from transforms.stages.check_files import CheckFiles
from transforms.stages.validate import ValidateRecords

# The flat names these tests use -> where the job's `validate` section declares them.
_SECTION = {"validate_masks": ("masks",), "probe_images": ("probe_images",), "validation_profile": ("profile",), "concurrency": ("io_concurrency",)}


def MaskValidationConfig(allowed_roots=None, **flat) -> FileCheckConfig:
    """A FileCheckConfig from flat names (mask.* settings by their own names), checked like the
    job's; only what a test names differs from the job's defaults."""
    values: dict = {}
    for name, value in flat.items():
        *parents, leaf = _SECTION.get(name, ("mask", name))
        target = values
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return FileCheckConfig.from_values(values, allowed_roots)


class ValidateMasks(beam.PTransform):
    """What the job runs for these checks: ValidateRecords, then CheckFiles."""

    def __init__(self, config, storage_options=None):
        super().__init__()
        self._config = config
        self._store = storage.Storage(storage_options)

    def expand(self, batches):
        validated = batches | ValidateRecords(self._config.profile)
        checked = validated["main"] | CheckFiles(self._config, self._store)
        dead = (validated[errors.DEAD_LETTERS], checked[errors.DEAD_LETTERS]) | "Dead" >> beam.Flatten()
        return {"records": checked["main"], errors.DEAD_LETTERS: dead}

LOOKOUT = shared_data("realdata", "lookout-for-vision-getting-started")
COLOR_MAP = [
    {"index": 0, "class_name": "BACKGROUND", "hex_color": "#ffffff", "confidence": 0.0},
    {"index": 1, "class_name": "scratch", "hex_color": "#2ca02c", "confidence": 0.0},
]


def make_row(line: int, mask_uri=None, color_map=COLOR_MAP, labels=None, image=None, objects=None) -> dict:
    return {
        "record_id": schema.record_id("test.manifest", line * 100, 0),
        "source": {"uri": "test.manifest", "line": line, "offset": line * 100, "format": "sagemaker"},
        "image": image or {"uri": f"/nowhere/{line}.jpg", "width": 80, "height": 64},
        "task": "semantic_segmentation",
        "labels": labels,
        "objects": objects,
        "mask": {"uri": mask_uri, "color_map": color_map} if mask_uri else None,
        "issues": [],
    }


_COLLECTED: dict[str, list] = {}


def _collect(key: str, items) -> None:
    """Pickled by reference (a module-level function), so the in-process runner's matcher
    stores into this module, where the test reads it back."""
    _COLLECTED[key] = list(items)


def run_pipeline(batches, config, storage_options=None):
    """Runs ValidateMasks on the FnApiRunner; returns (rows, dead letters) as lists."""
    run_id = str(len(_COLLECTED))

    def keep(name):
        key = f"{run_id}/{name}"

        def check(items):
            _collect(key, items)

        return check

    with test_pipeline.TestPipeline(runner=FnApiRunner()) as p:
        result = p | beam.Create(batches) | ValidateMasks(config, storage_options)
        rows = result["records"] | "Rows" >> beam.FlatMap(lambda b: b.to_pylist())
        assert_that(rows, keep("rows"), label="Rows out")
        assert_that(result[errors.DEAD_LETTERS], keep("dead"), label="Dead letters out")
    return _COLLECTED.pop(f"{run_id}/rows"), _COLLECTED.pop(f"{run_id}/dead")


def issue_codes(row: dict) -> list[str]:
    return [i["code"] for i in row["issues"] or []]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def good_mask(width=80, height=64, pixels=20) -> np.ndarray:
    mask = np.full((height, width, 3), 255, np.uint8)
    mask.reshape(-1, 3)[:pixels] = (44, 160, 44)
    return mask


def huge_header(width: int, height: int) -> bytes:
    body = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return mask_checks.PNG_MAGIC + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body))


# ---- real Lookout for Vision data --------------------------------------------------------


def lookout_rows() -> list[dict]:
    """The template manifest's anomaly lines, as the reader would resolve them."""
    rows = []
    manifest = LOOKOUT / "manifests" / "template.manifest"
    for line, text in enumerate(manifest.read_text().splitlines(), start=1):
        obj = orjson.loads(text)
        if "anomaly-mask-ref" not in obj:
            continue
        color_map = [
            {"index": int(k), "class_name": v["class-name"], "hex_color": v["hex-color"]}
            for k, v in obj["anomaly-mask-ref-metadata"]["internal-color-map"].items()
        ]
        row = make_row(
            line,
            mask_uri=str(LOOKOUT / obj["anomaly-mask-ref"]),
            color_map=color_map,
            labels=[{"name": obj["anomaly-label-metadata"]["class-name"]}],
            image={"uri": str(LOOKOUT / obj["source-ref"])},
        )
        rows.append(row)
    return rows


def test_real_lookout_masks_validate_and_absent_ones_are_not_found():
    need_shared_data("realdata", "lookout-for-vision-getting-started", "manifests", "template.manifest")
    rows = lookout_rows()
    batches = [schema.rows_to_batch(rows[i : i + 10]) for i in range(0, len(rows), 10)]
    out, dead = run_pipeline(batches, MaskValidationConfig(probe_images=True))
    assert dead == [] and len(out) == len(rows) == 32
    present = 0
    for row in out:
        mask_path = Path(row["mask"]["uri"])
        image_codes = [c for c in issue_codes(row) if c.startswith("IMAGE_")]
        assert image_codes == ([] if Path(row["image"]["uri"]).exists() else ["IMAGE_NOT_FOUND"])
        mask_codes = [c for c in issue_codes(row) if c.startswith("MASK_")]
        if not mask_path.exists():
            assert mask_codes == ["MASK_NOT_FOUND"] and row["mask"]["validated"] is False
            continue
        present += 1
        assert mask_codes == [] and row["mask"]["validated"] is True
        alpha = Image.open(mask_path).convert("RGBA").getchannel("A").histogram()
        assert row["mask"]["class_pixels"] == [{"class_name": "cracked", "pixels": sum(alpha[128:])}]
        assert (row["mask"]["width"], row["mask"]["height"]) == (576, 768)
        box = row["mask"]["foreground_bbox"]
        assert 0 <= box["x_min"] < box["x_max"] <= 1 and 0 <= box["y_min"] < box["y_max"] <= 1
        if Path(row["image"]["uri"]).exists():
            assert (row["image"]["width"], row["image"]["height"], row["image"]["format"]) == (576, 768, "jpeg")
    assert present == len(list((LOOKOUT / "mask-images").glob("anomaly-*.png")))


def test_real_lookout_masks_under_the_lookout_profile_fail_the_background_rule():
    """AWS's own sample declares entry 0 as 'cracked', not BACKGROUND #ffffff: Lookout's rule."""
    need_shared_data("realdata", "lookout-for-vision-getting-started", "manifests", "template.manifest")
    rows = [r for r in lookout_rows() if Path(r["mask"]["uri"]).exists()]
    out, dead = run_pipeline([schema.rows_to_batch(rows)], MaskValidationConfig(validation_profile="lookout_for_vision"))
    assert out == []
    assert sorted(d["code"] for d in dead) == ["MASK_BACKGROUND_INVALID"] * len(rows)


# ---- hostile corpus ------------------------------------------------------------------------


@pytest.fixture
def hostile(tmp_path) -> dict[str, tuple[str, str | None]]:
    """file name -> (path, the one code expected for it)."""
    good = png(good_mask())
    files = {
        "good.png": (good, None),
        "truncated.png": (good[: len(good) // 2], "MASK_CORRUPT"),
        "wrong_magic.png": (b"GIF89a" + good[6:], "MASK_NOT_PNG"),
        "zero.png": (b"", "MASK_NOT_PNG"),
        "bad_idat_crc.png": (good[:-16] + bytes([good[-16] ^ 0xFF]) + good[-15:], "MASK_CORRUPT"),
        "huge.png": (huge_header(100_000, 100_000), "MASK_TOO_LARGE"),
        "undeclared.png": (png(np.dstack([good_mask()[..., 0], good_mask()[..., 1], np.full((64, 80), 7, np.uint8)])), "MASK_UNDECLARED_COLOR"),
        "wrong_size.png": (png(good_mask(width=32)), "MASK_SIZE_MISMATCH"),
        "text.png": (b"this is not an image\n", "MASK_NOT_PNG"),
    }
    corpus = {}
    for name, (data, code) in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        corpus[name] = (str(path), code)
    corpus["missing.png"] = (str(tmp_path / "missing.png"), "MASK_NOT_FOUND")
    return corpus


def test_hostile_corpus_gets_exactly_one_right_code_per_file(hostile):
    rows = [make_row(i, mask_uri=path) for i, (path, _) in enumerate(hostile.values(), start=1)]
    out, dead = run_pipeline([schema.rows_to_batch(rows[:4]), schema.rows_to_batch(rows[4:])], MaskValidationConfig())
    assert dead == []
    by_mask = {Path(r["mask"]["uri"]).name: r for r in out}
    assert set(by_mask) == set(hostile)
    for name, (_, code) in hostile.items():
        assert issue_codes(by_mask[name]) == ([code] if code else []), name
        assert all(i["severity"] == "warning" for i in by_mask[name]["issues"])
    assert by_mask["good.png"]["mask"]["class_pixels"] == [{"class_name": "scratch", "pixels": 20}]


def test_hostile_corpus_under_a_target_profile_goes_to_dead_letters(hostile):
    rows = [make_row(i, mask_uri=path) for i, (path, _) in enumerate(hostile.values(), start=1)]
    out, dead = run_pipeline([schema.rows_to_batch(rows)], MaskValidationConfig(validation_profile="lookout_for_vision"))
    assert [Path(r["mask"]["uri"]).name for r in out] == ["good.png"]
    expected = sorted(code for _, code in hostile.values() if code)
    assert sorted(d["code"] for d in dead) == expected
    for letter in dead:
        assert letter["stage"] == "check_files" and letter["severity"] == "error"
        assert letter["source_uri"] == "test.manifest" and letter["line"] >= 1
        raw = orjson.loads(letter["raw"])
        assert raw["mask"]["uri"].endswith(".png") and raw["record_id"]


# ---- the DoFn called directly ----------------------------------------------------------------


def run_fn(config: MaskValidationConfig, batch):
    """ValidateRecords' DoFn, then CheckFiles' DoFn, called directly on one batch."""
    from transforms.stages.validate import _ValidateRecordsFn

    kept, dead = [], []
    for fn in (_ValidateRecordsFn(config.profile), check_files._CheckFilesFn(config, storage.Storage())):
        fn.setup()
        try:
            outputs = [o for b in ([batch] if not kept else kept) for o in fn.process(b)]
        finally:
            fn.teardown()
        kept = [o for o in outputs if not isinstance(o, beam.pvalue.TaggedOutput)]
        dead += [o.value for o in outputs if isinstance(o, beam.pvalue.TaggedOutput)]
        if not kept:
            break
    return kept, dead


def test_batches_without_work_pass_through_untouched():
    batch = schema.rows_to_batch([make_row(i) for i in range(5)])
    kept, dead = run_fn(MaskValidationConfig(), batch)
    assert kept == [batch] and kept[0] is batch and dead == []


def test_a_hanging_decoder_marks_only_its_record(tmp_path, monkeypatch):
    real_check = mask_checks.check_mask
    hang_marker = png(good_mask(pixels=7))

    def slow_on_one_file(data, *args, **kwargs):
        if data == hang_marker:
            time.sleep(20)
        return real_check(data, *args, **kwargs)

    monkeypatch.setattr(file_checks.masks, "check_mask", slow_on_one_file)
    (tmp_path / "hang.png").write_bytes(hang_marker)
    (tmp_path / "ok.png").write_bytes(png(good_mask()))
    rows = [make_row(1, mask_uri=str(tmp_path / "hang.png"))] + [
        make_row(i, mask_uri=str(tmp_path / "ok.png")) for i in range(2, 8)
    ]
    started = time.perf_counter()
    kept, dead = run_fn(MaskValidationConfig(timeout_seconds=0.5, concurrency=4), schema.rows_to_batch(rows))
    assert time.perf_counter() - started < 10  # the hung file is 20 s: nobody waited for it
    out = kept[0].to_pylist()
    assert issue_codes(out[0]) == ["MASK_CORRUPT"] and "0.5 s" in out[0]["issues"][0]["message"]
    assert out[0]["mask"]["validated"] is False
    assert all(issue_codes(r) == [] and r["mask"]["validated"] for r in out[1:])


def test_probing_fills_image_size_and_compares_the_mask_with_it(tmp_path):
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(tmp_path / "image.jpg")
    (tmp_path / "same.png").write_bytes(png(good_mask()))
    (tmp_path / "other.png").write_bytes(png(good_mask(width=60)))
    image = {"uri": str(tmp_path / "image.jpg")}
    rows = [make_row(1, mask_uri=str(tmp_path / "same.png"), image=dict(image)),
            make_row(2, mask_uri=str(tmp_path / "other.png"), image=dict(image))]
    kept, _ = run_fn(MaskValidationConfig(probe_images=True), schema.rows_to_batch(rows))
    same, other = kept[0].to_pylist()
    assert (same["image"]["width"], same["image"]["height"], same["image"]["format"]) == (80, 64, "jpeg")
    assert issue_codes(same) == [] and issue_codes(other) == ["MASK_SIZE_MISMATCH"]


def test_rekognition_profile_limits_apply_to_records_without_masks():
    box = {"label": "car", "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.2, "y_max": 0.2}}
    rows = [
        make_row(1, objects=[box] * 50),
        make_row(2, objects=[box] * 51),
        make_row(3, image={"uri": "/x/small.jpg", "width": 32, "height": 700, "format": "jpeg"}),
        make_row(4, image={"uri": "/x/a.gif", "width": 100, "height": 100, "format": "gif"}),
    ]
    kept, dead = run_fn(MaskValidationConfig(validation_profile="rekognition"), schema.rows_to_batch(rows))
    assert [r["source"]["line"] for r in kept[0].to_pylist()] == [1]
    assert {d["line"]: d["code"] for d in dead} == {2: "TOO_MANY_OBJECTS", 3: "IMAGE_TOO_SMALL", 4: "IMAGE_UNSUPPORTED_FORMAT"}
    assert "also IMAGE_ASPECT_RATIO" in next(d["message"] for d in dead if d["line"] == 3)


def test_brush_rles_are_measured_when_the_image_size_is_known():
    rle = pytest.importorskip("label_studio_sdk.converter.brush")
    canvas = np.zeros((64, 80, 4), np.uint8)
    canvas[10:20, 5:15, 3] = 255
    encoded = bytes(rle.encode_rle(canvas.ravel()))
    empty = bytes(rle.encode_rle(np.zeros(64 * 80 * 4, np.uint8)))
    measured = {"label": "old", "mask_rle": encoded, "area": 3.0}  # measured at parse: left alone
    objects = [{"label": "spot", "mask_rle": encoded}, {"label": "bad", "mask_rle": encoded[:9]},
               {"label": "none", "mask_rle": empty}, measured]
    kept, dead = run_fn(MaskValidationConfig(), schema.rows_to_batch([make_row(1, objects=objects)]))
    (row,) = kept[0].to_pylist()
    assert row["objects"][0]["area"] == 100.0
    assert row["objects"][0]["bbox"] == {"x_min": 5 / 80, "y_min": 10 / 64, "x_max": 15 / 80, "y_max": 20 / 64}
    assert row["objects"][1]["area"] is None and row["objects"][3]["area"] == 3.0
    assert issue_codes(row) == ["RLE_INVALID", "RLE_EMPTY"] and dead == []
    # Under label_studio an RLE that does not decode is an error, also when the format already
    # reported it at parse time (then once, not twice).
    _, dead = run_fn(MaskValidationConfig(validation_profile="label_studio"),
                     schema.rows_to_batch([make_row(2, objects=objects[:2])]))
    assert [d["code"] for d in dead] == ["RLE_INVALID"]
    flagged = dict(make_row(3, objects=objects[:2]), issues=[{"code": "RLE_INVALID", "severity": "warning", "message": "x"}])
    kept, dead = run_fn(MaskValidationConfig(validation_profile="label_studio"), schema.rows_to_batch([flagged]))
    assert [d["code"] for d in dead] == ["RLE_INVALID"] and kept == []


def test_config_refuses_unknown_profiles_and_bad_bounds():
    from pipelines.options import ConfigError, parse_launch

    with pytest.raises(ValueError, match="'sagemaker' is not one of none"):
        CheckFiles(MaskValidationConfig(validation_profile="sagemaker"))
    with pytest.raises(ValueError, match="known: azure_automl"):  # a section built without the checks
        FileCheckConfig.of(file_checks.ValidateConfig(profile="sagemaker"))
    with pytest.raises(ConfigError, match="mask_alpha_threshold"):
        parse_launch(["--input", __file__, "--output", "/tmp/x", "--mask_alpha_threshold=300"])


# ---- S3 through a real endpoint (moto's server on loopback) -------------------------------


@pytest.fixture(scope="module")
def s3_endpoint():
    moto_server = pytest.importorskip("moto.server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_masks_and_images_on_s3(s3_endpoint):
    import s3fs

    options = {"s3": {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}}
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, key="testing", secret="testing", skip_instance_cache=True)
    fs.mkdir("masks-bucket")
    fs.pipe("masks-bucket/m/good.png", png(good_mask()))
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(buffer, format="JPEG")
    fs.pipe("masks-bucket/i/image.jpg", buffer.getvalue())
    rows = [
        make_row(1, mask_uri="s3://masks-bucket/m/good.png", image={"uri": "s3://masks-bucket/i/image.jpg"}),
        make_row(2, mask_uri="s3://masks-bucket/m/absent.png", image={"uri": "s3://masks-bucket/i/absent.jpg"}),
    ]
    out, dead = run_pipeline([schema.rows_to_batch(rows)], MaskValidationConfig(probe_images=True), options)
    by_line = {r["source"]["line"]: r for r in out}
    assert dead == []
    assert issue_codes(by_line[1]) == [] and by_line[1]["mask"]["class_pixels"][0]["pixels"] == 20
    assert (by_line[1]["image"]["width"], by_line[1]["image"]["height"]) == (80, 64)
    assert sorted(issue_codes(by_line[2])) == ["IMAGE_NOT_FOUND", "MASK_NOT_FOUND"]


def test_counters_reach_the_pipeline_result(hostile):
    """Counted in the bundle's thread, not the pool's: Beam drops increments made elsewhere."""
    from apache_beam.metrics.metric import MetricsFilter

    rows = [make_row(i, mask_uri=path) for i, (path, _) in enumerate(hostile.values(), start=1)]
    pipeline = beam.Pipeline(runner=FnApiRunner())
    _ = pipeline | beam.Create([schema.rows_to_batch(rows)]) | ValidateMasks(MaskValidationConfig())
    result = pipeline.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("check_files"))["counters"]
    }
    expected = {}
    for _, code in hostile.values():
        if code:
            expected[code] = expected.get(code, 0) + 1
    validated = sum(1 for _, code in hostile.values() if code in (None, "MASK_UNDECLARED_COLOR", "MASK_SIZE_MISMATCH"))
    assert counters == dict(expected, masks_validated=validated)


def test_files_queued_behind_hung_ones_still_run(tmp_path):
    """Named pipes never finish opening: with one thread, the second would wait for ever."""
    for name in ("hang-1.png", "hang-2.png"):
        os.mkfifo(tmp_path / name)
    (tmp_path / "ok.png").write_bytes(png(good_mask()))
    rows = [make_row(1, mask_uri=str(tmp_path / "hang-1.png")), make_row(2, mask_uri=str(tmp_path / "hang-2.png")),
            make_row(3, mask_uri=str(tmp_path / "ok.png"))]
    started = time.perf_counter()
    kept, dead = run_fn(MaskValidationConfig(timeout_seconds=0.5, concurrency=1), schema.rows_to_batch(rows))
    assert time.perf_counter() - started < 15
    out = kept[0].to_pylist()
    assert [issue_codes(r) for r in out] == [["MASK_CORRUPT"], ["MASK_CORRUPT"], []]


def test_a_hung_file_does_not_keep_the_process_from_exiting(tmp_path):
    os.mkfifo(tmp_path / "hang.png")
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from tests.test_check_files import make_row, run_fn, MaskValidationConfig
from transforms import schema
kept, _ = run_fn(MaskValidationConfig(timeout_seconds=0.5), schema.rows_to_batch([make_row(1, mask_uri={str(tmp_path / "hang.png")!r})]))
print(kept[0].to_pylist()[0]["issues"][0]["code"])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("MASK_CORRUPT")


def test_a_decoder_bug_on_a_hostile_chunk_is_mask_corrupt():
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, "PNG")
    good = buffer.getvalue()
    end = good.rfind(b"IEND") - 4
    hostile = good[:end] + chunk(b"iCCP", b"x\x00") + good[end:]  # iCCP after IDAT, cut short
    with pytest.raises(mask_checks.MaskRejected) as caught:
        mask_checks.check_mask(hostile, None, mask_checks.MaskPolicy())
    assert caught.value.finding.code == mask_checks.MASK_CORRUPT


def test_only_rows_with_files_to_check_become_python_rows():
    rows = [
        make_row(1, mask_uri="s3://b/m.png"),
        make_row(2),
        make_row(3, objects=[{"label": "brush", "mask_rle": b"\x00\x01"}]),
        make_row(4, objects=[{"label": "box"}]),
    ]
    batch = schema.rows_to_batch(rows)
    config = MaskValidationConfig()
    assert file_checks.rows_with_files(batch, config).to_pylist() == [True, False, True, False]
    no_masks = MaskValidationConfig(validate_masks=False)
    assert file_checks.rows_with_files(batch, no_masks).to_pylist() == [False] * 4
    probing = MaskValidationConfig(validate_masks=False, probe_images=True)
    assert file_checks.rows_with_files(batch, probing).to_pylist() == [True] * 4
