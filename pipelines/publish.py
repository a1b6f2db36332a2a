"""Outputs published whole or not at all: staging, publish, `_SUCCESS`, and one run at a time.

A run never writes where readers look. It writes everything under
`OUTPUT/.labelbeam/staging/<run id>/` and, once the job is done and its report written,
publishes: every entry of the previous output (records/, manifests/, errors/, refused/, stats/,
run.json, report.html) moves aside to `.labelbeam/previous/<run id>/`, whether or not the new run
produced it, and the staged ones take their places, so the folder holds the new run's entries
only; then `.labelbeam/published.json` lists every file the run published (`files`, and per
output each file's rows, bytes and sha256 under `outputs`, from the report's `FILE_RECORDS` in
the staging folder: run.json lists them only for outputs of few files), and `_SUCCESS` is
written, last, and only for a complete, reconciled run (exit code 0). A journal
(`.labelbeam/publish.json`, naming the entries the run staged) is written before the first move,
so a publish that is interrupted (a killed driver, a storage fault) is completed by the next run
before it starts: the staged copy is whole by then, so rolling forward is always safe.

Files in those entries that no labelbeam run published (a user's own `records/mine.parquet`)
are never moved or deleted: `foreign_files()` finds them (against published.json) and the job
refuses such an output at launch. Until a publish begins,
the previous output stays as it was, `_SUCCESS` included; from its start until its end there is
no `_SUCCESS`, which is what schedulers and Hadoop/Spark readers poll for.

On local disk each move is a rename (atomic, instant); on object storage a move is a copy and a
delete, which is why `_SUCCESS` goes first and comes back last.

One run at a time: `.labelbeam/lock.json` is created whole and only if absent (a hard link of
a written file on local disk, which fails when the name exists; a put with `If-None-Match: *`
on S3) and names its run, host, process and heartbeat. A second run refuses at launch. A lock
is stale when its heartbeat is older than `STALE_AFTER_SECONDS` (the holder refreshes it every
`HEARTBEAT_SECONDS`), or when it names a process on this host that no longer exists. Taking a
stale lock over is a claim first: `.labelbeam/lock.<digest of the stale lock>.takeover`, created
the same create-if-absent way, so of the runs that found the same stale lock only one may
remove it; it then creates its own lock like any run (tests/test_lock_race.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import socket
import sys
import threading
import time

import orjson
from fsspec.implementations.local import LocalFileSystem

from transforms import storage

STATE_DIR = ".labelbeam"
SUCCESS = "_SUCCESS"
RUN_FILE = "run.json"
REPORT_FILE = "report.html"
# What a run publishes; anything else in the output folder is left alone.
ENTRIES = ("records", "manifests", "errors", "refused", "stats", RUN_FILE, REPORT_FILE)
PUBLISHED_FILE = "published.json"  # under .labelbeam/: what the last publish put in place
FILE_RECORDS = "file_records.json"  # in a run's staging folder: per output, per file rows, bytes, sha256
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

    def foreign_files(self) -> list[str]:
        """Files inside the published entries that no labelbeam run put there (relative names).

        What a run published is listed in `.labelbeam/published.json` (and, for a publish under
        way, in its journal). An output published before that list existed: the names labelbeam
        gives its files (`part-NNNNN-of-MMMMM.*`, stats/, a format's side files under
        manifests/) count as its own when a run.json is there."""
        present = self._files_in_entries()
        if not present:
            return []
        known: set[str] = set()
        for record in (self.state(PUBLISHED_FILE), self.state("publish.json")):
            try:
                known |= set(orjson.loads(self.storage.read_bytes(record)).get("files") or ())
            except FileNotFoundError:
                continue
            except orjson.JSONDecodeError:
                continue
        legacy = not known and RUN_FILE in present
        return sorted(name for name in present if name not in known and not (legacy and _labelbeam_name(name)))

    def _files_in_entries(self, root: str | None = None) -> list[str]:
        """Relative names of the files under `root`'s published entries (the output by default)."""
        base = (root or self.url).rstrip("/")
        found = []
        for entry in ENTRIES:
            path = self._p(storage.join(base, entry))
            if not self.fs.exists(path):
                continue
            if not self.fs.isdir(path):
                found.append(entry)
                continue
            for file in self.fs.find(path):
                found.append(entry + "/" + storage.relative_to(storage.to_url(self.fs, file), storage.to_url(self.fs, path)))
        return found

    # -- lock ------------------------------------------------------------------------------

    def acquire(self, run_id: str) -> "_Heartbeat":
        """The output's lock for this run, or LockHeld naming who has it."""
        lock = self.state("lock.json")
        self.fs.makedirs(self._p(self.state()), exist_ok=True)
        for _ in range(6):
            if self._create(lock, _lock_body(run_id)):
                return _Heartbeat(self, lock, run_id)
            try:
                raw = self.storage.read_bytes(lock)
            except FileNotFoundError:
                continue  # released meanwhile: try again
            holder = _parse(raw)
            if holder is not None and not _stale(holder):
                raise LockHeld(
                    f"another run ({holder.get('run_id')}, pid {holder.get('pid')} on {holder.get('host')}, "
                    f"heartbeat {holder.get('heartbeat_at')}) is writing to {storage.redact_url(self.url)}; "
                    f"wait for it, or remove {storage.redact_url(lock)} if that run is gone"
                )
            self._take_over(lock, raw, run_id)
        raise LockHeld(f"could not take the lock {storage.redact_url(lock)}: other runs are taking it at the same time")

    def _take_over(self, lock: str, stale: bytes, run_id: str) -> None:
        """Removes the stale lock `stale`, unless another run claimed it first (or it changed)."""
        claim = self.state(f"lock.{hashlib.sha256(stale).hexdigest()[:16]}.takeover")
        if not self._create(claim, _lock_body(run_id)):
            claimant = self._read_lock(claim)
            if claimant is None or _stale(claimant):  # a claim left by a run that died while taking over
                self._remove(claim)
            return  # another run is taking it over: look again
        try:
            try:
                current = self.storage.read_bytes(lock)
            except FileNotFoundError:
                return
            if current == stale:  # still the lock judged stale: only the claim's holder removes it
                self._remove(lock)
        finally:
            self._remove(claim)

    def _create(self, url: str, body: bytes) -> bool:
        """Writes `url` whole if nothing is there; False when something is."""
        path = self._p(url)
        if isinstance(self.fs, LocalFileSystem):  # a hard link of a complete file: never seen empty
            folder, name = os.path.split(path)
            temp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.new")
            with open(temp, "wb") as handle:
                handle.write(body)
            try:
                os.link(temp, path)
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(temp)
        try:
            with self.fs.open(path, "xb") as handle:  # S3: a put with If-None-Match: *
                handle.write(body)
            return True
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError):  # no exclusive create here: write, then read back
            if self.fs.exists(path):
                return False
            self.storage.write_atomically(url, body)
            return self.storage.read_bytes(url) == body

    def _remove(self, url: str) -> None:
        try:
            self.fs.rm(self._p(url))
        except FileNotFoundError:
            pass

    def _read_lock(self, lock: str) -> dict | None:
        try:
            return _parse(self.storage.read_bytes(lock))
        except FileNotFoundError:
            return None

    # -- publish ---------------------------------------------------------------------------

    def recover(self) -> str | None:
        """Completes a publish an earlier run began; returns its run id, or None."""
        journal = self.state("publish.json")
        if not self.fs.exists(self._p(journal)):
            return None
        plan = orjson.loads(self.storage.read_bytes(journal))
        self._publish_entries(plan["run_id"], plan.get("entries"))
        self._finish(plan["run_id"], plan["success"], plan.get("files"))
        return plan["run_id"]

    def publish(self, run_id: str, success: bool) -> None:
        """Staged outputs of `run_id` -> the output folder, replacing every entry of the previous
        output; `_SUCCESS` last when `success`. `self.published` is True once all is in place
        (a failure after that only leaves clean-up for the next run)."""
        self.published = False
        staged = self.staging(run_id)
        entries = [entry for entry in ENTRIES if self.fs.exists(self._p(storage.join(staged, entry)))]
        files = self._files_in_entries(staged)
        self.storage.write_atomically(
            self.state("publish.json"), orjson.dumps({"run_id": run_id, "success": success, "entries": entries, "files": files})
        )
        self._publish_entries(run_id, entries)
        self._finish(run_id, success, files)

    def _publish_entries(self, run_id: str, entries: list[str] | None) -> None:
        """Every entry of the previous output aside, the staged ones (`entries`) in place.
        Safe to repeat: an entry already in place has left the staging folder. `entries` None:
        a journal of an older version, which moved only what was staged."""
        marker = self._p(storage.join(self.url, SUCCESS))
        if self.fs.exists(marker):
            self.fs.rm(marker)
        staged, aside = self.staging(run_id), self.state("previous", run_id)
        for entry in ENTRIES:
            source, target = storage.join(staged, entry), storage.join(self.url, entry)
            staged_here = self.fs.exists(self._p(source))
            produced = staged_here if entries is None else entry in entries
            if produced and not staged_here:
                continue  # put in place already (a resumed publish)
            if self.fs.exists(self._p(target)):
                self.fs.makedirs(self._p(aside), exist_ok=True)
                moved = storage.join(aside, entry)
                if self.fs.exists(self._p(moved)):
                    self.fs.rm(self._p(moved), recursive=True)
                storage.move(self.fs, self._p(target), self._p(moved))
            if produced:
                storage.move(self.fs, self._p(source), self._p(target))

    def _finish(self, run_id: str, success: bool, files: list[str] | None = None) -> None:
        if files is not None:
            published = {"run_id": run_id, "files": files, "outputs": self._file_records(run_id)}
            self.storage.write_atomically(self.state(PUBLISHED_FILE), orjson.dumps(published))
        if success:
            self.storage.write_atomically(storage.join(self.url, SUCCESS), orjson.dumps({"run_id": run_id}) + b"\n")
        self.published = True
        for leftover in (self.state("previous", run_id), self.staging(run_id)):
            if self.fs.exists(self._p(leftover)):
                self.fs.rm(self._p(leftover), recursive=True)
        self.fs.rm(self._p(self.state("publish.json")))
        self._remove_if_empty(self.state("previous"), self.state("staging"))

    def _file_records(self, run_id: str) -> dict:
        """Per output, each published file's rows, bytes and sha256, as the report left them in
        the staging folder (still there: only the entries move); {} for a run without them."""
        try:
            return orjson.loads(self.storage.read_bytes(storage.join(self.staging(run_id), FILE_RECORDS))).get("outputs") or {}
        except FileNotFoundError:
            return {}

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


