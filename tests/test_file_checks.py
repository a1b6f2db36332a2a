"""The file checks' core without a pipeline: rows decided in Arrow equal what FileChecker decides."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tests.test_check_files import COLOR_MAP, MaskValidationConfig, good_mask, make_row, png
from transforms import errors, file_checks, schema, storage


def _rows(tmp_path) -> list[dict]:
    (tmp_path / "inside.png").write_bytes(png(good_mask()))
    manifest = str(tmp_path / "in.manifest")
    refs = [
        "s3://example-bucket/masks/a.png",       # outside: decided in Arrow
        "s3://allowed-bucket/masks/b.png",       # inside an allowed root: opened (and fails)
        "s3a://allowed-bucket/masks/c.png",      # an alias of the allowed scheme: inside
        "s3://allowed-bucketx/masks/d.png",      # a prefix of a name is not a folder: outside
        "s3://example-bucket/masks/../e.png",    # a dot segment: left to FileChecker
        "s3://user:pw@example-bucket/f.png",     # credentials: REFERENCE_INVALID, by FileChecker
        "gs://example-bucket/g.png",             # another store: outside
        str(tmp_path / "inside.png"),            # local, inside the manifest's folder: checked
        "/elsewhere/h.png",                      # local, outside: FileChecker (symlinks resolve)
        None,                                    # no mask at all
    ]
    rows = []
    for line, ref in enumerate(refs, start=1):
        row = make_row(line, mask_uri=ref)
        row["source"] = dict(row["source"], uri=manifest)
        rows.append(row)
    rle = make_row(11, objects=[{"label": "scratch", "mask_rle": b"\x00\x01", "area": None}])
    rle["mask"] = {"uri": "s3://example-bucket/masks/rle.png", "color_map": COLOR_MAP}
    rle["source"] = dict(rle["source"], uri=manifest)
    image_only = make_row(12, image={"uri": "s3://example-bucket/images/12.jpg"})
    image_only["source"] = dict(image_only["source"], uri=manifest)
    both = make_row(13, mask_uri="gs://elsewhere/13.png", image={"uri": "s3://example-bucket/images/13.jpg"})
    both["source"] = dict(both["source"], uri=manifest)
    return rows + [rle, image_only, both]


@pytest.mark.parametrize("profile,probe", [("none", False), ("lookout_for_vision", False), ("none", True), ("rekognition", True)])
def test_rows_decided_in_arrow_equal_the_checkers_own_decision(tmp_path, monkeypatch, profile, probe):
    batch = schema.rows_to_batch(_rows(tmp_path))
    config = MaskValidationConfig(validation_profile=profile, probe_images=probe, timeout_seconds=5, allowed_roots=("s3://allowed-bucket",))
    store = storage.Storage()
    fast = file_checks.BatchFileChecker(config, store).check(batch)
    decided, _ = file_checks.decided_without_opening(batch.filter(file_checks.rows_with_files(batch, config)), config)
    # a.png, d.png (s3), g.png and row 13's gs:// mask; probing, only rows 12 and 13, whose images
    # are on s3 too (the others' images are local paths: they go to the pool with their masks)
    assert decided.sum() == (2 if probe else 4)
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
