"""The core stages, one module at a time, without a pipeline: a failure points at its module."""

from __future__ import annotations

import functools
import random

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.synthetic import lookout_line
from transforms import errors, ledger, output_files, partitions, schema, writing
from transforms.formats.base import get_format
from transforms.normalizer import RecordNormalizer
from transforms.partitions import NULL_FOLDER, RECORDS_DEFAULT
from transforms.schema import RawBatch
from transforms.split_assigner import SplitAssigner
from transforms.split_rules import parse_ratios, split_key, split_keys
from transforms.stages import accounting

URI = "file:///data/a.manifest"


def _raw_batch(raws: list[bytes], failures=(), blank=0, fmt="sagemaker") -> RawBatch:
    offsets, at = [], 0
    for raw in raws:
        offsets.append(at)
        at += len(raw) + 1
    return RawBatch(URI, fmt, 0, list(range(1, len(raws) + 1)), offsets, raws, list(failures), blank)


def _good(i: int) -> bytes:
    return orjson.dumps(lookout_line(i, random.Random(i)))


# -- normalize ------------------------------------------------------------------------------

def test_normalize_accounts_for_every_raw_record():
    raws = [_good(1), b'{"source-ref": ', b"[1, 2]", _good(4), b"x" * 10, _good(6)]
    failures = [(4, errors.LINE_TOO_LONG, "too long")]
    built, dead, counts = RecordNormalizer().normalize(_raw_batch(raws, failures, blank=2))
    assert built.num_rows == counts["records"] == 3 == counts["ok"]
    assert counts["dead_letters"] == len(dead) == 3 and counts["blank"] == 2
    assert counts["dead_letter_codes"] == {
        errors.NORMALIZE: {errors.INVALID_JSON: 1, errors.NOT_AN_OBJECT: 1},
        errors.READ: {errors.LINE_TOO_LONG: 1},
    }
    assert sorted(letter["line"] for letter in dead) == [2, 3, 5]
    assert [letter["raw"] for letter in dead if letter["line"] == 2] == ['{"source-ref": ']
    sources = built.column("source").to_pylist()
    assert [s["line"] for s in sources] == [1, 4, 6] and {s["uri"] for s in sources} == {URI}
    assert built.column("record_id").to_pylist() == [schema.record_id(URI, s["offset"], 0) for s in sources]


def test_normalize_without_a_format_is_unknown_format_for_every_line():
    built, dead, counts = RecordNormalizer().normalize(_raw_batch([_good(1), _good(2)], fmt=None))
    assert built.num_rows == 0 and {d["code"] for d in dead} == {errors.UNKNOWN_FORMAT}
    assert counts["ok"] == 0 and counts["dead_letters"] == 2


def test_a_plugin_bug_or_type_slip_refuses_its_line_only(monkeypatch):
    fmt = get_format("sagemaker")
    original = fmt.parse

    def parse(obj, ctx):
        parsed = original(obj, ctx)
        if "broken-1" in obj.get("source-ref", ""):
            raise KeyError("a bug")
        if "slip-2" in obj.get("source-ref", ""):
            parsed.rows[0]["image"]["width"] = "wide"  # not an int: Arrow refuses the row
        return parsed

    monkeypatch.setattr(fmt, "parse", parse)
    raws = [_good(1), _good(2).replace(b"normal-2", b"slip-2").replace(b"anomaly-2", b"slip-2"), _good(3)]
    raws[0] = raws[0].replace(b"normal-1", b"broken-1").replace(b"anomaly-1", b"broken-1")
    built, dead, counts = RecordNormalizer(fast=False).normalize(_raw_batch(raws))  # the plugin path
    assert built.num_rows == 1 and counts["ok"] == 1
    assert sorted((d["line"], d["code"]) for d in dead) == [(1, errors.INTERNAL_ERROR), (2, errors.INVALID_FIELD_TYPE)]


# -- split ----------------------------------------------------------------------------------