def _parse(raw: bytes) -> dict | None:
    """A lock's holder, or None for an unreadable lock (treated as stale)."""
    try:
        holder = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return holder if isinstance(holder, dict) else None


_PART = re.compile(r"(^|/)part-\d{5}-of-\d{5}\.[^/]+$")


def _labelbeam_name(name: str) -> bool:
    """A name labelbeam gives the files it publishes (for outputs older than published.json)."""
    return name in (RUN_FILE, REPORT_FILE) or name.startswith(("stats/", "manifests/")) or bool(_PART.search(name))


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

    def release(self) -> str | None:
        """Removes the lock if it is still this run's. Never raises: a lock that cannot be
        removed (storage failing) ages and is taken over; returns why, after saying it."""
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            holder = self._root._read_lock(self._lock)
            if holder and holder.get("run_id") == self._run_id:
                self._root.fs.rm(self._root._p(self._lock))
        except FileNotFoundError:
            pass
        except Exception as exc:  # noqa: BLE001 - storage failing at the very end: one line, not a traceback
            reason = storage.failure_reason(exc) or "error"
            message = (f"labelbeam: warning: could not remove the lock {storage.redact_url(self._lock)} ({reason}: "
                       f"{storage.redact_url(f'{type(exc).__name__}: {exc}')[:200]}); the next run takes it over once it is stale")
            print(message, file=sys.stderr)
            return message
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
