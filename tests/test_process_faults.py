"""Real processes: a worker process killed mid-run, and two runs on one output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_hostile_references import _line

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")


def _hanging_manifest(tmp_path: Path, n: int = 6) -> Path:
    """Masks that are FIFOs nobody writes: a worker checking them waits (bounded by the mask timeout)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(n):
        os.mkfifo(folder / f"m{i}.png")
    manifest = folder / "a.manifest"
    manifest.write_text("".join(_line(f"images/{i}.jpg", f"m{i}.png") + "\n" for i in range(n)))
    return manifest


def _start(args: list[str], logs: Path) -> subprocess.Popen:
    """The job in its own session, its output to files (a full pipe would block it)."""
    logs.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "pipelines.normalize_manifests", *args], cwd=REPO,
                            stdout=open(logs / "stdout", "w"), stderr=open(logs / "stderr", "w"), start_new_session=True)


def _logs(logs: Path) -> tuple[str, str]:
    return (logs / "stdout").read_text(), (logs / "stderr").read_text()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _workers(pid: int) -> list[int]:
    """The Python worker processes under the driver (the driver starts them through /bin/sh)."""
    found = []
    for child in _children(pid):
        for pid_ in [child, *_children(child)]:
            try:
                cmd = Path(f"/proc/{pid_}/cmdline").read_bytes()
            except OSError:
                continue
            if b"sdk_worker_main" in cmd and b"python" in cmd.split(b"\0")[0]:
                found.append(pid_)
    return found


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.e2e
def test_a_killed_worker_fails_the_run_clearly_and_publishes_nothing(tmp_path):
    manifest = _hanging_manifest(tmp_path)
    out = tmp_path / "out"
    proc = _start(["--config", "configs/local.yaml", "--input", str(manifest), "--output", str(out), "--mask_timeout_seconds=60"], tmp_path / "logs")
    try:
        deadline = time.monotonic() + 60
        while len(_workers(proc.pid)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        workers = _workers(proc.pid)
        assert len(workers) == 2, "the runner did not start its two worker processes"
        time.sleep(8)  # let them take their bundles
        os.kill(workers[0], signal.SIGKILL)
        proc.wait(timeout=60)  # before: the driver waited forever
        stdout, stderr = _logs(tmp_path / "logs")
    finally:
        _stop(proc)
    assert proc.returncode == 5, stderr[-2000:]
    assert "a worker process died (exit code 137)" in stdout
    assert not (out / "records").exists() and not (out / "_SUCCESS").exists() and not (out / "run.json").exists()
    [report] = list((out / ".labelbeam" / "failed").glob("*/run.json"))
    summary = json.loads(report.read_text())
    assert summary["exit_code"] == 5 and summary["state"].startswith("FAILED: a worker process died")
    assert not (out / ".labelbeam" / "lock.json").exists()  # released


@pytest.mark.e2e
def test_a_second_run_on_the_same_output_is_refused_while_the_first_runs(tmp_path):
    manifest = _hanging_manifest(tmp_path, n=2)
    out = tmp_path / "out"
    first = _start(["--runner=FnApiRunner", "--input", str(manifest), "--output", str(out), "--mask_timeout_seconds=25"], tmp_path / "logs")
    try:
        lock = out / ".labelbeam" / "lock.json"
        deadline = time.monotonic() + 60
        while not lock.exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.1)
        holder = json.loads(lock.read_text())
        second = subprocess.run([sys.executable, "-m", "pipelines.normalize_manifests", "--runner=FnApiRunner", "--input", str(manifest),
                                 "--output", str(out), "--overwrite"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert first.poll() is None, "the first run ended before the second was tried"
        first.wait(timeout=90)
        stdout, stderr = _logs(tmp_path / "logs")
    finally:
        _stop(first)
    assert second.returncode == 2
    assert f"another run ({holder['run_id']}" in second.stderr and "Traceback" not in second.stderr
    assert first.returncode == 0, stderr[-2000:]
    summary = json.loads((out / "run.json").read_text())
    assert summary["run_id"] == holder["run_id"] and summary["totals"]["lines"] == 2
    assert summary["totals"]["warnings_by_code"] == {"MASK_CORRUPT": 2}  # the FIFOs timed out (25 s: a second process starts slowly on a loaded machine)