def test_split_is_stable_by_image_and_follows_the_ratios():
    assigner = SplitAssigner(parse_ratios("train=0.8,validation=0.1,test=0.1"))
    keys = [f"s3://b/img-{i}.jpg" for i in range(50_000)]
    names = [assigner.assign(k) for k in keys]
    assert names == [assigner.assign(k) for k in keys]
    for name, share in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        assert abs(names.count(name) / len(names) - share) < 0.01
    salted = SplitAssigner(parse_ratios("train=0.8,validation=0.1,test=0.1"), salt="other")
    assert sum(a != salted.assign(k) for a, k in zip(names, keys)) > 5_000


_SPELLINGS = [
    "s3://bucket/imgs/x.jpg", "s3://bucket/imgs/./x.jpg", "s3://bucket/imgs/../x.jpg", "s3://bucket/imgs//x.jpg",
    "s3://bucket/imgs/x.jpg/", "S3://bucket/imgs/x.jpg", "s3://Bucket/imgs/x.jpg", "s3://user:pw@bucket/x.jpg",
    "s3://bucket:9000/x.jpg", "s3://bucket/imgs/x%2Ejpg", "s3://bucket/x.jpg?versionId=3", "s3://bucket/x.jpg#frag",
    " s3://bucket/x.jpg", "s3://bucket/x.jpg\u00a0", "s3://bucket/x .jpg", "s3://bucket/\u00e9t\u00e9.jpg",
    "s3://bucket/a\tb.jpg", "s3://bucket", "s3://bucket/", "gs://b/x.jpg", "az://container/dir/x.png",
    "memory://m/x.png", "file:///data/a/b.jpg", "https://bucket.s3.us-east-1.amazonaws.com/imgs/x.jpg?X-Amz-Signature=a",
    "https://s3.eu-west-1.amazonaws.com/bucket/imgs/x.jpg", "http://example.com/a/./b.jpg", "/data/a/b.jpg",
    "/data/a//b.jpg", "//data/a/b.jpg", "/data/a/./b.jpg", "/data/a/b.jpg/", "/data/local-files/?d=data/a/b.jpg",
    "/data/local-files/x.jpg", "relative/x.jpg", "./x.jpg", "x.jpg", "/a/.hidden/x.jpg", "/a/..b/x.jpg", "/a/b..",
    "/a/%41.jpg", "", "  ", None, "s3://bucket/imgs/x.jpg\n", "s3://bucket/imgs/x.jpg\x0b",
]


def test_split_keys_of_a_column_equal_split_key_of_each_uri():
    expected = [split_key(u) if u else None for u in _SPELLINGS]
    assert split_keys(pa.array(_SPELLINGS, pa.string())) == expected
    plain = [f"s3://bucket/imgs/img-{i}.jpg" for i in range(100)]
    assert split_keys(pa.chunked_array([plain[:50], plain[50:]])) == plain


def test_split_of_a_batch_equals_split_of_each_key():
    assigner = SplitAssigner(parse_ratios("train=0.7,validation=0.2,test=0.1"), salt="s")
    keys = [f"s3://b/img-{i}.jpg" for i in range(20_000)] + [u for u in _SPELLINGS if u]
    assert assigner.assign_keys(keys).to_pylist() == [assigner.assign(k) for k in keys]


@pytest.mark.parametrize("text", ["train=0", "train=-1,test=2", "train=nan", "a/b=1", ""])
def test_bad_split_ratios_are_refused(text):
    with pytest.raises(ValueError):
        parse_ratios(text)


def test_split_batch_keeps_rows_of_one_image_together():
    built, _, _ = RecordNormalizer().normalize(_raw_batch([_good(i) for i in range(1, 40)] * 2))
    assigned = SplitAssigner({"train": 0.5, "test": 0.5}).assign_batch(built)
    by_image: dict[str, set] = {}
    for image, split in zip(assigned.column("image").to_pylist(), assigned.column("split").to_pylist()):
        by_image.setdefault(image["uri"], set()).add(split)
    assert len(by_image) == 39 and all(len(s) == 1 for s in by_image.values())


# -- write ----------------------------------------------------------------------------------

