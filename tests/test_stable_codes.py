"""References and masks a hostile manifest may hold end as stable codes, never INTERNAL_ERROR:
a control character or credentials in a reference, a manifest stored at `/`, an animated PNG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.test_check_files import COLOR_MAP, MaskValidationConfig, good_mask, issue_codes, make_row, png, run_fn
from transforms import schema, storage
from transforms.checks import masks as mask_checks


def _checked(row: dict, **config) -> tuple[dict, list]:
    kept, dead = run_fn(MaskValidationConfig(timeout_seconds=10, **config), schema.rows_to_batch([row]))
    return (kept[0].to_pylist()[0] if kept else None), dead


@pytest.mark.parametrize(
    ("uri", "secret"),
    [
        ("/data/masks/a\x00.png", None),
        ("s3://bucket/masks/a\x00.png", None),
        ("s3://user:hunter2@bucket/masks/1.png", "hunter2"),
        ("gs://user:hunter2@bucket/masks/1.png", "hunter2"),
        ("s3:///masks/1.png", None),
        ("/data/masks/new\nline.png", None),
    ],
)
def test_a_reference_no_store_can_open_is_reference_invalid_and_never_opened(uri, secret):
    row = make_row(1, mask_uri=uri)
    row["source"]["uri"] = "s3://bucket/m.manifest" if "://" in uri else "/data/m.manifest"
    out, dead = _checked(row, allowed_roots=("s3://bucket", "gs://bucket", "/data"))
    assert dead == [] and issue_codes(out) == ["REFERENCE_INVALID"]
    message = out["issues"][0]["message"]
    assert "not opened" in message and "\x00" not in message and "\n" not in message
    if secret:
        assert secret not in message and "***@" in message


def test_a_manifest_stored_at_the_root_gets_no_root_of_its_own(tmp_path):
    assert storage.default_root("/m.manifest") is None
    assert storage.default_root("file:///m.manifest") is None
    assert storage.default_root("/data/m.manifest") == "/data"
    assert storage.default_root("s3://bucket/m.manifest") == "s3://bucket"
    secret = tmp_path / "secret.png"
    secret.write_text("root:x:0:0")
    row = make_row(1, mask_uri=str(secret))
    row["source"]["uri"] = "/m.manifest"
    out, _ = _checked(row, allowed_roots=())
    assert issue_codes(out) == ["REFERENCE_OUTSIDE_ROOTS"]
    out, _ = _checked(row, allowed_roots=("/",))  # named: `/` is a root
    assert issue_codes(out) == ["MASK_NOT_PNG"]


def _apng(frames: int) -> bytes:
    first = Image.fromarray(good_mask())
    rest = [Image.fromarray(np.full_like(good_mask(), 255)) for _ in range(frames - 1)]
    buffer = io.BytesIO()
    first.save(buffer, format="PNG", save_all=frames > 1, append_images=rest)
    return buffer.getvalue()


def test_an_animated_png_mask_is_flagged():
    data = _apng(3)
    assert b"acTL" in data
    color_map = [{"index": 0, "class_name": "BACKGROUND", "hex_color": "#ffffff"}, {"index": 1, "class_name": "scratch", "hex_color": "#2ca02c"}]
    report = mask_checks.check_mask(data, color_map, mask_checks.MaskPolicy())
    assert [f.code for f in report.findings] == ["MASK_ANIMATED"] and "3 frames" in report.findings[0].message
    assert mask_checks.check_mask(png(good_mask()), color_map, mask_checks.MaskPolicy()).findings == []


def test_an_animated_png_mask_is_flagged_through_check_files(tmp_path):
    (tmp_path / "anim.png").write_bytes(_apng(2))
    row = make_row(1, mask_uri=str(tmp_path / "anim.png"), color_map=COLOR_MAP)
    row["source"]["uri"] = str(tmp_path / "m.manifest")
    out, dead = _checked(row, allowed_roots=())
    assert dead == [] and "MASK_ANIMATED" in issue_codes(out) and out["mask"]["validated"]
