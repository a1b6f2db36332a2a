"""Progress while a job runs: the workers' running totals, and the lines printed from them."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from benchmarks.synthetic import write_manifest
from pipelines import progress
from pipelines.normalize_manifests import run

pytestmark = pytest.mark.e2e  # runs the whole job: deselect with -m "not e2e" for the fast subset

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


def test_totals_are_summed_and_printed(tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "LOG_SECONDS", 0.05)
    stream = io.StringIO()
    with progress.Progress(enabled=True, stream=stream) as shown:
        for name, counts in (("a", {"lines": 1200, "lines_shards": 2}), ("b", {"lines": 800, "records": 1990, "dead_letters": 10})):
            (Path(shown.folder) / f"{name}.json").write_bytes(orjson.dumps(counts))
        (Path(shown.folder) / "c.json").write_bytes(b"{half writ")  # being replaced: skipped, not fatal
        assert progress.read_totals(shown.folder) == {"lines": 2000, "lines_shards": 2, "records": 1990, "dead_letters": 10}
        while shown.lines_printed < 2:
            time.sleep(0.01)
    last = stream.getvalue().strip().splitlines()[-1]
    assert "lines read 2000 " in last and "from 2 shard(s)" in last and "records 1990 " in last and "dead letters 10" in last
    assert "%" not in last  # no input plan given: no share of it to show
    assert not Path(shown.folder).exists()


def test_a_job_reports_its_progress_and_quiet_turns_it_off(tmp_path, monkeypatch, capsys):
    seen = []

    class Keeping(progress.Progress):
        def __exit__(self, *exc):
            seen.append(progress.read_totals(self.folder) if self.folder else None)
            super().__exit__(*exc)

    monkeypatch.setattr(progress, "Progress", Keeping)
    monkeypatch.setattr(progress, "LOG_SECONDS", 0.2)
    out = tmp_path / "out"
    args = ["--input", str(SAMPLES / "sagemaker" / "*.manifest"), "--output", str(out), "--runner=FnApiRunner"]
    assert run(args) == 0
    totals = json.loads((out / "run.json").read_text())["totals"]
    assert seen[0]["lines"] == totals["lines"]
    assert seen[0]["records"] == totals["records_kept"]
    assert seen[0]["dead_letters"] == totals["dead_letters"] + totals["records_refused"]
    assert "lines read" in capsys.readouterr().err
    assert run([*args, "--overwrite", "--quiet"]) == 0
    assert seen[1] is None and "lines read" not in capsys.readouterr().err


def test_a_real_run_prints_progress_at_least_every_five_seconds(tmp_path):
    """The CLI on a generated Lookout manifest, its stderr read as it comes: the arrival time of
    every progress line, from the job's start to its summary, is at most 5 s after the one
    before (a 1,000,000-line run, measured in docs/statistics.md, shows the same)."""
    manifest = tmp_path / "lookout.manifest"
    write_manifest(str(manifest), 400_000)  # long enough for lines between the first and the last
    started = time.monotonic()
    job = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "--input", str(manifest), "--output", str(tmp_path / "out"),
         "--runner=FnApiRunner", "--validate_masks=false"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    arrivals = [(time.monotonic() - started, line) for line in job.stderr]  # stderr is not a TTY: one line each
    summary = job.stdout.read()
    assert job.wait() == 0 and "DONE" in summary
    ended = time.monotonic() - started
    shown = [(at, line) for at, line in arrivals if "lines read" in line]
    assert len(shown) >= max(2, int(ended // (progress.LOG_SECONDS + 1.0))), arrivals  # the start, the end, one per interval
    assert "lines read 0 " in shown[0][1] and "lines read 400000 " in shown[-1][1]  # at the start, and the final totals
    assert " 100% of " in shown[-1][1] and "left" not in shown[-1][1]  # the size of the input is known: all of it was read
    middle = [line for _, line in shown[1:-1] if "% of" in line and " 100% " not in line]
    assert middle and all("left" in line for line in middle), shown  # while reading: how much, and how long still
    stamps = [at for at, _ in shown]
    gaps = [later - earlier for earlier, later in zip(stamps, stamps[1:] + [ended])]
    assert max(gaps) <= progress.LOG_SECONDS + 1.0, gaps
    printed = [float(line.split()[1].rstrip("s")) for _, line in shown]  # the job's own clock agrees
    summary_lines = [line for line in summary.splitlines() if "items in" in line]
    assert summary_lines and "400000 items" in summary_lines[0]  # progress writes numbers as the summary does
    assert printed == sorted(printed) and max(b - a for a, b in zip(printed, printed[1:])) <= progress.LOG_SECONDS + 1.0


def test_the_input_plan_gives_a_percentage_and_names_array_elements(tmp_path, monkeypatch):
    """A JSON array's items are elements, a JSON-lines file's lines; a compressed file's size
    says nothing of its content, so no percentage is claimed for it."""
    import gzip

    from transforms.storage import Storage

    array = tmp_path / "tasks.json"
    array.write_text(json.dumps([{"id": i, "data": {"image": f"s3://b/{i}.jpg"}} for i in range(10)]))
    lines = tmp_path / "a.manifest"
    lines.write_text('{"source-ref": "s3://b/1.jpg"}\n' * 100)
    packed = tmp_path / "b.manifest.gz"
    packed.write_bytes(gzip.compress(lines.read_bytes()))
    store = Storage()
    listed = {path: (str(path), path.stat().st_size) for path in (array, lines, packed)}  # as the launch lists them
    array, lines, packed = (listed[p] for p in (array, lines, packed))
    assert progress.plan_input([array], store) == progress.InputPlan(1, array[1], "elements")
    assert progress.plan_input([lines], store) == progress.InputPlan(1, lines[1], "lines")
    assert progress.plan_input([lines, array], store).unit == "items"
    assert progress.plan_input([lines, packed], store).size is None
    plan = progress.InputPlan(1, 4 << 20, "elements")
    shown = progress.describe({"lines": 5000, "lines_bytes": 1 << 20, "lines_shards": 3, "records": 4990}, 12.0, 400.0, plan, byte_rate=100_000)
    assert " 25% of 4.0 MB, about 31s left  elements read 5000 (400/s) from 3 shard(s)  records 4990  dead letters 0" in shown
    assert "% of" not in progress.describe({"lines": 5}, 1.0, 5.0, progress.InputPlan(1, None, "lines"))


def test_the_bytes_a_shard_covers_are_counted_from_its_records(tmp_path):
    from transforms.schema import RawBatch
    from transforms.stages.progress import _CountFn

    fn = _CountFn("lines", str(tmp_path))
    fn.setup()
    fn.process(RawBatch("a", "sagemaker", 0, lines=[1, 2], offsets=[0, 11], raws=[b"0123456789", b"abc"]))
    fn.process(RawBatch("a", "sagemaker", 0, lines=[3], offsets=[15], raws=[b"xyz"]))
    fn.process(RawBatch("a", "sagemaker", 1, lines=[9], offsets=[100], raws=[b"0123"]))
    fn.finish_bundle()
    assert progress.read_totals(str(tmp_path)) == {"lines": 4, "lines_shards": 2, "lines_bytes": 18 + 4}
