"""The shard reader (transforms/shard_reader.py) without Beam: shard edges, line numbers, offsets,
layouts, bad bytes; and the read stage's DoFns, called directly, tag what the cores give."""

from __future__ import annotations

import gzip
import io

import pytest

from transforms import errors
from transforms.read_layout import JSON_ARRAY, JSON_OBJECT, JSONL, count_line_starts, sniff
from transforms.settings import parse_size
from transforms.shard_reader import ShardReader
from transforms.shards import Shard
from transforms.stages.read import _PlanShardsFn, _ReadShardFn
from transforms.storage import Storage


def read_all(data: bytes, shard_size: int, max_line_bytes: int = 1 << 20, batch_lines: int = 7):
    """Reads `data` shard by shard as the pipeline does; returns [(line, offset, raw)], failures, blank."""
    records, failures, blank, counts = [], [], 0, []
    starts = list(range(0, len(data), shard_size)) or [0]
    for index, start in enumerate(starts):
        shard = Shard("mem://x", index, start, min(start + shard_size, len(data)), JSONL, "sagemaker")
        reader = ShardReader(shard, batch_lines, max_line_bytes)
        batches = list(reader.read_lines(io.BytesIO(data))) + list(reader.flush())
        base = sum(counts)
        counts.append(reader.line_count)
        for batch in batches:
            blank += batch.blank
            bad = {i: (code, msg) for i, code, msg in batch.failures}
            for i, raw in enumerate(batch.raws):
                item = (batch.lines[i] + base, batch.offsets[i], raw)
                (failures if i in bad else records).append(item + ((bad[i][0],) if i in bad else ()))
    return records, failures, blank, sum(counts)


def expected_lines(data: bytes):
    out, offset = [], 0
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts = parts[:-1]
    for number, part in enumerate(parts, start=1):
        raw = part[:-1] if part.endswith(b"\r") else part
        if raw.strip():
            out.append((number, offset, raw))
        offset += len(part) + 1
    return out, len(parts)


SAMPLE = b'{"a": 1}\n\n{"b": 22}\r\n   \n{"c": "x\\ny"}\n{"d": 4444444444}\n{"e": 5}'


@pytest.mark.parametrize("shard_size", [1, 2, 3, 5, 8, 9, 10, 11, 17, 64, 1000])
def test_every_shard_size_gives_the_same_lines_offsets_and_numbers(shard_size):
    want, total = expected_lines(SAMPLE)
    got, failures, blank, lines = read_all(SAMPLE, shard_size)
    assert got == want
    assert failures == []
    assert lines == total == 7
    assert blank == 2


@pytest.mark.parametrize("shard_size", [4, 13, 50])
def test_trailing_newline_and_edges_on_line_starts(shard_size):
    data = b"".join(b'{"i": %d}\n' % i for i in range(20))  # 9 or 10 bytes a line
    want, total = expected_lines(data)
    got, _, _, lines = read_all(data, shard_size)
    assert got == want and lines == total == 20


def test_long_lines_become_failures_and_keep_counting():
    data = b'{"a": 1}\n' + b'{"big": "' + b"x" * 5000 + b'"}\n{"b": 2}\n'
    got, failures, _, lines = read_all(data, shard_size=100, max_line_bytes=1000)
    assert [g[2] for g in got] == [b'{"a": 1}', b'{"b": 2}']
    assert [(f[0], f[1], f[3]) for f in failures] == [(2, 9, errors.LINE_TOO_LONG)]
    assert lines == 3
    assert [g[0] for g in got] == [1, 3]


def test_long_line_within_one_chunk_is_refused_too():
    data = b'{"big": "' + b"y" * 3000 + b'"}\n{"b": 2}'
    got, failures, _, lines = read_all(data, shard_size=1 << 20, max_line_bytes=100)
    assert len(failures) == 1 and failures[0][3] == errors.LINE_TOO_LONG
    assert len(failures[0][2]) <= errors.RAW_TEXT_LIMIT
    assert got == [(2, len(data) - 8, b'{"b": 2}')] and lines == 2


@pytest.mark.parametrize("shard_size", [1, 2, 3, 5, 8, 13, 64, 1000])
@pytest.mark.parametrize("data", [SAMPLE, SAMPLE + b"\n", b"\n\n\n", b"x", b'{"a": 1}\r\n' * 9])
def test_counted_line_starts_equal_the_lines_each_shard_reads(data, shard_size):
    """The pre-count that numbers shards agrees with the reader, shard by shard."""
    for index, start in enumerate(range(0, len(data), shard_size)):
        end = min(start + shard_size, len(data))
        shard = Shard("mem://x", index, start, end, JSONL, "sagemaker")
        reader = ShardReader(shard, 1000, 1 << 20)
        list(reader.read_lines(io.BytesIO(data)))
        assert count_line_starts(io.BytesIO(data), start, end) == reader.line_count, (start, end)


