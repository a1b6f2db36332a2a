"""Every fault after launch is an exit code from the table, said in one line: storage dying
while publishing (exit 5, the next run completes the publish), a full disk (exit 5, nothing
published), SIGINT / SIGTERM (130 / 143 after releasing the lock, the previous output intact)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.synthetic import write_manifest

pytestmark = pytest.mark.e2e  # runs the whole job as a process

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "sagemaker"
RUNNER = "--runner=FnApiRunner"


def _cli(args: list[str], env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.normalize_manifests", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("labelbeam: error")]


# -- storage dying while publishing ------------------------------------------------------------

@pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc")
def test_storage_dying_while_publishing_is_exit_5_in_one_line_and_the_next_run_completes_it(s3_endpoint, tmp_path):
    pytest.importorskip("s3fs")
    from tests.faults import FaultProxy
    from tests.test_storage_faults import FAST_FAIL, _s3

    fs = _s3(s3_endpoint)
    fs.mkdir("pub")
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    seen = []

    def fail(method, path, headers):  # the endpoint dies once the publish journal is written
        if seen:
            return True
        if path.split("?")[0].endswith("/.labelbeam/publish.json") and method == "PUT":  # its copy into place
            seen.append(path)
        return False

    args = ["--input", str(SAMPLES / "lookout-for-vision.manifest"), "--output", "s3://pub/out", RUNNER, "--validate_masks=false"]
    with FaultProxy(s3_endpoint, fail) as proxy:
        options = "--storage_options=" + json.dumps({"s3": {"endpoint_url": proxy.url, "skip_instance_cache": True, "config_kwargs": FAST_FAIL}})
        done = _cli([*args, options], env)
    assert seen, done.stderr
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr
    [line] = _errors(done.stderr)
    assert "publishing failed" in line and "the next run on this output completes it" in line and "exit 5" in line
    assert not fs.exists("pub/out/_SUCCESS")
    assert "no _SUCCESS was written" not in done.stderr
    # the endpoint is back: the next run completes the interrupted publish first, then runs
    healthy = "--storage_options=" + json.dumps({"s3": {"endpoint_url": s3_endpoint, "skip_instance_cache": True}})
    again = _cli([*args, healthy, "--overwrite"], env)
    assert again.returncode == 0, again.stderr
    assert "completed the interrupted publish" in again.stderr
    assert fs.exists("pub/out/_SUCCESS") and not fs.exists("pub/out/.labelbeam/publish.json")


def test_a_lock_that_cannot_be_released_is_one_warning_not_a_traceback(tmp_path, monkeypatch, capsys):
    from pipelines import publish
    from pipelines.normalize_manifests import run

    def fail(self, *args, **kwargs):
        raise ConnectionResetError("the endpoint went away")

    monkeypatch.setattr(publish.OutputRoot, "_read_lock", fail)
    out = tmp_path / "out"
    code = run(["--input", str(SAMPLES / "lookout-for-vision.manifest"), "--output", str(out), RUNNER, "--validate_masks=false"])
    assert code == 0 and (out / "_SUCCESS").exists()
    assert json.loads((out / "run.json").read_text())["exit_code"] == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "could not remove the lock" in line]
    assert len(warnings) == 1 and "unreachable" in warnings[0] and "Traceback" not in err


# -- a full disk -------------------------------------------------------------------------------

@pytest.fixture
def small_tmpfs(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_is_exit_5_and_publishes_nothing(small_tmpfs, tmp_path):
    manifest = tmp_path / "in" / "big.manifest"
    manifest.parent.mkdir()
    write_manifest(str(manifest), 4000, broken_every=10)
    out = small_tmpfs / "out"
    done = _cli(["--input", str(manifest), "--output", str(out), RUNNER, "--validate_masks=false",
                 "--output_format", "sagemaker", "--output_format", "label_studio"])
    assert done.returncode == 5, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    [line] = _errors(done.stderr)
    assert "No space left on device" in line and "nothing was published" in line and line.endswith("exit 5"), line
    assert not (out / "_SUCCESS").exists() and not (out / "records").exists() and not (out / "run.json").exists()
    assert not (out / ".labelbeam" / "lock.json").exists()  # released


# -- SIGINT / SIGTERM --------------------------------------------------------------------------

def _hanging_manifest(tmp_path: Path, n: int = 4) -> Path:
    from tests.test_hostile_references import _line

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(n):
        os.mkfifo(folder / f"m{i}.png")
    manifest = folder / "a.manifest"
    manifest.write_text("".join(_line(f"images/{i}.jpg", f"m{i}.png") + "\n" for i in range(n)))
    return manifest


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_with_its_documented_code_after_releasing_the_lock(tmp_path, signum, code):
    out = tmp_path / "out"
    first = _cli(["--input", str(SAMPLES / "lookout-for-vision.manifest"), "--output", str(out), RUNNER, "--validate_masks=false"])
    assert first.returncode == 0, first.stderr
    before = (out / "run.json").read_bytes()
    manifest = _hanging_manifest(tmp_path)  # masks that are FIFOs nobody writes: the run waits
    logs = tmp_path / "logs"
    logs.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.normalize_manifests", "--input", str(manifest), "--output", str(out),
                             RUNNER, "--overwrite", "--mask_timeout_seconds=120"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=open(logs / "out", "w"), stderr=open(logs / "err", "w"), start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "lines read 4" not in (logs / "err").read_text():
            time.sleep(0.2)  # progress says the shard was read: the job waits on the FIFOs
        assert (out / ".labelbeam" / "lock.json").exists()
        time.sleep(1)
        os.kill(proc.pid, signum)
        assert proc.wait(60) == code
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = (logs / "err").read_text()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    [line] = [line for line in err.splitlines() if "interrupted by" in line]
    assert signal.Signals(signum).name in line and f"exit {code}" in line
    assert (out / "run.json").read_bytes() == before and (out / "_SUCCESS").exists()  # the previous output intact
    assert not (out / ".labelbeam" / "lock.json").exists()  # released


# -- the process's code is run.json's -----------------------------------------------------------

def test_the_process_exit_code_is_the_published_run_json_code(tmp_path):
    """Through the CLI, which ends the process with os._exit after flushing (no interpreter
    teardown to abort in): a run that kept no record exits 1, as its run.json says."""
    csv = tmp_path / "table.csv"
    csv.write_text("image,label\na.jpg,cat\n")
    out = tmp_path / "out"
    done = _cli(["--input", str(csv), "--output", str(out), RUNNER])
    summary = json.loads((out / "run.json").read_text())
    assert done.returncode == summary["exit_code"] == 1, done.stderr
    assert "NO RECORDS" in done.stdout and done.stdout.rstrip().endswith(summary["exit_meaning"])
    assert not (out / "_SUCCESS").exists()
