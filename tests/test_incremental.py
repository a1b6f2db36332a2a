"""Scheduled incremental runs: only new or changed files are read, the state advances on success."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import pyarrow.dataset as ds
import pytest

from pipelines.normalize_manifests import run

pytestmark = pytest.mark.e2e  # runs the whole job: deselect with -m "not e2e" for the fast subset

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sagemaker" / "lookout-for-vision.manifest"
RUNNER = "--runner=FnApiRunner"


def _run(inputs: Path, out: Path, partition: str, *extra: str) -> int:
    return run(["--input", str(inputs / "*.manifest"), "--output", str(out), RUNNER, "--validate_masks=false",
                "--incremental", f"--run_partition=run_date={partition}", *extra])


def _ids(folder: Path) -> list[str]:
    return sorted(ds.dataset(folder / "records", format="parquet", partitioning="hive").to_table().column("record_id").to_pylist())


def _read_uris(folder: Path) -> list[str]:
    return sorted(Path(f["uri"]).name for f in json.loads((folder / "run.json").read_text())["files"])


def _state(out: Path) -> dict:
    return orjson.loads((out / ".labelbeam" / "incremental.json").read_bytes())


def test_a_scheduled_sequence_reads_each_file_once_and_reruns_are_idempotent(tmp_path, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for name in ("a", "b"):
        shutil.copy(SAMPLE, inputs / f"{name}.manifest")
    assert _run(inputs, out, "2026-12-01") == 0
    day1 = out / "run_date=2026-12-01"
    assert _read_uris(day1) == ["a.manifest", "b.manifest"] and (day1 / "_SUCCESS").exists()
    assert set(_state(out)["files"]) == {str(inputs / "a.manifest"), str(inputs / "b.manifest")}

    shutil.copy(SAMPLE, inputs / "c.manifest")
    assert _run(inputs, out, "2026-12-02") == 0
    day2 = out / "run_date=2026-12-02"
    assert _read_uris(day2) == ["c.manifest"]
    first_ids, first_totals = _ids(day2), json.loads((day2 / "run.json").read_text())["totals"]
    assert len(first_ids) == len(_ids(day1)) // 2 > 0

    assert _run(inputs, out, "2026-12-02") == 0  # the same day again: the same outputs, no duplicates
    assert _ids(day2) == first_ids and json.loads((day2 / "run.json").read_text())["totals"] == first_totals
    assert _read_uris(day2) == ["c.manifest"] and _ids(day1)  # day 1 untouched

    capsys.readouterr()
    assert _run(inputs, out, "2026-12-03") == 0
    assert "nothing new to read: 3 input file(s) unchanged" in capsys.readouterr().out
    assert not (out / "run_date=2026-12-03").exists()


def test_the_state_advances_only_after_a_successful_run(tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copy(SAMPLE, inputs / "a.manifest")
    assert _run(inputs, out, "2026-12-01") == 0
    before = _state(out)

    broken = inputs / "b.manifest"
    broken.write_bytes(SAMPLE.read_bytes() + b'{"source-ref": \n')
    assert _run(inputs, out, "2026-12-02", "--max_error_rate=0") == 1  # published, but not a success
    assert _state(out) == before  # b was not recorded: the next run reads it again

    assert _run(inputs, out, "2026-12-03") == 0
    assert _read_uris(out / "run_date=2026-12-03") == ["b.manifest"]
    assert _state(out)["files"][str(broken)]["partition"] == "run_date=2026-12-03"

    broken.write_bytes(SAMPLE.read_bytes())  # a changed file is read again
    assert _run(inputs, out, "2026-12-04") == 0
    assert _read_uris(out / "run_date=2026-12-04") == ["b.manifest"]
