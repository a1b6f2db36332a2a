"""--partition_by: the chosen folders, in order, under records/ and manifests/; values from the
input (label job names) stay inside the output; pyarrow.dataset and DuckDB read back every row
run.json says landed, with the values the input had."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import orjson
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipelines.normalize_manifests import run
from transforms import partitions

pytestmark = pytest.mark.e2e  # runs the whole job: deselect with -m "not e2e" for the fast subset

LONG_JOB = "labeling-job/" + "very-long-name-" * 30
JOBS = ["../escape", "../../../../outside", "a/b", "..", "x=y", "café", "100%", "", None, LONG_JOB]
PER_JOB = 4


def _manifest(tmp_path: Path) -> Path:
    lines = []
    for j, job in enumerate(JOBS):
        for i in range(PER_JOB):
            metadata = {"class-name": "cat", "type": "groundtruth/image-classification"}
            if job is not None:
                metadata["job-name"] = job
            lines.append({"source-ref": f"s3://bucket/job{j}/img-{i}.jpg", "label": 0, "label-metadata": metadata})
    path = tmp_path / "gt.manifest"
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    return path


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted(p for p in root.rglob(pattern) if ".labelbeam" not in p.parts)


def _count_lines(files: list[Path]) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in files)


def test_partition_by_writes_the_chosen_folders_and_reads_back_everywhere(tmp_path):
    manifest = _manifest(tmp_path)
    out = tmp_path / "out"
    argv = ["--input", str(manifest), "--output", str(out), "--runner=FnApiRunner", "--quiet",
            "--partition_by", "split,source_format,label_job", "--output_format", "sagemaker", "--output_format", "azure_automl"]
    assert run(argv) == 0
    # nothing left the output: every file resolves inside it, and beside it only the input
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt.manifest", "out"]
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))
    summary = json.loads((out / "run.json").read_text())
    landed = summary["outputs"]["records"]["landed"]
    assert landed == len(JOBS) * PER_JOB

    parquet = _files(out / "records", "*.parquet")
    assert {tuple(part.split("=")[0] for part in p.relative_to(out / "records").parts[:-1]) for p in parquet} == {
        ("split", "source_format", "label_job")
    }
    names = pq.read_schema(parquet[0]).names
    assert "split" not in names and "task" in names  # a folder holds split; task stays in the file

    table = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table()
    rows = duckdb.sql(f"select label_job, source_format, split from read_parquet('{out}/records/**/*.parquet', hive_partitioning=true)").fetchall()
    assert table.num_rows == len(rows) == landed
    arrow_jobs = table.column("label_job").to_pylist()
    assert sorted(map(str, arrow_jobs)) == sorted(str(r[0]) for r in rows)
    expected = {job or None for job in JOBS if job != LONG_JOB}
    assert {job for job in arrow_jobs if job is None or not job.startswith("labeling-job/")} == expected
    (long,) = {job for job in arrow_jobs if job and job.startswith("labeling-job/")}
    assert LONG_JOB.startswith(long.rpartition("~")[0])
    assert arrow_jobs.count(None) == 2 * PER_JOB  # the empty and the missing job name
    assert set(table.column("source_format").to_pylist()) == {"sagemaker"}
    assert set(table.column("split").to_pylist()) == {r[2] for r in rows} <= {"train", "validation", "test"}

    for name, folders in (("sagemaker", ("split", "source_format", "label_job")), ("azure_automl", ("split", "source_format", "label_job", "task"))):
        files = _files(out / "manifests" / name, "part-*")
        assert {tuple(part.split("=")[0] for part in p.relative_to(out / "manifests" / name).parts[:-1]) for p in files} == {folders}
        assert _count_lines(files) == summary["outputs"][f"manifests/{name}"]["landed"] == landed


def test_manifest_partition_by_and_no_folders(tmp_path):
    manifest = _manifest(tmp_path)
    out = tmp_path / "out"
    argv = ["--input", str(manifest), "--output", str(out), "--runner=FnApiRunner", "--quiet",
            "--partition_by", "none", "--manifest_partition_by", "label_job", "--output_format", "sagemaker"]
    assert run(argv) == 0
    landed = json.loads((out / "run.json").read_text())["outputs"]["records"]["landed"]
    assert [p.parent for p in _files(out / "records", "*.parquet")] == [out / "records"]
    assert ds.dataset(out / "records", format="parquet").to_table().num_rows == landed == len(JOBS) * PER_JOB
    folders = {p.parent.name for p in _files(out / "manifests" / "sagemaker", "part-*")}
    assert len(folders) == len(JOBS) - 1 and all(f.startswith("label_job=") for f in folders)  # '' and null share one
    assert "label_job=..%2Fescape" in folders and "label_job=__HIVE_DEFAULT_PARTITION__" in folders


def _duplicated_inputs(tmp_path: Path) -> tuple[list[str], dict[str, tuple[str | None, str]]]:
    """A Ground Truth manifest (hostile job names, ids that follow the sorted class names) and a
    Label Studio export of some of the same images and some others. -> the inputs, and the
    record --on_duplicate first keeps for each image: (job name, class name)."""
    jobs = ["../x", "a/b", "%", "100%25", "ünï ☃", "", None]
    classes = {"cat": 1, "dog": 2}  # the output's classes, sorted: ant, cat, dog, eel
    manifest, tasks, kept = [], [], {}
    for j, job in enumerate(jobs):
        for i in range(3):
            uri, name = f"s3://bucket/gt/job{j}/img-{i}.jpg", ("cat", "dog")[i % 2]
            metadata = {"class-name": name, "type": "groundtruth/image-classification"}
            if job is not None:
                metadata["job-name"] = job
            manifest.append({"source-ref": uri, "label": classes[name], "label-metadata": metadata})
            kept[uri] = (job, name)
    for j in (0, 1):  # the same image again, later in the file and under another job: superseded
        manifest.append({"source-ref": f"s3://bucket/gt/job{j}/img-0.jpg", "label": 1,
                         "label-metadata": {"class-name": "cat", "type": "groundtruth/image-classification", "job-name": "later"}})
    for n, uri in enumerate([f"s3://bucket/gt/job{j}/img-0.jpg" for j in range(4)] + [f"s3://bucket/ls/img-{i}.jpg" for i in range(5)]):
        name = kept[uri][1] if uri in kept else ("ant", "eel")[n % 2]
        tasks.append({"id": n + 1, "data": {"image": uri}, "annotations": [{"id": 100 + n, "result": [
            {"id": "c", "type": "choices", "from_name": "choice", "to_name": "image", "value": {"choices": [name]}}]}]})
        kept.setdefault(uri, (None, name))
    (tmp_path / "a-gt.manifest").write_bytes(b"\n".join(orjson.dumps(line) for line in manifest) + b"\n")
    (tmp_path / "b-export.json").write_bytes(orjson.dumps(tasks))
    return [str(tmp_path / "a-gt.manifest"), str(tmp_path / "b-export.json")], kept


def test_partitioned_sagemaker_without_a_class_list_after_a_duplicate_policy(tmp_path):
    """--partition_by split,label_job with hostile job names, sagemaker numbering classes from
    records/ read back, and --on_duplicate first: every kept record is one sagemaker line, with
    the id of its class in the output's sorted class names, its own job name, in the folders
    of its split and job; run.json reconciles and its landed counts are the files'."""
    inputs, kept = _duplicated_inputs(tmp_path)
    out = tmp_path / "out"
    argv = ["--input", *inputs, "--output", str(out), "--runner=FnApiRunner", "--quiet",
            "--partition_by", "split,label_job", "--output_format", "sagemaker", "--on_duplicate", "first"]
    assert run(argv) == 0
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))
    summary = json.loads((out / "run.json").read_text())
    totals, outputs = summary["totals"], summary["outputs"]
    assert totals["reconciled"] and not summary["data_loss"], summary["data_loss"]
    assert totals["lines"] == totals["ok"] + totals["dead_letters"] + totals["blank"] == len(kept) + 6
    assert totals["records_superseded"] == 6 and totals["records_refused"] == 0
    assert totals["records_kept"] == len(kept)

    records = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()
    assert outputs["records"]["landed"] == len(records) == len(kept)
    folders = {r["image"]["uri"]: (r["split"], r["label_job"]) for r in records}
    assert {r["image"]["uri"]: r["annotation"]["job_name"] for r in records} == {uri: job for uri, (job, _) in kept.items()}

    files = _files(out / "manifests" / "sagemaker", "part-*")
    lines = [(p, orjson.loads(line)) for p in files for line in p.read_bytes().splitlines()]
    assert outputs["manifests/sagemaker"]["landed"] == len(lines) == len(kept)
    assert outputs["errors"]["landed"] == sum(len(p.read_bytes().splitlines()) for p in (out / "errors").glob("*.jsonl")) == 0
    names = sorted({name for _, name in kept.values()})
    assert names == ["ant", "cat", "dog", "eel"]
    seen = set()
    for path, line in lines:
        uri = line["source-ref"]
        job, name = kept[uri]
        (attribute,) = [key for key in line if not key.endswith("-metadata") and key != "source-ref"]
        metadata = line[f"{attribute}-metadata"]
        assert (metadata["class-name"], line[attribute]) == (name, names.index(name)), line
        assert metadata.get("job-name") == job, line
        values = partitions.partition_values(path.parent.relative_to(out / "manifests" / "sagemaker").as_posix())
        assert values == {"split": folders[uri][0], "label_job": job or None}  # '' shares the null folder
        assert folders[uri][1] == (job or None)  # pyarrow reads the records/ folders the same way
        seen.add(uri)
    assert seen == set(kept)
    assert "label_job=..%2Fx" in {p.parent.name for p in files}
