"""Shard planning (transforms/shards.py) without Beam: a file's layout, format and shards, the
lines each shard of a split file owns, and the first line number of each."""

from __future__ import annotations

import gzip

from transforms import errors
from transforms.read_layout import JSONL
from transforms.shard_reader import ShardReader
from transforms.shards import (
    DOCUMENT,
    FILE_CHECKS_PER_SHARD,
    MAX_FILE_CHECK_SHARDS,
    FileChecks,
    ShardPlanner,
    count_shard_lines,
    with_line_bases,
)
from transforms.storage import Storage

MASK_LINE = b'{"source-ref": "s3://b/%06d.jpg", "m-ref": "masks/%06d.png", "m-ref-metadata": {"type": "groundtruth/semantic-segmentation", "internal-color-map": {"0": {"class-name": "BACKGROUND", "hex-color": "#ffffff"}}}}\n'


def _plan(path, shard_size=64 << 20, **kwargs):
    return ShardPlanner(None, shard_size, Storage(), **kwargs).plan(str(path), path.stat().st_size)


def test_a_large_json_lines_file_is_split_into_byte_ranges_to_count(tmp_path):
    path = tmp_path / "m.manifest"
    path.write_bytes(b"".join(b'{"source-ref": "s3://b/%06d.jpg"}\n' % i for i in range(1000)))
    size = path.stat().st_size
    plan = _plan(path, 4096)
    assert plan.split and plan.counts == {"format": "sagemaker", "layout": JSONL, "bytes": size}
    assert [(s.start, s.end) for s in plan.shards] == [(start, min(start + 4096, size)) for start in range(0, size, 4096)]
    assert [s.index for s in plan.shards] == list(range(len(plan.shards)))
    small = _plan(path, 1 << 20)
    assert not small.split and [(s.start, s.end, s.layout) for s in small.shards] == [(0, -1, JSONL)]


def test_a_file_that_cannot_be_opened_is_one_unreadable_shard_and_no_ledger_entry(tmp_path):
    missing = tmp_path / "gone.manifest"
    plan = ShardPlanner("sagemaker", 4096, Storage()).plan(str(missing), 10)
    assert plan.counts is None and not plan.split
    [shard] = plan.shards
    assert shard.layout.startswith("unreadable:") and shard.format is None
    reader = ShardReader(shard, 1000, 1 << 20)
    [batch] = list(reader.read(Storage()))
    assert [code for _, code, _ in batch.failures] == [errors.READ_FAILED]
    assert reader.counts() == {"lines": 1, "expected_lines": 1, "incomplete_reads": 1}


def test_counted_shards_numbered_by_their_line_bases_read_every_line_once(tmp_path):
    lines = [b'{"source-ref": "s3://b/%d.jpg"}' % i if i % 7 else b"" for i in range(3000)]
    path = tmp_path / "m.manifest"
    path.write_bytes(b"\n".join(lines) + b"\n")
    plan = _plan(path, 5000)
    assert plan.split and len(plan.shards) > 10
    counted = [count_shard_lines(shard, Storage()) for shard in reversed(plan.shards)]  # any order: grouped
    numbered = list(with_line_bases((str(path), counted)))
    assert [s.index for s in numbered] == list(range(len(plan.shards)))
    assert sum(s.counted_lines for s in numbered) == 3000
    assert [s.line_base for s in numbered] == [sum(t.counted_lines for t in numbered[:i]) for i in range(len(numbered))]
    seen = []
    for shard in numbered:
        reader = ShardReader(shard, 100, 1 << 20)
        for batch in reader.read(Storage()):
            seen += zip(batch.lines, batch.raws)
        assert reader.counts()["lines"] == reader.counts()["expected_lines"] == shard.counted_lines
    assert seen == [(i + 1, raw) for i, raw in enumerate(lines) if raw]


def test_a_shard_whose_lines_cannot_be_counted_is_unreadable_and_adds_no_lines(tmp_path):
    path = tmp_path / "m.manifest"
    path.write_bytes(b'{"a": 1}\n' * 2000)
    first, second, *rest = _plan(path, 4096).shards
    path.unlink()
    failed = count_shard_lines(second, Storage())
    assert failed[1] == -1 and failed[0].layout.startswith("unreadable:")
    numbered = list(with_line_bases((str(path), [(first, 455), failed, *[(s, 455) for s in rest]])))
    assert [s.line_base for s in numbered[:3]] == [0, 455, 455]


def test_a_gzip_file_is_one_shard_whatever_its_size(tmp_path):
    path = tmp_path / "m.manifest.gz"
    path.write_bytes(gzip.compress(b"".join(b'{"source-ref": "s3://b/%d.jpg"}\n' % i for i in range(5000))))
    plan = _plan(path, 1024)
    assert not plan.split and [(s.compression, s.end, s.format) for s in plan.shards] == [("gzip", -1, "sagemaker")]


def test_a_manifest_of_masks_is_cut_into_shards_of_about_200_checks(tmp_path):
    """The shard size for file checks comes from the lines' own size, so a small manifest of
    5,000 masks spreads over ~10 shards (every worker gets some), not one or two."""
    path = tmp_path / "masks.manifest"
    path.write_bytes(b"".join(MASK_LINE % (i, i) for i in range(5000)))
    shards = _plan(path, checks=FileChecks(masks=True)).shards
    assert 5000 // FILE_CHECKS_PER_SHARD - 1 <= len(shards) <= 5000 // FILE_CHECKS_PER_SHARD + 1
    assert len(_plan(path).shards) == 1  # without file checks it is one shard


def test_a_large_manifest_of_masks_is_cut_into_at_most_max_file_check_shards(tmp_path):
    """Beyond MAX_FILE_CHECK_SHARDS shards, shards grow instead: each costs fixed work."""
    line = b'{"source-ref": "s3://b/%06d.jpg", "m-ref": "masks/%06d.png", "m-ref-metadata": {"type": "groundtruth/semantic-segmentation"}}\n'
    path = tmp_path / "masks.manifest"
    path.write_bytes(b"".join(line % (i, i) for i in range(FILE_CHECKS_PER_SHARD * MAX_FILE_CHECK_SHARDS * 2)))
    shards = _plan(path, checks=FileChecks(masks=True)).shards
    assert MAX_FILE_CHECK_SHARDS - 1 <= len(shards) <= MAX_FILE_CHECK_SHARDS + 1


def test_a_long_first_line_does_not_turn_json_lines_into_one_object(tmp_path):
    path = tmp_path / "long-first.manifest"
    first = b'{"source-ref": "a.jpg", "note": "' + b"x" * 300_000 + b'"}\n'
    path.write_bytes(first + b'{"source-ref": "b.jpg"}\n' * 10)
    (shard,) = _plan(path, 1 << 30).shards
    assert shard.layout == JSONL and shard.format == "sagemaker"


def test_a_coco_document_is_planned_by_its_format_in_member_parts(tmp_path):
    import json

    path = tmp_path / "instances.json"
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 10, "height": 10} for i in range(50)]
    annotations = [{"id": i, "image_id": i % 50, "category_id": 1, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0} for i in range(200)]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "cat"}]}))
    plan = _plan(path)
    assert plan.counts["format"] == "coco" and plan.counts["layout"] == DOCUMENT and not plan.split
    members = {s.member for s in plan.shards}
    assert {"images", "annotations"} <= members
    assert sum(s.counted_lines for s in plan.shards if s.member == "annotations") == 200
