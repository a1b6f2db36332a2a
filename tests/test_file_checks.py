"""The file checks' core without a pipeline: rows decided in Arrow equal what FileChecker decides."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tests.test_check_files import COLOR_MAP, MaskValidationConfig, good_mask, make_row, png
from transforms import errors, file_checks, schema, storage


def _rows(tmp_path) -> list[dict]:
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "inside.png").write_bytes(png(good_mask()))
    (elsewhere / "link.png").symlink_to(root / "inside.png")  # an outside name for an inside file
    (elsewhere / "linked").symlink_to(root)  # an outside folder name for the root itself
    manifest = str(root / "in.manifest")
    refs = [
        "s3://example-bucket/masks/a.png",       # outside: decided in Arrow
        "s3://allowed-bucket/masks/b.png",       # inside an allowed root: opened (and fails)
        "s3a://allowed-bucket/masks/c.png",      # an alias of the allowed scheme: inside
        "s3://allowed-bucketx/masks/d.png",      # a prefix of a name is not a folder: outside
        "s3://example-bucket/masks/../e.png",    # a dot segment: left to FileChecker
        "s3://user:pw@example-bucket/f.png",     # credentials: REFERENCE_INVALID, by FileChecker
        "gs://example-bucket/g.png",             # another store: outside
        str(root / "inside.png"),                # local, inside the manifest's folder: checked
        "/elsewhere/h.png",                      # local, outside: decided (no such link)
        None,                                    # no mask at all
        str(elsewhere / "link.png"),             # a symlink into the root: opened, like FileChecker
        str(elsewhere / "linked" / "inside.png"),  # a symlinked folder into the root: opened
        str(elsewhere / "missing.png"),          # local, outside: decided
    ]
    rows = []
    for line, ref in enumerate(refs, start=1):
        row = make_row(line, mask_uri=ref)
        row["source"] = dict(row["source"], uri=manifest)
        rows.append(row)
    rle = make_row(21, objects=[{"label": "scratch", "mask_rle": b"\x00\x01", "area": None}])
    rle["mask"] = {"uri": "s3://example-bucket/masks/rle.png", "color_map": COLOR_MAP}
    rle["source"] = dict(rle["source"], uri=manifest)
    image_only = make_row(22, image={"uri": "s3://example-bucket/images/12.jpg"})
    image_only["source"] = dict(image_only["source"], uri=manifest)
    both = make_row(23, mask_uri="gs://elsewhere/13.png", image={"uri": "s3://example-bucket/images/13.jpg"})
    both["source"] = dict(both["source"], uri=manifest)
    return rows + [rle, image_only, both]


@pytest.mark.parametrize("profile,probe", [("none", False), ("lookout_for_vision", False), ("none", True), ("rekognition", True)])
def test_rows_decided_in_arrow_equal_the_checkers_own_decision(tmp_path, monkeypatch, profile, probe):
    batch = schema.rows_to_batch(_rows(tmp_path))
    config = MaskValidationConfig(validation_profile=profile, probe_images=probe, timeout_seconds=5, allowed_roots=("s3://allowed-bucket",))
    store = storage.Storage()
    fast = file_checks.BatchFileChecker(config, store).check(batch)
    decided, _ = file_checks.decided_without_opening(batch.filter(file_checks.rows_with_files(batch, config)), config)
    # masks a.png, d.png (s3), g.png, /elsewhere/h.png, missing.png and row 23's gs:// one;
    # probing, the images of rows 1-13 (/nowhere/...) are outside too, so a row is decided when
    # its mask is absent or outside as well (rows 1, 4, 7, 9, 10, 13, 22, 23)
    assert decided.astype(int).tolist() == ([1, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1] if not probe else [1, 0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 1])
    monkeypatch.setattr(file_checks, "decided_without_opening", lambda b, c: (np.zeros(b.num_rows, bool), []))
    slow = file_checks.BatchFileChecker(config, store).check(batch)
    assert pa.Table.from_batches(fast.batches, schema.SCHEMA).to_pylist() == pa.Table.from_batches(slow.batches, schema.SCHEMA).to_pylist()
    assert fast.letters == slow.letters
    assert fast.counts == slow.counts
    assert fast.counts[errors.REFERENCE_OUTSIDE_ROOTS] >= 3


def test_outside_roots_is_within_roots_negated_for_plain_object_urls():
    uris = ["s3://b/x.png", "s3://b2/x.png", "gcs://b/x.png", "gs://b/x.png", "s3://b", "s3://b/x/../y.png", "s3://b//x.png", None]
    manifests = ["s3://b/m.manifest"] * 6 + ["/data/m.manifest"] * 2
    got = file_checks.outside_roots(pa.array(uris, pa.string()), pa.array(manifests), ("gs://b",)).tolist()
    # decided outside only where storage.within_roots says outside and the URL is plain
    assert got == [False, True, False, False, False, False, False, False]
    for uri, manifest, outside in zip(uris, manifests, got):
        if outside:
            assert not storage.within_roots(uri, ("gs://b", storage.default_root(manifest)))


def test_no_roots_means_nothing_is_decided_outside():
    assert not file_checks.outside_roots(pa.array(["s3://b/x.png"]), pa.array(["/m"]), None).any()
