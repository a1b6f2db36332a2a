"""run.json: what ran, with which options, and how every input line was accounted for."""

from __future__ import annotations

import datetime as dt
import platform
from importlib import metadata

import orjson

from pipelines.options import JobConfig
from transforms import storage
from transforms.counters import COUNTERS_FILE, merge_into

RUN_FILE = "run.json"
_FILE_COUNTERS = ("lines", "ok", "dead_letters", "blank", "records")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="milliseconds")


def file_entries(counters: dict) -> list[dict]:
    """Merged per-file counters -> run.json `files` entries (reconciled per file)."""
    entries = []
    for uri in sorted(counters):
        counts = counters[uri]
        entry = {"uri": uri, "format": counts.get("format"), "layout": counts.get("layout"), "bytes": counts.get("bytes")}
        entry.update({name: int(counts.get(name, 0)) for name in _FILE_COUNTERS})
        entry["skipped"] = counts.get("skipped", {})
        entry["dead_letter_codes"] = counts.get("dead_letter_codes", {})
        entry["warnings"] = dict(sorted(counts.get("warnings", {}).items()))
        # Every line read is accounted for, and every line of the file was read: the reader's
        # count agrees with the byte-range pre-count, and no read stopped early.
        entry["expected_lines"] = int(counts.get("expected_lines", entry["lines"]))
        entry["complete"] = entry["lines"] == entry["expected_lines"] and not counts.get("incomplete_reads")
        entry["reconciled"] = entry["complete"] and entry["lines"] == entry["ok"] + entry["dead_letters"] + entry["blank"]
        # Records a validation profile refused: in errors/, not in records/.
        entry["records_rejected"] = sum(entry["dead_letter_codes"].get("validate", {}).values())
        entries.append(entry)
    return entries


def totals_of(files: list[dict]) -> dict:
    totals = {name: sum(f[name] for f in files) for name in (*_FILE_COUNTERS, "records_rejected")}
    totals["records_written"] = totals["records"] - totals["records_rejected"]
    totals["files"] = len(files)
    merged: dict = {}
    for entry in files:
        merge_into(merged, {"codes": entry["dead_letter_codes"], "warnings": entry["warnings"], "skipped": entry["skipped"]})
    codes = merged.get("codes", {})
    totals["dead_letters_by_code"] = _sorted(codes.get("normalize", {}))
    # Findings on records that were kept (issues column), by code.
    totals["warnings_by_code"] = _sorted(merged.get("warnings", {}))
    # Records that were normalized but refused later (validation, a writer): not input lines.
    totals["rejected_by_stage"] = {stage: _sorted(n) for stage, n in sorted(codes.items()) if stage != "normalize"}
    if merged.get("skipped"):
        totals["skipped"] = merged["skipped"]
    totals["reconciled"] = all(f["reconciled"] for f in files)
    return totals


def _sorted(counts: dict) -> dict:
    return dict(sorted(counts.items()))


def write_run_report(job: JobConfig, pipeline_options: dict, started: float, finished: float, state: str) -> dict:
    """Reads the job's counters, writes <output>/run.json, returns it."""
    fs, out = storage.filesystem(job.output, job.storage_options)
    counters_path = storage.join(out, COUNTERS_FILE)
    counters = orjson.loads(fs.cat_file(counters_path)) if fs.exists(counters_path) else {}
    files = file_entries(counters)
    totals = totals_of(files)
    error_rate = totals["dead_letters"] / totals["lines"] if totals["lines"] else 0.0
    exceeded = job.max_error_rate is not None and error_rate > job.max_error_rate
    summary = {
        "labelbeam": _version("labelbeam"),
        "state": state,
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "seconds": round(finished - started, 3),
        "inputs": job.input,
        "output": job.output,
        "options": {"job": job.redacted(), "pipeline": storage.redact(pipeline_options)},
        "versions": {
            "python": platform.python_version(),
            "apache-beam": _version("apache-beam"),
            "pyarrow": _version("pyarrow"),
            "fsspec": _version("fsspec"),
        },
        "totals": totals,
        "files": files,
        "error_rate": round(error_rate, 6),
        "max_error_rate": job.max_error_rate,
        "exit_code": 1 if exceeded or state != "DONE" else 0,
    }
    storage.write_atomically(storage.join(job.output, RUN_FILE), orjson.dumps(summary, option=orjson.OPT_INDENT_2), job.storage_options)
    temp_folder = storage.parent(counters_path)
    if fs.exists(temp_folder):
        fs.rm(temp_folder, recursive=True)
    return summary


def describe(job: JobConfig, summary: dict) -> str:
    """The short summary the CLI prints."""
    totals = summary["totals"]
    lines = [
        f"labelbeam: {summary['state']} in {summary['seconds']:.1f}s",
        f"  input lines {totals['lines']}: ok {totals['ok']}, dead letters {totals['dead_letters']}, "
        f"blank {totals['blank']} ({'reconciled' if totals['reconciled'] else 'NOT reconciled'})",
        f"  records {totals['records_written']} written to {storage.join(job.output, 'records')}",
    ]
    lines.append(f"  statistics in {storage.join(job.output, 'stats')}")
    if job.output_format:
        lines.append(f"  manifests ({', '.join(job.output_format)}) in {storage.join(job.output, 'manifests')}")
    if totals["dead_letters_by_code"]:
        codes = ", ".join(f"{code} {n}" for code, n in totals["dead_letters_by_code"].items())
        lines.append(f"  dead letters by code: {codes} -> {storage.join(job.output, 'errors')}")
    if totals["warnings_by_code"]:
        listed = ", ".join(f"{code} {n}" for code, n in totals["warnings_by_code"].items())
        lines.append(f"  warnings on kept records: {listed}")
    for stage, codes in totals["rejected_by_stage"].items():
        listed = ", ".join(f"{code} {n}" for code, n in codes.items())
        lines.append(f"  records refused at stage {stage}: {listed}")
    if totals.get("skipped"):
        lines.append("  skipped: " + ", ".join(f"{k} {v}" for k, v in totals["skipped"].items()))
    lines.append(f"  run report: {storage.join(job.output, RUN_FILE)}")
    if summary["exit_code"]:
        lines.append(
            f"  error rate {summary['error_rate']:.4f} exceeds --max_error_rate {summary['max_error_rate']}"
            if summary["max_error_rate"] is not None and summary["state"] == "DONE"
            else f"  the job ended in state {summary['state']}"
        )
    return "\n".join(lines)
