"""Incremental scheduled runs: each run reads only the input files that are new or changed.

With `--incremental`, the job's `--output` is a root of run partitions:

    OUTPUT/run_date=2026-12-01/   records/ manifests/ errors/ refused/ stats/ run.json _SUCCESS
    OUTPUT/run_date=2026-12-02/   ...
    OUTPUT/.labelbeam/incremental.json   what each input file looked like when it was read

A file is read when the state has no entry for it, when its fingerprint (size plus the
storage's version: ETag, generation or modification time, from fsspec's info) differs, or when
the state says this very partition read it: a rerun of the same partition reads the same files
again and replaces the partition, so it is idempotent (record ids and splits are stable). The
state advances only after a run exits 0 (complete, reconciled, published with _SUCCESS); a run
that fails leaves it where it was, and the next run reads those files again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import orjson

from pipelines.config import JobConfig
from pipelines.options import ConfigError
from transforms import storage

STATE_FILE = "incremental.json"
_VERSION_KEYS = ("ETag", "etag", "generation", "md5Hash", "version_id", "VersionId", "LastModified", "mtime", "last_modified", "updated")
_PARTITION = re.compile(r"^[A-Za-z0-9_.-]+=[A-Za-z0-9_.:-]+$")


@dataclasses.dataclass
class Plan:
    """One incremental run: the files it reads, where it writes, and the state it will record."""

    root: str
    partition: str
    job: JobConfig
    fingerprints: dict[str, dict]
    skipped: int


def fingerprint(info: dict) -> dict:
    """Size and the first version marker the storage reports (ETag, generation, mtime...)."""
    version = next((info[key] for key in _VERSION_KEYS if info.get(key) not in (None, "")), None)
    return {"size": info.get("size"), "version": str(version) if version is not None else None}


def state_url(root: str) -> str:
    return storage.join(root, ".labelbeam", STATE_FILE)


def load_state(root: str, store: storage.Storage) -> dict:
    try:
        return orjson.loads(store.read_bytes(state_url(root)))
    except FileNotFoundError:
        return {"files": {}}
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"the incremental state {storage.redact_url(state_url(root))} is damaged ({exc}); remove it to read everything again") from None


def default_partition(today: dt.date | None = None) -> str:
    return f"run_date={(today or dt.datetime.now(dt.timezone.utc).date()).isoformat()}"


def plan(job: JobConfig, listed: tuple[tuple[str, int], ...] | None = None) -> Plan:
    """The inputs this run reads and the partition it writes; nothing is touched yet.
    `listed`: the launch's listing of job.input ((url, size) per file), listed again when None."""
    store = job.storage_config()
    root = job.output.rstrip("/")
    partition = job.run_partition or default_partition()
    if not _PARTITION.match(partition):
        raise ConfigError(f"--run_partition must look like key=value (e.g. run_date=2026-12-02), got {partition!r}")
    known = load_state(root, store).get("files", {})
    selected: dict[str, dict] = {}
    skipped = 0
    if listed is None:
        listed = tuple(found for pattern in job.input for found in storage.expand(pattern, job.storage))
    for url, _ in listed:
        fs, path = store.fs(url)
        current = fingerprint(fs.info(path))
        before = known.get(url)
        if before is None or before.get("fingerprint") != current or before.get("partition") == partition:
            selected[url] = current
        else:
            skipped += 1
    partitioned = dataclasses.replace(job, input=sorted(selected) or list(job.input), output=storage.join(root, partition), overwrite=True)
    return Plan(root, partition, partitioned, selected, skipped)


def commit(done: Plan) -> None:
    """Record what the successful run read (only after exit 0)."""
    store = done.job.storage_config()
    state = load_state(done.root, store)
    files = state.setdefault("files", {})
    for url, current in done.fingerprints.items():
        files[url] = {"fingerprint": current, "partition": done.partition}
    state["last_success"] = {"partition": done.partition, "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    store.write_atomically(state_url(done.root), orjson.dumps(state, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
