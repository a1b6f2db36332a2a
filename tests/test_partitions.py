"""Partition folders: values from the input become folder names that stay inside the output and
read back, through pyarrow.dataset and DuckDB, as the values they were."""

from __future__ import annotations

import os

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from transforms import partitions
from transforms.formats.base import get_format
from transforms.partitions import (
    MAX_SEGMENT_BYTES,
    NULL_FOLDER,
    folder_path,
    folder_value,
    parse_partition_by,
    partition_batch,
    partition_values,
    value_of_folder,
)
from transforms.schema import rows_to_batch

HOSTILE = ["../x", "..", ".", "a/b", "a\\b", "x=y", "%2F", "line\nbreak", "café", " lead", "label_job=z", "~tilde", "*?<>|:\""]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_value_is_one_safe_path_segment(value):
    segment = f"label_job={folder_value(value)}"
    assert "/" not in segment and "\\" not in segment and "\n" not in segment
    assert segment not in (".", "..") and segment.count("=") == 1
    assert os.path.normpath(os.path.join("root", segment)) == os.path.join("root", segment)


def test_null_and_empty_are_hives_null_folder_and_long_values_stay_distinct():
    assert folder_value(None) == folder_value("") == NULL_FOLDER == "__HIVE_DEFAULT_PARTITION__"
    first, second = "j" * 400 + "a", "j" * 400 + "b"
    assert len(folder_value(first).encode()) <= MAX_SEGMENT_BYTES
    assert folder_value(first) != folder_value(second)
    wide = "é" * 300  # every character a 6-byte escape: the cut never splits one
    cut = folder_value(wide).split("~")[0]
    assert len(cut) % 6 == 0 and cut.startswith("%C3%A9")


def test_folders_read_back_as_the_values_with_pyarrow_and_duckdb(tmp_path):
    values = [*HOSTILE, None]
    for i, value in enumerate(values):
        folder = tmp_path / "records" / folder_path(("split", "label_job"), ("train", value))
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"i": [i]}), folder / "part-00000-of-00001.parquet")
    assert all(path.resolve().is_relative_to(tmp_path / "records") for path in tmp_path.rglob("*"))
    table = ds.dataset(tmp_path / "records", format="parquet", partitioning="hive").to_table()
    by_arrow = dict(zip(table.column("i").to_pylist(), table.column("label_job").to_pylist()))
    rows = duckdb.sql(f"select i, label_job from read_parquet('{tmp_path}/records/**/*.parquet', hive_partitioning=true)").fetchall()
    assert by_arrow == dict(rows) == dict(enumerate(values))


@pytest.mark.parametrize("value", [*HOSTILE, "%", "%%41", "100%", "ünïcödé ☃ 𝔘", "a b+c", "x~0123456789abcdef", "", None])
def test_value_of_folder_is_the_inverse_of_folder_value(value):
    """What the records/ read-back decodes is the value written (empty is null, as in Hive)."""
    assert value_of_folder(folder_value(value)) == (value or None)
    path = folder_path(("split", "label_job"), ("train", value))
    assert partition_values(path) == {"split": "train", "label_job": value or None}


def test_partition_values_reads_folder_paths_as_pyarrow_does(tmp_path):
    values = [*HOSTILE, "%", "ünïcödé ☃", None]
    for i, value in enumerate(values):
        folder = tmp_path / folder_path(("label_job", "split"), (value, "train"))
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"i": [i]}), folder / "part-00000-of-00001.parquet")
    table = ds.dataset(tmp_path, format="parquet", partitioning="hive").to_table()
    by_arrow = dict(zip(table.column("i").to_pylist(), table.column("label_job").to_pylist()))
    by_folders = {}
    for path in tmp_path.rglob("*.parquet"):
        (i,) = pq.read_table(path).column("i").to_pylist()
        by_folders[i] = partition_values(path.parent.relative_to(tmp_path).as_posix())["label_job"]
    assert by_folders == by_arrow == dict(enumerate(values))
    assert partition_values("") == {}
    long = "j" * 400
    assert value_of_folder(folder_value(long)).startswith("j" * 100)  # a cut value comes back as its cut
    with pytest.raises(ValueError):
        partition_values("split=train/part-00000-of-00001.parquet")


def test_a_value_too_long_for_a_folder_reads_back_as_its_start_and_a_hash(tmp_path):
    long = "Überlange Jobbezeichnung/" * 20
    folder = tmp_path / "records" / folder_path(("label_job",), (long,))
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"i": [1]}), folder / "part-00000-of-00001.parquet")
    (arrow,) = ds.dataset(tmp_path / "records", format="parquet", partitioning="hive").to_table().column("label_job").to_pylist()
    ((duck,),) = duckdb.sql(f"select label_job from read_parquet('{tmp_path}/records/**/*.parquet', hive_partitioning=true)").fetchall()
    start, _, digest = arrow.rpartition("~")
    assert arrow == duck and long.startswith(start) and len(start) > 20 and len(digest) == 16


def _rows(jobs: list) -> pa.RecordBatch:
    return rows_to_batch(
        {"record_id": str(i), "image": {"uri": f"s3://b/{i}.jpg"}, "task": "classification", "split": "train",
         "source": {"format": "sagemaker"}, "annotation": {"job_name": job}}
        for i, job in enumerate(jobs)
    )


def test_partition_batch_by_nested_columns_puts_empty_with_null():
    parts = dict(partition_batch(_rows(["a", "", None, "a", "../x"]), ("source_format", "label_job")))
    assert {path: part.num_rows for path, part in parts.items()} == {
        "source_format=sagemaker/label_job=a": 2,
        f"source_format=sagemaker/label_job={NULL_FOLDER}": 2,
        "source_format=sagemaker/label_job=..%2Fx": 1,
    }
    assert dict(partition_batch(_rows(["a", "b"]), ())).keys() == {""}


def test_partition_by_parses_names_and_none():
    assert parse_partition_by("split, label_job") == ["split", "label_job"]
    assert parse_partition_by(["split", "task,origin"]) == ["split", "task", "origin"]
    assert parse_partition_by("none") == [] and parse_partition_by([]) == []
    with pytest.raises(ValueError):
        parse_partition_by("split,none")
    assert partitions.stored_in_folders(("split", "label_job", "origin")) == ("split", "origin")


def test_manifest_folders_keep_what_a_format_cannot_mix():
    assert get_format("sagemaker").manifest_partitions(None) == ("split",)
    assert get_format("azure_automl").manifest_partitions(None) == ("split", "task")
    assert get_format("coco").manifest_partitions(None) == ("split", "origin")
    assert get_format("sagemaker").manifest_partitions(("label_job",)) == ("label_job",)
    assert get_format("azure_automl").manifest_partitions(("split", "label_job")) == ("split", "label_job", "task")
    assert get_format("coco").manifest_partitions(()) == ("origin",)
    assert get_format("coco").manifest_partitions(("origin", "split")) == ("origin", "split")


def test_partition_batch_keeps_input_order_inside_each_partition():
    jobs = [["a", "b", None, ""][i % 4] if i % 7 else "c" for i in range(300)]
    batch = _rows(jobs)
    seen = []
    for path, part in partition_batch(batch, ("label_job", "source_format")):
        ids = [int(i) for i in part.column("record_id").to_pylist()]
        assert ids == sorted(ids)  # input order kept
        assert {folder_path(("label_job",), (jobs[i] or None,)).split("/")[0] for i in ids} == {path.split("/")[0]}
        seen += ids
    assert sorted(seen) == list(range(300))