def _records(n: int) -> pa.RecordBatch:
    built, _, _ = RecordNormalizer().normalize(_raw_batch([_good(i) for i in range(1, n + 1)]))
    return SplitAssigner({"train": 0.5, "test": 0.5}).assign_batch(built)


def test_a_records_plan_written_by_two_bundles_and_finalized_lands_every_row(tmp_path):
    """transforms/writing.BundleWriter and transforms/finalize.finalize alone, no pipeline: each
    bundle writes a temporary file per partition, finalize names them part-NNNNN-of-MMMMM per
    partition, counts what the files hold and leaves no temporary behind."""
    import pyarrow.dataset as ds

    from transforms import storage
    from transforms.finalize import finalize

    plan = writing.records_plan(str(tmp_path / "records"), storage.Storage(), collect_classes=True)
    batch = _records(60)
    written, given = [], 0
    for piece in (batch.slice(0, 25), batch.slice(25)):
        bundle = writing.BundleWriter(plan)
        assert list(bundle.write(piece)) == []
        written += bundle.close()
        given += dict(bundle.ledger.drain())[ledger.OUTPUTS]["records"]["in"]
    assert given == 60 and {w[0].split("/")[0] for w in written} == {"split=train", "split=test"}
    counts, published = finalize(plan, written)
    landed = dict(counts.drain())[ledger.OUTPUTS]["records"]
    assert landed["landed"] == 60 == sum(entry["rows"] for entry in landed["published"].values())
    assert all("/part-0000" in name and "-of-0000" in name for name in landed["published"])
    assert published["classes"] == sorted(output_files.class_names(batch)) and len(published["files"]) == landed["files"]
    assert not (tmp_path / "records" / writing.TMP_DIR).exists()
    assert ds.dataset(tmp_path / "records", format="parquet", partitioning="hive").count_rows() == 60


def test_partition_batch_gives_every_row_to_exactly_one_partition():
    batch = _records(200)
    parts = dict(partitions.partition_batch(batch, ("split", "task")))
    assert sum(p.num_rows for p in parts.values()) == 200
    assert {p.split("/")[0] for p in parts} == {"split=train", "split=test"}
    for path, part in parts.items():
        split, task = (piece.split("=", 1)[1] for piece in path.split("/"))
        assert set(part.column("split").to_pylist()) == {split} and set(part.column("task").to_pylist()) == {task}


def test_count_elements_reads_the_files(tmp_path):
    batch = _records(30)
    parquet = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_batches([batch]), parquet)
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_bytes(b"{}\n{}\n{}\n")
    array = tmp_path / "a.json"
    array.write_bytes(b"[\n{},\n{}\n]\n")
    empty_array = tmp_path / "b.json"
    empty_array.write_bytes(b"[]\n")
    import fsspec

    fs = fsspec.filesystem("file")
    assert output_files.count_elements(fs, str(parquet), ".parquet", "jsonl") == 30
    assert output_files.count_elements(fs, str(jsonl), ".jsonl", "jsonl") == 3
    assert output_files.count_elements(fs, str(array), ".json", "json_array") == 2
    assert output_files.count_elements(fs, str(empty_array), ".json", "json_array") == 0


def test_a_manifest_writer_failing_on_one_row_refuses_that_row_only(tmp_path, monkeypatch):
    fmt = get_format("sagemaker")
    original = fmt.write
    batch = _records(10)
    bad_id = batch.column("record_id")[3].as_py()

    def write(rows, ctx):
        if any(r["record_id"] == bad_id for r in rows):
            if len(rows) > 1:
                raise OverflowError("a writer bug")
            raise OverflowError("this row")
        return original(rows, ctx)

    monkeypatch.setattr(fmt, "write", write)
    path = tmp_path / "out.manifest"
    with open(path, "wb") as handle:
        writer = output_files._ManifestFile(handle, "sagemaker", fmt.default_options())
        letters = writer.write(batch)
        writer.close()
    assert [(d["code"], d["stage"]) for d in letters] == [(errors.INTERNAL_ERROR, errors.WRITE)]
    assert writer.count == 9 == len(path.read_bytes().splitlines())