def test_parse_size_accepts_suffixes():
    assert parse_size("64MB") == 64 << 20
    assert parse_size("512KB") == 512 << 10
    assert parse_size("1.5GB") == int(1.5 * (1 << 30))
    assert parse_size("4096") == 4096
    assert parse_size("2 MiB") == 2 << 20
    with pytest.raises(ValueError):
        parse_size("lots")


@pytest.mark.parametrize(
    "head, layout",
    [
        (b'{"source-ref": "a"}\n{"source-ref": "b"}\n', JSONL),
        (b'\xef\xbb\xbf  [\n  {"id": 1}', JSON_ARRAY),
        (b'{\n  "data": {"image": "x"},\n  "annotations": []\n}\n', JSON_OBJECT),
        (b'{"broken": \n{"source-ref": "b"}\n', JSONL),  # a broken first line is still JSON lines
        (b"not json at all\n", JSONL),
    ],
)
def test_sniff_layouts(head, layout):
    assert sniff(head) == layout


def test_plan_shards_detects_format_and_cuts_byte_ranges(tmp_path):
    path = tmp_path / "m.manifest"
    path.write_bytes(b"".join(b'{"source-ref": "s3://b/%06d.jpg"}\n' % i for i in range(1000)))
    outputs = list(_PlanShardsFn(None, 4096, Storage()).process((str(path), path.stat().st_size)))
    shards = [o.value for o in outputs if isinstance(o.value, Shard)]
    info = [o.value for o in outputs if not isinstance(o.value, Shard)]
    assert info == [(str(path), {"format": "sagemaker", "layout": JSONL, "bytes": path.stat().st_size})]
    assert [s.start for s in shards] == list(range(0, path.stat().st_size, 4096))
    assert shards[-1].end == path.stat().st_size and all(s.format == "sagemaker" for s in shards)


def test_gzip_is_one_shard_and_reads_whole(tmp_path):
    path = tmp_path / "m.manifest.gz"
    data = b"".join(b'{"source-ref": "s3://b/%d.jpg"}\n' % i for i in range(5000))
    path.write_bytes(gzip.compress(data))
    outputs = list(_PlanShardsFn(None, 1024, Storage()).process((str(path), path.stat().st_size)))
    shards = [o for o in outputs if isinstance(o, Shard)]
    assert len(shards) == 1 and shards[0].compression == "gzip" and shards[0].format == "sagemaker"
    batches = list(ShardReader(shards[0], 1000, 1 << 20).read(Storage()))
    assert sum(len(b.raws) for b in batches) == 5000
    assert batches[-1].offsets[-1] == len(data) - len(data.split(b"\n")[-2]) - 1


def test_unreadable_gzip_is_a_dead_letter_not_a_crash(tmp_path):
    path = tmp_path / "bad.manifest.gz"
    path.write_bytes(gzip.compress(b'{"source-ref": "a"}\n' * 100)[:40])
    shard = Shard(str(path), 0, 0, -1, JSONL, "sagemaker", "gzip")
    batches = list(ShardReader(shard, 1000, 1 << 20).read(Storage()))
    codes = [code for b in batches for _, code, _ in b.failures]
    assert codes == [errors.READ_FAILED]


def test_broken_first_lines_do_not_turn_json_lines_into_one_object():
    head = b'{"source-ref": \n' * 25 + b'{"source-ref": "b.jpg"}\n'
    assert sniff(head, complete=True) == JSONL
    assert sniff(b'{"source-ref": ' + b"x" * 100, complete=False) == JSONL
    assert sniff(b'{\n  "data": {"image": "x"}', complete=False) == JSON_OBJECT


@pytest.mark.parametrize("shard_size", [997, 50_000])
def test_no_line_too_long_for_the_tail_a_shard_does_not_own(shard_size):
    data = b"".join(b'{"i": %d}\n' % i for i in range(20_000))
    got, failures, _, lines = read_all(data, shard_size, max_line_bytes=1000)
    assert failures == [] and len(got) == lines == 20_000


def _gzip_shard(path):
    return Shard(str(path), 0, 0, -1, JSONL, "sagemaker", "gzip")


def _read_gzip(path):
    reader = ShardReader(_gzip_shard(path), 1000, 1 << 20)
    batches = list(reader.read(Storage()))
    counts = reader.counts()
    good = sum(len(b.raws) - len(b.failures) for b in batches)
    codes = [code for b in batches for _, code, _ in b.failures]
    return good, codes, counts


