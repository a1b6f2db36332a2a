"""Outputs published whole or not at all: staging, publish, `_SUCCESS`, and one run at a time.

A run never writes where readers look. It writes everything under
`OUTPUT/.labelbeam/staging/<run id>/` and, once the job is done and its report written,
publishes: for each output entry (records/, manifests/, errors/, refused/, stats/, run.json) the
previous one moves aside to `.labelbeam/previous/<run id>/` and the staged one takes its place;
then `_SUCCESS` is written, last, and only for a complete, reconciled run (exit code 0). A
journal (`.labelbeam/publish.json`) is written before the first move, so a publish that is
interrupted (a killed driver, a storage fault) is completed by the next run before it starts:
the staged copy is whole by then, so rolling forward is always safe. Until a publish begins,
the previous output stays as it was, `_SUCCESS` included; from its start until its end there is
no `_SUCCESS`, which is what schedulers and Hadoop/Spark readers poll for.

On local disk each move is a rename (atomic, instant); on object storage a move is a copy and a
delete, which is why `_SUCCESS` goes first and comes back last.

One run at a time: `.labelbeam/lock.json` is created exclusively (O_EXCL on local disk, a
conditional put on S3) and names its run, host, process and heartbeat. A second run refuses at
launch. A lock is stale, and taken over, when its heartbeat is older than `STALE_AFTER_SECONDS`
(the holder refreshes it every `HEARTBEAT_SECONDS`), or when it names a process on this host
that no longer exists.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import threading
import time

import orjson

from transforms import storage

STATE_DIR = ".labelbeam"
SUCCESS = "_SUCCESS"
RUN_FILE = "run.json"
REPORT_FILE = "report.html"
# What a run publishes; anything else in the output folder is left alone.
ENTRIES = ("records", "manifests", "errors", "refused", "stats", RUN_FILE, REPORT_FILE)
HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 600.0


class LockHeld(RuntimeError):
    """Another run holds the output's lock."""


def new_run_id() -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


