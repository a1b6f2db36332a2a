"""The same job on runners whose workers are other processes: the graph must serialize whole."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.normalize_manifests import run

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "sagemaker"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _expected_totals(tmp_path) -> dict:
    out = tmp_path / "reference"
    assert run(_args(out) + ["--runner=FnApiRunner"]) == 0
    return json.loads((out / "run.json").read_text())["totals"]


def _args(out: Path) -> list[str]:
    return [
        "--input", str(SAMPLES / "*.manifest"), "--input", str(SAMPLES / "*.jsonl"),
        "--output", str(out), "--output_format=sagemaker", "--shard_size=1KB",
    ]


def _totals(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())["totals"]


def test_multi_processing_workers_give_the_same_totals(tmp_path):
    expected = _expected_totals(tmp_path)
    out = tmp_path / "multi"
    assert run(_args(out) + ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]) == 0
    assert _totals(out) == expected


@pytest.fixture
def worker_pool():
    """Beam's external SDK worker pool, as Flink and Dataflow workers run it, on loopback."""
    port = _free_port()
    env = dict(os.environ)
    # The pool starts workers with the `python` on PATH: this interpreter's, with labelbeam on it.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    pool = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        os.killpg(pool.pid, signal.SIGKILL)
        pytest.fail("the worker pool did not start")
    yield port
    os.killpg(pool.pid, signal.SIGKILL)  # the pool and the SDK workers it started
    pool.wait(timeout=30)


@pytest.mark.timeout(300)  # a crashed SDK worker hangs a portable job: fail instead
def test_portable_runner_with_an_external_worker_pool(tmp_path, worker_pool):
    expected = _expected_totals(tmp_path)
    out = tmp_path / "portable"
    code = run(_args(out) + [
        "--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=EXTERNAL",
        f"--environment_config=localhost:{worker_pool}",
    ])
    assert code == 0
    assert _totals(out) == expected
    assert list((out / "records").rglob("part-*.parquet"))
    assert list((out / "manifests" / "sagemaker").rglob("part-*-of-*.manifest"))
