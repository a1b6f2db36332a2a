"""Fixtures shared by the test modules, and where the third-party test data is.

Some tests read real files of other projects (public datasets, converter test files, format
reference pages) that are kept beside the repository, never in it: by default in `../shared`
relative to the repository root, else wherever LABELBEAM_TEST_DATA points (a relative path is
taken from the repository root). Without them those tests skip, saying which data they need.
"""

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
SHARED_DATA_VARIABLE = "LABELBEAM_TEST_DATA"


def shared_data(*parts: str) -> Path:
    """A path in the third-party test data (see the module docstring); it may not exist."""
    root = (REPO / os.environ.get(SHARED_DATA_VARIABLE, str(Path("..") / "shared"))).resolve()
    return root.joinpath(*parts)


def need_shared_data(*parts: str) -> Path:
    """shared_data(*parts), or a skip that names the data (relative to its root) and the variable."""
    path = shared_data(*parts)
    if not path.exists():
        pytest.skip(f"needs the third-party test data {'/'.join(parts)}: set {SHARED_DATA_VARIABLE} (README, Tests)")
    return path


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