class OutputRoot:
    """The output folder of a job, and the staging / publish / lock protocol around it."""

    def __init__(self, url: str, store: storage.Storage):
        self.url = url.rstrip("/")
        self.storage = store
        self.fs, self.path = store.fs(self.url)

    # -- locations -------------------------------------------------------------------------

    def state(self, *parts: str) -> str:
        return storage.join(self.url, STATE_DIR, *parts)

    def staging(self, run_id: str) -> str:
        return self.state("staging", run_id)

    def _p(self, url: str) -> str:
        return self.storage.fs(url)[1]

    def has_outputs(self) -> bool:
        return any(self.fs.exists(self._p(storage.join(self.url, entry))) for entry in (*ENTRIES, SUCCESS))

    # -- lock ------------------------------------------------------------------------------

    def acquire(self, run_id: str) -> "_Heartbeat":
        """The output's lock for this run, or LockHeld naming who has it."""
        lock = self.state("lock.json")
        self.fs.makedirs(self._p(self.state()), exist_ok=True)
        for _ in range(2):
            body = _lock_body(run_id)
            try:
                with self.fs.open(self._p(lock), "xb") as handle:
                    handle.write(body)
                return _Heartbeat(self, lock, run_id)
            except FileExistsError:
                pass
            except (ValueError, NotImplementedError):  # no exclusive create here: write, then read back
                if not self.fs.exists(self._p(lock)):
                    self.storage.write_atomically(lock, body)
                    if orjson.loads(self.storage.read_bytes(lock)).get("run_id") == run_id:
                        return _Heartbeat(self, lock, run_id)
            holder = self._read_lock(lock)
            if holder is not None and not _stale(holder):
                raise LockHeld(
                    f"another run ({holder.get('run_id')}, pid {holder.get('pid')} on {holder.get('host')}, "
                    f"heartbeat {holder.get('heartbeat_at')}) is writing to {storage.redact_url(self.url)}; "
                    f"wait for it, or remove {storage.redact_url(lock)} if that run is gone"
                )
            self.fs.rm(self._p(lock))  # stale: take it over
        raise LockHeld(f"could not take the lock {storage.redact_url(lock)}")

    def _read_lock(self, lock: str) -> dict | None:
        try:
            return orjson.loads(self.storage.read_bytes(lock))
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None

    # -- publish ---------------------------------------------------------------------------

    def recover(self) -> str | None:
        """Completes a publish an earlier run began; returns its run id, or None."""
        journal = self.state("publish.json")
        if not self.fs.exists(self._p(journal)):
            return None
        plan = orjson.loads(self.storage.read_bytes(journal))
        self._publish_entries(plan["run_id"])
        self._finish(plan["run_id"], plan["success"])
        return plan["run_id"]

    def publish(self, run_id: str, success: bool) -> None:
        """Staged outputs of `run_id` -> the output folder; `_SUCCESS` last when `success`."""
        self.storage.write_atomically(self.state("publish.json"), orjson.dumps({"run_id": run_id, "success": success}))
        self._publish_entries(run_id)
        self._finish(run_id, success)

    def _publish_entries(self, run_id: str) -> None:
        marker = self._p(storage.join(self.url, SUCCESS))
        if self.fs.exists(marker):
            self.fs.rm(marker)
        staged, aside = self.staging(run_id), self.state("previous", run_id)
        for entry in ENTRIES:
            source, target = storage.join(staged, entry), storage.join(self.url, entry)
            if not self.fs.exists(self._p(source)):
                continue  # published already (a resumed publish), or this run has no such output
            if self.fs.exists(self._p(target)):
                self.fs.makedirs(self._p(aside), exist_ok=True)
                moved = storage.join(aside, entry)
                if self.fs.exists(self._p(moved)):
                    self.fs.rm(self._p(moved), recursive=True)
                storage.move(self.fs, self._p(target), self._p(moved))
            storage.move(self.fs, self._p(source), self._p(target))

    def _finish(self, run_id: str, success: bool) -> None:
        if success:
            self.storage.write_atomically(storage.join(self.url, SUCCESS), orjson.dumps({"run_id": run_id}) + b"\n")
        for leftover in (self.state("previous", run_id), self.staging(run_id)):
            if self.fs.exists(self._p(leftover)):
                self.fs.rm(self._p(leftover), recursive=True)
        self.fs.rm(self._p(self.state("publish.json")))
        self._remove_if_empty(self.state("previous"), self.state("staging"))

    def _remove_if_empty(self, *folders: str) -> None:
        for folder in folders:
            path = self._p(folder)
            try:
                if self.fs.isdir(path) and not self.fs.ls(path):
                    self.fs.rmdir(path)
            except OSError:
                pass  # not empty after all (another run's staging): left as it is

    def clean_abandoned(self) -> list[str]:
        """Staging folders of runs that died before publishing (the lock is ours: no other run
        is writing); returns their run ids."""
        folder = self._p(self.state("staging"))
        if not self.fs.exists(folder):
            return []
        gone = []
        for path in self.fs.ls(folder, detail=False):
            self.fs.rm(path, recursive=True)
            gone.append(path.rstrip("/").rsplit("/", 1)[-1])
        self._remove_if_empty(self.state("staging"))
        return gone

    def discard(self, run_id: str) -> None:
        """A run that will not publish: its staged outputs go, the previous output stays."""
        staged = self._p(self.staging(run_id))
        if self.fs.exists(staged):
            self.fs.rm(staged, recursive=True)
        self._remove_if_empty(self.state("staging"))

    def keep_failed(self, run_id: str) -> str:
        """A run that must not publish (lost data, unreadable inputs): its staged outputs stay
        under .labelbeam/failed/<run id>/ for a look; returns where."""
        target = self.state("failed", run_id)
        staged = self._p(self.staging(run_id))
        if self.fs.exists(staged):
            self.fs.makedirs(self._p(self.state("failed")), exist_ok=True)
            storage.move(self.fs, staged, self._p(target))
        self._remove_if_empty(self.state("staging"))
        return target


def _lock_body(run_id: str) -> bytes:
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return orjson.dumps({"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(), "started_at": now, "heartbeat_at": now})


def _stale(holder: dict) -> bool:
    try:
        beat = dt.datetime.fromisoformat(holder["heartbeat_at"])
    except (KeyError, TypeError, ValueError):
        return True
    if (dt.datetime.now(dt.timezone.utc) - beat).total_seconds() > STALE_AFTER_SECONDS:
        return True
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder.get("pid")), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, TypeError, ValueError):
            return False
    return False


class _Heartbeat:
    """Holds the lock: refreshes its heartbeat in the background until released."""

    def __init__(self, root: OutputRoot, lock: str, run_id: str):
        self._root, self._lock, self._run_id = root, lock, run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="labelbeam-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                holder = self._root._read_lock(self._lock)
                if holder and holder.get("run_id") == self._run_id:
                    holder["heartbeat_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
                    self._root.storage.write_atomically(self._lock, orjson.dumps(holder))
            except Exception:  # noqa: BLE001 - a missed beat only ages the lock
                time.sleep(1)

    def release(self) -> None:
        self._stop.set()
        try:
            holder = self._root._read_lock(self._lock)
            if holder and holder.get("run_id") == self._run_id:
                self._root.fs.rm(self._root._p(self._lock))
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