# -- accounting -----------------------------------------------------------------------------

def test_merge_into_adds_numbers_and_merges_maps():
    target = {"a": 1, "m": {"x": 1}, "name": None}
    ledger.merge_into(target, {"a": 2, "m": {"x": 1, "y": 3}, "name": "f", "new": 4})
    assert target == {"a": 3, "m": {"x": 2, "y": 3}, "name": "f", "new": 4}


def test_stage_flow_finds_where_rows_went_missing():
    stages = {
        "validate": {"in": 10, "out": 9, "refused": {"X": 1}},
        "check_files": {"in": 9, "out": 9},
        "split": {"in": 8, "out": 8},
    }
    flow, broken = ledger.stage_flow(stages, 10, ["validate", "check_files", "split"])
    assert broken == ["split: 8 rows in, 9 given by the stage before"]
    assert flow["validate"]["refused"] == {"X": 1}
    _, ok = ledger.stage_flow({**stages, "split": {"in": 9, "out": 8}}, 10, ["validate", "check_files", "split"])
    assert ok == ["split: 9 rows in, 8 out + 0 refused"]


def test_the_ledger_counts_rows_warnings_and_storage_reasons_and_drains_once():
    """transforms/ledger.Ledger alone, no pipeline: rows per file, warnings per code, and each
    FILE_UNREADABLE under the storage reason its message names."""
    rows = _records(3).to_pylist()
    messages = ["s3://b/x.png: unreachable: timed out", "access_denied: no", "something else"]
    for row, message in zip(rows, messages):
        row["issues"] = [{"code": errors.FILE_UNREADABLE, "severity": "warning", "message": message}]
    batch = schema.rows_to_batch(rows)
    counts = ledger.Ledger()
    counts.rows_in("split", batch)
    counts.rows_out("split", batch.slice(0, 2))
    counts.warnings(batch)
    counts.output("records", {"in": 3})
    pairs = dict(counts.drain())
    assert pairs[URI]["stages"] == {"split": {"in": 3, "out": 2}}
    assert pairs[URI]["warnings"] == {errors.FILE_UNREADABLE: 3}
    reasons = pairs[URI]["warning_reasons"][errors.FILE_UNREADABLE]
    assert reasons == {"unreachable": 1, "access_denied": 1, "other": 1}
    assert pairs[ledger.OUTPUTS] == {"records": {"in": 3}}
    assert counts.drain() == []


class _DropOddRows(beam.DoFn):
    def process(self, batch):
        keep = [i for i in range(batch.num_rows) if i % 2 == 0]
        for i in range(batch.num_rows):
            if i % 2:
                yield beam.pvalue.TaggedOutput(errors.DEAD_LETTERS, errors.row_dead_letter(batch.slice(i, 1).to_pylist()[0], errors.VALIDATE, errors.INTERNAL_ERROR, "odd"))
        yield batch.take(pa.array(keep))


def test_an_accounted_stage_counts_in_out_and_refused_per_file():
    fn = accounting._AccountedFn("validate", _DropOddRows())
    fn.setup()
    fn.start_bundle()
    outputs = list(fn.process(_records(7))) + list(fn.finish_bundle())
    ledgers = [o.value.value for o in outputs if getattr(o, "tag", None) == accounting.LEDGER]
    assert len(ledgers) == 1
    uri, counts = ledgers[0]
    assert uri == URI
    assert counts["stages"]["validate"] == {"in": 7, "out": 4, "refused": {errors.INTERNAL_ERROR: 3}}
    entry = ledger.file_entries({URI: {"lines": 7, "ok": 7, "records": 7, **counts}}, ["validate"])[0]
    assert entry["reconciled"] and entry["records_kept"] == 4 and entry["records_refused"] == 3


def test_batch_rows_equal_arrow_to_pylist():
    from transforms.schema import batch_rows

    built, _, _ = RecordNormalizer().normalize(_raw_batch([_good(i) for i in range(1, 60)]))
    assigned = SplitAssigner({"train": 0.5, "test": 0.5}).assign_batch(built)
    for batch in (built, assigned, assigned.slice(3, 7), assigned.slice(0, 0)):
        assert batch_rows(batch) == batch.to_pylist()