def test_truncated_gzip_keeps_the_lines_before_the_damage(tmp_path):
    data = b"".join(b'{"source-ref": "s3://b/%06d.jpg"}\n' % i for i in range(20_000))
    packed = gzip.compress(data)
    path = tmp_path / "cut.manifest.gz"
    path.write_bytes(packed[: len(packed) * 3 // 4])
    good, codes, counts = _read_gzip(path)
    assert good > 10_000 and codes == [errors.READ_FAILED]
    assert counts["incomplete_reads"] == 1


def test_corrupt_gzip_block_is_a_dead_letter_not_a_crash(tmp_path):
    data = b"".join(b'{"source-ref": "s3://b/%06d.jpg"}\n' % i for i in range(20_000))
    packed = bytearray(gzip.compress(data, compresslevel=0))  # stored blocks: lengths to damage
    packed[len(packed) // 2] ^= 0xFF
    packed[len(packed) // 2 + 1] ^= 0xFF
    path = tmp_path / "bad.manifest.gz"
    path.write_bytes(bytes(packed))
    good, codes, counts = _read_gzip(path)
    assert codes == [errors.READ_FAILED] and counts["incomplete_reads"] == 1
    assert good < 20_000


def test_json_array_elements_past_max_line_bytes_are_too_long(tmp_path):
    path = tmp_path / "export.json"
    path.write_bytes(b'[{"data": {"image": "a.jpg"}}, {"data": {"image": "' + b"b" * 5000 + b'.jpg"}}, {"data": {}}]')
    shard = Shard(str(path), 0, 0, -1, JSON_ARRAY, "label_studio")
    batches = list(ShardReader(shard, 1000, 1000).read(Storage()))
    assert [code for b in batches for _, code, _ in b.failures] == [errors.LINE_TOO_LONG]
    assert sum(len(b.raws) for b in batches) == 3


@pytest.mark.parametrize("chunk", [97, 1000, 1 << 22])
def test_bulk_line_reading_equals_the_line_by_line_loop(tmp_path, monkeypatch, chunk):
    """Complete lines of a read buffer are split in one call; what the shards hold (offsets,
    bytes, blank counts, line counts) is what the line loop alone gives, at any cut."""
    import random

    from transforms import shard_reader as reader

    rng = random.Random(chunk)
    lines = []
    for i in range(3000):
        kind = rng.random()
        lines.append(b"" if kind < 0.05 else b"  " if kind < 0.08 else b'{"a": %d}\r' % i if kind < 0.12
                     else b'{"source-ref": "s3://b/%d.jpg", "x": "%s"}' % (i, b"y" * rng.randrange(0, 300)))
    data = b"\n".join(lines) + b"\n" * rng.randrange(2)
    path = tmp_path / "m.manifest"
    path.write_bytes(data)
    cuts = [0, *sorted(rng.sample(range(1, len(data)), 7)), -1]
    monkeypatch.setattr(reader, "_CHUNK", chunk)

    def read_all():
        seen = []
        for k in range(len(cuts) - 1):
            shard = Shard(uri=str(path), index=k, start=cuts[k], end=cuts[k + 1], layout=JSONL, format=None)
            shard_reader = reader.ShardReader(shard, 700, 1 << 20)
            with open(path, "rb") as handle:
                batches = [*shard_reader.read_lines(handle), *shard_reader.flush()]
            seen.append(([(o, r) for b in batches for o, r in zip(b.offsets, b.raws)], sum(b.blank for b in batches), shard_reader.line_count))
        return seen

    bulk = read_all()
    monkeypatch.setattr(reader.ShardReader, "_read_complete_lines", lambda self, buffer, position, end: (yield from ()) or (0, position))
    assert bulk == read_all()
    assert sum(count for _, _, count in bulk) == len(data.split(b"\n")) - (1 if data.endswith(b"\n") else 0)


def test_the_read_dofn_emits_the_readers_batches_then_its_counts_on_the_ledger(tmp_path):
    from apache_beam.pvalue import TaggedOutput

    from transforms.stages.accounting import LEDGER

    path = tmp_path / "m.manifest"
    path.write_bytes(b'{"source-ref": "a.jpg"}\n\n{"source-ref": "b.jpg"}\n')
    shard = Shard(str(path), 0, 0, -1, JSONL, "sagemaker", counted_lines=4)
    *batches, ledger = list(_ReadShardFn(Storage(), 1000, 1 << 20).process(shard))
    assert [b.raws for b in batches] == [[b'{"source-ref": "a.jpg"}', b'{"source-ref": "b.jpg"}']] and batches[0].blank == 1
    assert isinstance(ledger, TaggedOutput) and ledger.tag == LEDGER
    assert ledger.value == (str(path), {"lines": 3, "expected_lines": 4, "incomplete_reads": 0})
