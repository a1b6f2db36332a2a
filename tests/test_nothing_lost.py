"""Nothing lost, and proven: a run whose outputs hold fewer rows than it produced fails loudly.

Each test here breaks the job on purpose, the way a runner or a writer could break it, and
checks that run.json and the exit code say so, and that nothing is published.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
import pyarrow.dataset as ds
import pytest

import pipelines.normalize_manifests as job_module
from benchmarks.synthetic import write_manifest
from pipelines.normalize_manifests import run
from transforms import output_files
from transforms.stages import write as write_stage
from transforms.stages.check_files import CheckFiles

pytestmark = pytest.mark.e2e  # runs the whole job: deselect with -m "not e2e" for the fast subset

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "sagemaker"
RUNNER = "--runner=FnApiRunner"


def _args(out: Path, *extra: str) -> list[str]:
    return ["--input", str(SAMPLES / "*.manifest"), "--output", str(out), RUNNER, "--validate_masks=false", "--shard_size=1KB", *extra]


def _rows(folder: Path) -> int:
    return ds.dataset(folder, format="parquet", partitioning="hive").count_rows()


@pytest.fixture
def drop_first_records_bundle(monkeypatch):
    """The records writer 'forgets' the files of its first bundle: written, never published."""
    original = write_stage._WriteBundleFilesFn.finish_bundle
    dropped = []

    def finish_bundle(self):
        for output in original(self):
            if self._plan.output == write_stage.RECORDS_OUTPUT and getattr(output, "tag", None) == write_stage.WRITTEN and not dropped:
                dropped.append(output.value.value)
                continue
            yield output

    monkeypatch.setattr(write_stage._WriteBundleFilesFn, "finish_bundle", finish_bundle)
    return dropped


@pytest.fixture
def drop_one_records_batch(monkeypatch):
    """The Parquet writer silently skips one batch it was given."""
    original = output_files._ParquetFile.write
    skipped = []

    def write(self, batch):
        if not skipped:
            skipped.append(batch.num_rows)
            return []
        return original(self, batch)

    monkeypatch.setattr(output_files._ParquetFile, "write", write)
    return skipped


@pytest.mark.parametrize("breakage", ["drop_first_records_bundle", "drop_one_records_batch"])
def test_a_writer_that_drops_rows_makes_the_run_exit_3_and_say_where(tmp_path, capsys, request, breakage):
    dropped = request.getfixturevalue(breakage)
    out = tmp_path / "out"
    assert run(_args(out)) == 3
    assert dropped, "the breakage did not happen: the test proves nothing"
    printed = capsys.readouterr().out
    assert "DATA LOSS in records" in printed and "exit 3" in printed
    assert not (out / "_SUCCESS").exists() and not (out / "records").exists()  # nothing published
    failed = next((out / ".labelbeam" / "failed").iterdir())
    summary = json.loads((failed / "run.json").read_text())
    loss = summary["data_loss"]["records"]
    assert loss["landed"] < loss["given"] == loss["produced"]
    assert summary["outputs"]["records"]["landed"] == _rows(failed / "records")
    assert summary["exit_code"] == 3 and "sagemaker" not in str(loss)


class _CheckFilesThatLoses(CheckFiles):
    """A stage added to the graph without going through the ledger, dropping a row per batch."""

    def expand(self, batches):
        outputs = super().expand(batches)
        lossy = outputs["main"] | "ForgetsTheLedger" >> beam.Map(lambda batch: batch.slice(1))
        return {**{tag: outputs[tag] for tag in ("dead_letters", "ledger")}, "main": lossy}


def test_a_refused_row_lost_on_its_way_to_refused_is_data_loss(tmp_path, capsys, monkeypatch):
    """Rows a writer refused are counted twice, by the writer (manifests/<fmt>.refused) and from
    the refused/<fmt>/ files: a refusal that never lands there is data loss, like any row."""
    original = output_files._JsonLinesFile.write
    dropped = []

    def write(self, rows):
        if not dropped and rows and rows[0].get("output"):
            dropped.append(rows[0])
            rows = rows[1:]
        return original(self, rows)

    monkeypatch.setattr(output_files._JsonLinesFile, "write", write)
    out = tmp_path / "out"
    argv = ["--input", str(REPO / "samples" / "azure_automl" / "*.jsonl"), "--output", str(out), RUNNER, "--output_format=sagemaker"]
    assert run(argv) == 3
    assert dropped, "no writer refused a row: the test proves nothing"
    assert "DATA LOSS in refused/sagemaker" in capsys.readouterr().out
    summary = json.loads(next((out / ".labelbeam" / "failed").iterdir()).joinpath("run.json").read_text())
    loss = summary["data_loss"]["refused/sagemaker"]
    assert loss["landed"] == loss["given"] - 1 and loss["produced"] == summary["outputs"]["manifests/sagemaker"]["refused"]
    assert set(summary["data_loss"]) == {"refused/sagemaker"}


def test_a_stage_that_drops_rows_without_the_ledger_breaks_the_chain(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(job_module, "CheckFiles", _CheckFilesThatLoses)
    out = tmp_path / "out"
    assert run(_args(out)) == 3
    printed = capsys.readouterr().out
    assert "DATA LOSS in" in printed and "split:" in printed
    summary = json.loads(next((out / ".labelbeam" / "failed").iterdir()).joinpath("run.json").read_text())
    breaks = summary["data_loss"]["stages"]["flow_breaks"]
    assert breaks and all(any(b.startswith("split: ") for b in listed) for listed in breaks.values())
    assert not summary["totals"]["reconciled"]


def test_run_json_counts_come_from_the_files(tmp_path):
    out = tmp_path / "out"
    assert run(_args(out, "--output_format=sagemaker")) == 0
    summary = json.loads((out / "run.json").read_text())
    records = summary["outputs"]["records"]
    assert records["landed"] == _rows(out / "records") == summary["totals"]["records_kept"] > 0
    manifests = summary["outputs"]["manifests/sagemaker"]
    lines = sum(len(p.read_bytes().splitlines()) for p in (out / "manifests" / "sagemaker").rglob("*.manifest"))
    assert manifests["landed"] == lines == manifests["given"] - manifests["refused"]
    letters = sum(len(p.read_bytes().splitlines()) for p in (out / "errors").glob("*.jsonl"))
    assert summary["outputs"]["errors"]["landed"] == letters == summary["totals"]["dead_letters"] + summary["totals"]["records_refused"]
    refusals = sum(len(p.read_bytes().splitlines()) for p in (out / "refused" / "sagemaker").glob("*.jsonl"))
    assert summary["outputs"]["refused/sagemaker"]["landed"] == refusals == manifests["refused"]
    assert summary["data_loss"] == {} and summary["totals"]["reconciled"]


@pytest.mark.e2e
def test_a_rerun_killed_halfway_leaves_the_previous_output_whole(tmp_path):
    manifest = tmp_path / "big.manifest"
    write_manifest(str(manifest), 300_000)
    out = tmp_path / "out"
    args = ["--input", str(manifest), "--output", str(out), RUNNER, "--validate_masks=false", "--overwrite"]
    assert run(args) == 0
    before = json.loads((out / "run.json").read_text())
    assert _rows(out / "records") == 300_000

    rerun = subprocess.Popen(
        [sys.executable, "-m", "pipelines.normalize_manifests", *args], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    staging = out / ".labelbeam" / "staging"
    deadline = time.time() + 120
    while time.time() < deadline and not any(staging.glob("*/records/.labelbeam-tmp/*")):
        time.sleep(0.05)
    assert rerun.poll() is None, "the rerun ended before it could be killed"
    os.killpg(rerun.pid, signal.SIGKILL)
    rerun.wait(timeout=30)

    assert json.loads((out / "run.json").read_text())["run_id"] == before["run_id"]
    assert (out / "_SUCCESS").exists() and _rows(out / "records") == 300_000
    # The next run takes over the dead run's lock, clears its staging and publishes.
    assert run(args) == 0
    after = json.loads((out / "run.json").read_text())
    assert after["run_id"] != before["run_id"] and _rows(out / "records") == 300_000
    assert not staging.exists() or not any(staging.iterdir())


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_it(tmp_path, capsys):
    from pipelines import publish
    from transforms import storage

    out = tmp_path / "out"
    root = publish.OutputRoot(str(out), storage.Storage())
    with root.acquire(publish.new_run_id()):
        assert run(_args(out)) == 2
        assert "another run" in capsys.readouterr().err
        assert not (out / "run.json").exists()
    assert run(_args(out)) == 0