def test_batch_rows_equal_arrow_to_pylist_on_every_sample():
    from tests.test_fast_normalize import ROOT, SAMPLES, _batches, _lines

    SAMPLES_ROOT = ROOT / "samples"
    from transforms.schema import batch_rows

    normalizer = RecordNormalizer()
    for path in SAMPLES:
        fmt = {"sagemaker": "sagemaker", "azure_automl": "azure_automl", "label_studio": "label_studio"}[path.relative_to(SAMPLES_ROOT).parts[0]]
        for batch in _batches(str(path), fmt, _lines(path)):
            built, _, _ = normalizer.normalize(batch)
            assert batch_rows(built) == built.to_pylist()


@pytest.mark.parametrize(
    "columns", [RECORDS_DEFAULT, ("split", "label_job", "origin"), ("label_job", "source_format"), ()], ids=["default", "split_job_origin", "nested_only", "none"]
)
def test_records_files_read_back_into_the_rows_written_with_their_class_names(tmp_path, columns):
    """What the class-numbering writers get from records/ equals what was written, the columns
    its folders hold included (hostile values decoded back, nested ones read from the files),
    and the file's summary names every class in it."""
    from transforms import storage

    rows = _records(40).to_pylist()
    hostile = ["../x", "a/b", "%", "%2F", "café ☃", "", None, "__x__=y"]
    for i, row in enumerate(rows):
        row["annotation"] = {**(row["annotation"] or {}), "job_name": hostile[i % len(hostile)]}
    rows[0]["split"], rows[1]["split"], rows[2]["origin"] = "a/b%", None, None
    batch = schema.rows_to_batch(rows)
    store = storage.Storage({})
    read = functools.partial(writing.read_records_file, store, batch_rows=7, columns=columns)
    back = []
    for n, (partition, piece) in enumerate(partitions.partition_batch(batch, columns)):
        path = tmp_path / f"part-{n}.parquet"
        with open(path, "wb") as handle:
            written = output_files._ParquetFile(handle, columns, collect_classes=True)
            written.write(piece)
            written.close()
        assert written.summary[output_files.CLASSES] == output_files.class_names(piece)
        assert set(pq.read_schema(path).names) == set(schema.SCHEMA.names) - {c for c in columns if c in schema.SCHEMA.names}
        back += [b for b in read((partition, str(path)))]
    assert all(b.schema.equals(schema.SCHEMA) and b.num_rows <= 7 for b in back)
    key = lambda row: row["record_id"]  # noqa: E731
    assert sorted(pa.Table.from_batches(back).to_pylist(), key=key) == sorted(batch.to_pylist(), key=key)
    assert partitions.partition_values(f"split=train/task={NULL_FOLDER}") == {"split": "train", "task": None}
    with pytest.raises(ValueError, match="not partitioned by"):
        list(read(("other=x", str(tmp_path / "part-0.parquet"))))


def test_a_pending_small_partition_does_not_keep_its_parent_batches_alive(tmp_path):
    """Row groups wait for many batches; a small partition's slices are copied, so what the file
    holds pending is its own rows, not every sorted batch they were cut from."""
    batch = _records(4096)
    with open(tmp_path / "part.parquet", "wb") as handle:
        written = output_files._ParquetFile(handle, RECORDS_DEFAULT)
        for start in range(0, 4096 * 20, 4096):
            written.write(batch.slice(start % 4096 + 10, 40))  # 40 rows of each 4,096-row batch
        held = sum(b.get_total_buffer_size() for b in written.pending)
        assert written.pending_rows == 800
        assert held < batch.get_total_buffer_size()  # 20 whole parents would be 20x
        big = batch.slice(0, 3000)
        assert output_files._compact(big) is big  # a large slice fills a row group soon: kept as is
        written.close()
    assert pq.read_metadata(tmp_path / "part.parquet").num_rows == 800
