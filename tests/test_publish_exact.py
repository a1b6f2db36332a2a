"""What is published is exactly what run.json says: the previous output replaced whole, files
labelbeam did not write never touched, and a staged file damaged after its writer counted it
never published (exit 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pipelines.normalize_manifests as job_module
from pipelines.normalize_manifests import run

pytestmark = pytest.mark.e2e  # runs the whole job

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "sagemaker"
RUNNER = "--runner=FnApiRunner"


def _files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and ".labelbeam" not in p.parts}


def _run_json(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def test_overwrite_replaces_every_entry_of_the_previous_output(tmp_path):
    out = tmp_path / "out"
    first = ["--input", str(SAMPLES / "*.manifest"), "--output", str(out), RUNNER, "--validate_masks=false",
             "--output_format", "sagemaker", "--output_format", "label_studio"]
    assert run(first) == 0
    assert {"errors", "manifests"} <= {p.name for p in out.iterdir()}
    before = _files(out)
    assert any(name.startswith("errors/") for name in before)
    second = ["--input", str(SAMPLES / "lookout-for-vision.manifest"), "--output", str(out), RUNNER, "--validate_masks=false", "--overwrite"]
    assert run(second) == 0
    summary = _run_json(out)
    assert summary["totals"]["dead_letters"] == 0
    entries = sorted(p.name for p in out.iterdir())
    assert entries == [".labelbeam", "_SUCCESS", "records", "report.html", "run.json", "stats"]  # no errors/, manifests/, refused/
    # every file there is the second run's: its records files are the ones published.json lists
    published = json.loads((out / ".labelbeam" / "published.json").read_text())
    listed = {f"records/{name}" for name in published["outputs"]["records"]}
    assert {name for name in _files(out) if name.startswith("records/")} == listed
    state = json.loads((out / ".labelbeam" / "published.json").read_text())
    assert state["run_id"] == summary["run_id"] and set(state["files"]) == _files(out) - {"_SUCCESS"}
    assert not (out / ".labelbeam" / "previous").exists() and not (out / ".labelbeam" / "staging").exists()


def test_files_labelbeam_did_not_write_are_never_replaced(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--input", str(SAMPLES / "lookout-for-vision.manifest"), "--output", str(out), RUNNER, "--validate_masks=false"]
    (out / "records").mkdir(parents=True)
    pq.write_table(pa.table({"a": [1, 2, 3]}), out / "records" / "mine.parquet")
    for extra in ([], ["--overwrite"]):  # refused with or without --overwrite, and left as it was
        assert run(args + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "records/mine.parquet" in err[0] and "no labelbeam run wrote" in err[0], err
        assert (out / "records" / "mine.parquet").exists() and not (out / "run.json").exists()
    # next to a published run, too: the run's own files are known, the user's are not
    (out / "records" / "mine.parquet").rename(tmp_path / "mine.parquet")
    (out / "records").rmdir()
    assert run(args) == 0
    first = _run_json(out)["run_id"]
    (tmp_path / "mine.parquet").rename(out / "records" / "mine.parquet")
    assert run(args + ["--overwrite"]) == 2
    assert "records/mine.parquet" in capsys.readouterr().err
    assert _run_json(out)["run_id"] == first and (out / "_SUCCESS").exists() and (out / "records" / "mine.parquet").exists()
    (out / "records" / "mine.parquet").unlink()
    assert run(args + ["--overwrite"]) == 0


@pytest.fixture
def damage_before_report(monkeypatch):
    """Damages one staged file after its writer counted it, just before the final check."""
    original = job_module.report.write_run_report
    damaged: list[Path] = []

    def damage(how: str, pattern: str):
        def write_run_report(job, options, staging, *args, **kwargs):
            target = sorted(Path(staging).glob(pattern))[0]
            data = target.read_bytes()
            if how == "truncate":
                target.write_bytes(data[: len(data) // 2])
            else:  # one byte changed, the size kept
                target.write_bytes(data[:-2] + (b"X" if data[-2:-1] != b"X" else b"Y") + data[-1:])
            damaged.append(target)
            return original(job, options, staging, *args, **kwargs)

        monkeypatch.setattr(job_module.report, "write_run_report", write_run_report)
        return damaged

    return damage


@pytest.mark.parametrize("how, pattern, output", [
    ("truncate", "records/**/*.parquet", "records"),
    ("flip", "manifests/sagemaker/**/*.manifest", "manifests/sagemaker"),
    ("flip", "errors/*.jsonl", "errors"),
])
def test_a_staged_file_damaged_after_it_was_counted_is_never_published(tmp_path, damage_before_report, capsys, how, pattern, output):
    out = tmp_path / "out"
    args = ["--input", str(SAMPLES / "*.manifest"), "--output", str(out), RUNNER, "--validate_masks=false", "--output_format", "sagemaker"]
    assert run(args) == 0
    previous = _run_json(out)["run_id"]
    damaged = damage_before_report(how, pattern)
    assert run(args + ["--overwrite"]) == 3
    assert damaged
    printed = capsys.readouterr().out
    assert f"DATA LOSS in {output}" in printed and "differ from what their writer counted" in printed
    assert _run_json(out)["run_id"] == previous and (out / "_SUCCESS").exists()  # the previous output, untouched
    failed = next((out / ".labelbeam" / "failed").iterdir())
    summary = json.loads((failed / "run.json").read_text())
    assert summary["exit_code"] == 3 and summary["data_loss"][output]["problems"]
    # each file's record: rows, bytes and sha256 as the finalize step read them, every file in
    # the failed run's file_records.json, and in its run.json for outputs of few files
    every_file = json.loads((failed / "file_records.json").read_text())["outputs"]
    assert set(every_file) == set(summary["outputs"])
    for output, files in every_file.items():
        assert summary["outputs"][output]["published"] == files  # few files here: listed in run.json too
        for name, file in files.items():
            assert set(file) == {"rows", "bytes", "sha256"} and len(file["sha256"]) == 64, name
