"""One lock holder: runs that find the same stale lock at the same moment, in separate processes,
leave exactly one of them holding it (local disk, and S3 through moto's server on loopback)."""

from __future__ import annotations

import multiprocessing
import os
import time

import orjson
import pytest

from pipelines import publish
from transforms import storage

TRIALS = 60


def _stale_lock() -> bytes:
    """A lock whose holder is gone: a heartbeat far in the past, a process that does not exist."""
    return orjson.dumps({"run_id": "dead-run", "host": "elsewhere", "pid": 1, "started_at": "2000-01-01T00:00:00+00:00",
                         "heartbeat_at": "2000-01-01T00:00:00+00:00"})


def _contender(url: str, options: dict, barrier, results, index: int) -> None:
    """Takes the lock when the barrier opens; reports whether it holds it, keeps it until told."""
    root = publish.OutputRoot(url, storage.Storage(options))
    barrier.wait()
    try:
        root.acquire(f"run-{index}")
        results[index] = "held"
    except publish.LockHeld:
        results[index] = "refused"
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results[index] = f"error {exc!r}"
    barrier.wait()  # hold it until both have tried
    os._exit(0)  # no release: the heartbeat threads die with the process


def _race(url: str, options: dict) -> tuple[int, int, list]:
    """TRIALS races of two processes over one stale lock: (double holders, single holders, odd results)."""
    store = storage.Storage(options)
    lock = storage.join(url, publish.STATE_DIR, "lock.json")
    context = multiprocessing.get_context("fork")
    double = single = 0
    odd = []
    manager = context.Manager()
    for trial in range(TRIALS):
        store.write_atomically(lock, _stale_lock())
        barrier = context.Barrier(2)
        shared = manager.dict()
        procs = [context.Process(target=_contender, args=(url, options, barrier, shared, i)) for i in range(2)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        outcome = sorted(shared.values())
        if outcome == ["held", "held"]:
            double += 1
        elif outcome == ["held", "refused"]:
            single += 1
        else:
            odd.append((trial, outcome))
        fs, path = store.fs(storage.join(url, publish.STATE_DIR))
        fs.rm(path, recursive=True)
    manager.shutdown()
    return double, single, odd


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_two_processes_taking_over_one_stale_lock_leave_one_holder_local(tmp_path):
    started = time.monotonic()
    double, single, odd = _race(str(tmp_path / "out"), {})
    assert (double, single, odd) == (0, TRIALS, []), f"{double} double holders in {TRIALS} trials ({time.monotonic() - started:.0f}s)"


@pytest.mark.e2e
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_two_processes_taking_over_one_stale_lock_leave_one_holder_s3(monkeypatch, s3_endpoint):
    """The same race on S3 (moto's server): the lock and the takeover claim are puts with
    If-None-Match: *, which the server refuses (412) when the key exists."""
    s3fs = pytest.importorskip("s3fs")
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True).mkdir("locks")
    s3fs.S3FileSystem.clear_instance_cache()  # an S3 client cached by an earlier test of this worker has other credentials
    double, single, odd = _race("s3://locks/out", {})
    assert (double, single, odd) == (0, TRIALS, [])
