"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real S3 endpoint: moto's server on loopback."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
