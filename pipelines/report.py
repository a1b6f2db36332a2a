"""run.json: what ran, with which options, and the proof that nothing was lost.

The counts come from the ledger (transforms/ledger.py): what each stage read, kept
and refused per input file, and what each output's finalize step counted in the files it
published. Here they are checked: every input line is a record, a dead letter or a blank line;
every record stage passed on what it was given (or counted what it refused, and what a duplicate
policy folded into a kept record); every output holds what its writer was given
minus what it refused; and every file the writers counted is where they said. Any shortfall is
`data_loss` (exit code 3) and is said loudly.

Every file is checked, but run.json lists them only for an output of at most
`LISTED_FILES_MAX` files (YOLO writes a label file per image, --copy_images a file per copy:
listed, millions of images would make run.json hundreds of MB). Each output carries its
totals (`published_totals`: files, rows, bytes); the per-file records of every output go to
the staging folder's `FILE_RECORDS`, which the publish turns into `.labelbeam/published.json`.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import platform
from importlib import metadata

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.config import JobConfig
from pipelines.publish import FILE_RECORDS, REPORT_FILE, RUN_FILE
from pipelines.report_html import write_report_html
from transforms import errors, storage
from transforms.ledger import COUNTERS_FILE, OUTPUTS, file_entries, merge_into
from transforms.stages.stats import write_table
from transforms.stages.write import (
    ERRORS_OUTPUT,
    RECORDS_OUTPUT,
    REFUSED_FOLDER,
    ensure_records_dataset,
    file_record,
    manifests_output,
    refused_output,
)

EXIT_OK, EXIT_ERROR_RATE, EXIT_CONFIG, EXIT_DATA_LOSS, EXIT_INCOMPLETE, EXIT_FAILED = 0, 1, 2, 3, 4, 5
EXIT_MEANINGS = {
    EXIT_OK: "done; every input line accounted for; published with _SUCCESS",
    EXIT_ERROR_RATE: "done and published, but the error rate passed --max_error_rate",
    EXIT_CONFIG: "refused at launch",
    EXIT_DATA_LOSS: "data loss: an output holds fewer rows than it was given; not published",
    EXIT_INCOMPLETE: "incomplete input: a file was not read to its end; not published",
    EXIT_FAILED: "the job failed; not published",
}
NO_RECORDS_MEANING = "done and published, but no record was kept from input that was not blank (no _SUCCESS)"
# A run stopped by SIGINT / SIGTERM exits 128 + the signal's number before publishing
# (pipelines/interrupts.py); it writes no run.json.
EXIT_INTERRUPTED = {"SIGINT": 130, "SIGTERM": 143}


STATS_OUTPUT = "stats"
# An output of more files than this has its totals in run.json, its files in published.json.
LISTED_FILES_MAX = 1000
INPUTS_TABLE = "inputs.parquet"
_INPUT_COLUMNS = {
    "uri": pa.string(), "format": pa.string(), "layout": pa.string(), "bytes": pa.int64(),
    "lines": pa.int64(), "ok": pa.int64(), "dead_letters": pa.int64(), "blank": pa.int64(),
    "records": pa.int64(), "records_refused": pa.int64(), "records_superseded": pa.int64(), "records_merged": pa.int64(),
    "records_kept": pa.int64(),
    "warnings": pa.int64(), "complete": pa.bool_(), "reconciled": pa.bool_(),
}


def inputs_table(files: list[dict]) -> pa.Table:
    """run.json's per-file entries as stats/inputs.parquet (docs/statistics.md)."""
    rows = [
        {**{name: f.get(name) for name in _INPUT_COLUMNS}, "uri": storage.redact_url(f["uri"]), "warnings": sum(f["warnings"].values())}
        for f in files
    ]
    return pa.Table.from_pylist(rows, schema=pa.schema(list(_INPUT_COLUMNS.items())))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="milliseconds")


def _sorted(counts: dict) -> dict:
    return dict(sorted(counts.items()))


def totals_of(files: list[dict]) -> dict:
    names = ("lines", "ok", "dead_letters", "blank", "records", "records_refused", "records_superseded", "records_merged", "records_kept")
    totals = {name: sum(f[name] for f in files) for name in names}
    totals["files"] = len(files)
    merged: dict = {}
    for entry in files:
        refused = {stage: flow["refused"] for stage, flow in entry["stages"].items() if flow["refused"]}
        merge_into(merged, {"codes": entry["dead_letter_codes"], "refused": refused, "warnings": entry["warnings"],
                            "reasons": entry.get("warning_reasons", {}), "skipped": entry["skipped"]})
    codes = merged.get("codes", {})
    line_codes: dict = {}
    for stage in errors.LINE_STAGES:
        merge_into(line_codes, codes.get(stage, {}))
    totals["dead_letters_by_code"] = _sorted(line_codes)
    totals["warnings_by_code"] = _sorted(merged.get("warnings", {}))
    if merged.get("reasons"):  # a list, not {reason: n}: run.json's redaction would hide a key named *credentials*
        totals["warnings_by_reason"] = {
            code: [{"reason": reason, "count": n} for reason, n in sorted(counts.items())] for code, counts in sorted(merged["reasons"].items())
        }
    totals["refused_by_stage"] = {stage: _sorted(n) for stage, n in sorted(merged.get("refused", {}).items())}
    if merged.get("skipped"):
        totals["skipped"] = merged["skipped"]
    totals["complete"] = all(f["complete"] for f in files)
    totals["reconciled"] = all(f["reconciled"] for f in files)
    return totals


def expected_rows(output: str, counted: dict, totals: dict) -> int:
    """Rows the stages produced for `output`: errors/ holds the lines and records the job refused,
    refused/<format> the rows that format's writer refused, the others every kept record."""
    if output == ERRORS_OUTPUT:
        return totals["dead_letters"] + totals["records_refused"]
    if output.startswith(REFUSED_FOLDER + "/"):
        writer = counted.get(manifests_output(output.split("/", 1)[1]), {})
        return int(writer.get("refused", 0)) + int(writer.get("refused_objects", 0))
    return totals["records_kept"]


def output_entries(counters: dict, outputs: list[str], totals: dict, staging: str, store: storage.Storage) -> dict:
    """Per output: given / refused / written / landed, the files, and any shortfall."""
    counted = counters.get(OUTPUTS, {})
    entries = {}
    for name in outputs:
        c = counted.get(name, {})
        given = int(c.get("in", 0))
        expected = expected_rows(name, counted, totals)
        entry = {
            "expected": expected,
            "given": given,
            "refused": int(c.get("refused", 0)),
            "refused_objects": int(c.get("refused_objects", 0)),
            "written": int(c.get("written", 0)),
            "landed": int(c.get("landed", 0)),
            "files": int(c.get("files", 0)),
            "bytes": int(c.get("bytes", 0)),
        }
        if "objects" in c:  # a manifest writer: objects given, refused alone, written, counted back
            entry["objects"] = {
                "given": int(c.get("objects", 0)),
                "refused": int(c.get("refused_objects", 0)),
                "written": int(c.get("objects_written", 0)),
                "other_jobs": int(c.get("objects_other_jobs", 0)),
            }
            if "objects_landed" in c:
                entry["objects"]["landed"] = int(c["objects_landed"])
        problems = []
        if "images" in c:  # --copy_images: images copied beside the labels, and those published whole
            entry["images"] = {key: int(c["images"].get(key, 0)) for key in ("copied", "landed", "bytes")}
            if entry["images"]["landed"] != entry["images"]["copied"]:
                problems.append(f"{entry['images']['landed']} copied images in its files with their size, {entry['images']['copied']} copied")
        if "landed" in entry.get("objects", {}) and entry["objects"]["landed"] != entry["objects"]["written"]:
            problems.append(f"{entry['objects']['landed']} objects in its files, {entry['objects']['written']} written")
        if given != expected:
            problems.append(f"{given} rows reached the writer, {expected} were produced for it")
        if entry["landed"] != given - entry["refused"]:
            problems.append(f"{entry['landed']} rows in its files, {given - entry['refused']} given to it and not refused")
        published = c.get("published", {})
        damaged = check_files(storage.join(staging, name), published, store)
        if damaged:
            problems.append(f"{len(damaged)} file(s) differ from what their writer counted, e.g. {damaged[0]}")
        entry["problems"] = problems
        entry["published"] = published  # per file: rows, bytes, sha256, as the finalize step read them
        entries[name] = entry
    return entries


def published_totals(published: dict) -> dict:
    """Files, rows and bytes of an output's per-file records (a bare row count: no bytes)."""
    records = [r if isinstance(r, dict) else {"rows": r} for r in published.values()]
    return {
        "files": len(records),
        "rows": sum(int(r.get("rows") or 0) for r in records),
        "bytes": sum(int(r.get("bytes") or 0) for r in records),
    }


def listed_in_run_json(entries: dict, limit: int | None = None) -> dict:
    """The outputs as run.json holds them: each with `published_totals`, and its per-file
    `published` only when it has at most `limit` files (`published_totals.listed` says which)."""
    limit = LISTED_FILES_MAX if limit is None else limit
    shown = {}
    for name, entry in entries.items():
        published = entry.get("published") or {}
        listed = len(published) <= limit
        shown[name] = {k: v for k, v in entry.items() if k != "published" or listed}
        shown[name]["published_totals"] = {**published_totals(published), "listed": listed}
    return shown


def check_files(root: str, published: dict, store: storage.Storage) -> list[str]:
    """Reads every file a writer counted, as it stands in the staging folder, and compares it with
    the finalize step's record (rows, bytes, sha256): '<name>: <what differs>' per file that is
    missing, of another size or content, or (Parquet) whose footer cannot be read or holds other
    rows. The files are read in a few threads; the pool is closed before this returns."""
    fs, path = store.fs(root)

    def check(item: tuple[str, dict]) -> str | None:
        name, expected = item
        if not isinstance(expected, dict):  # a bare row count: nothing else to compare
            expected = {"rows": expected}
        target = path.rstrip("/") + "/" + name
        try:
            if "sha256" in expected:
                seen = file_record(fs, target, "." + name.rsplit(".", 1)[-1], "jsonl")
                for key in ("bytes", "sha256"):
                    if seen[key] != expected[key]:
                        return f"{name}: {key} {seen[key]} != {expected[key]} counted"
            elif not fs.exists(target):
                return f"{name}: not found"
            if name.endswith(".parquet"):
                with fs.open(target, "rb") as handle:
                    rows = pq.ParquetFile(handle).metadata.num_rows
                if rows != expected.get("rows", rows):
                    return f"{name}: {rows} rows != {expected['rows']} counted"
        except FileNotFoundError:
            return f"{name}: not found"
        except (pa.ArrowInvalid, OSError) as exc:
            if storage.failure_reason(exc) not in (None, storage.IO_ERROR, storage.NOT_FOUND):
                raise  # storage failing, not a damaged file: exit 5, not 3
            return f"{name}: unreadable ({str(exc).splitlines()[0][:120]})"
        return None

    if not published:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(published)), thread_name_prefix="labelbeam-check") as pool:
        found = list(pool.map(check, sorted(published.items())))
    return [problem for problem in found if problem]


def write_run_report(
    job: JobConfig,
    pipeline_options: dict,
    staging: str,
    run_id: str,
    record_stages: tuple[str, ...],
    outputs: list[str],
    started: float,
    finished: float,
    state: str,
) -> dict:
    """Reads the job's counters, writes run.json into the run's staging folder, returns it."""
    store = job.storage_config()
    counters_url = storage.join(staging, COUNTERS_FILE)
    failure = None if state == "DONE" else f"the job ended in state {state}"
    counters: dict = {}
    if failure is None:
        try:
            counters = orjson.loads(store.read_bytes(counters_url))
        except FileNotFoundError:
            failure = "the job finished but left no counters: nothing can be proven, nothing is published"
        except (OSError, orjson.JSONDecodeError) as exc:
            failure = f"the job's counters cannot be read ({exc}): nothing is published"
    if failure is None:
        ensure_records_dataset(storage.join(staging, RECORDS_OUTPUT), store, job.write.records_partitions())
    files = file_entries(counters, list(record_stages))
    totals = totals_of(files)
    output_checks = output_entries(counters, outputs, totals, staging, store) if failure is None else {}
    data_loss = {name: {"produced": e["expected"], "given": e["given"], "landed": e["landed"], "problems": e["problems"]} for name, e in output_checks.items() if e["problems"]}
    flow_breaks = {f["uri"]: f["flow_breaks"] for f in files if f["flow_breaks"]}
    lines_unaccounted = [f["uri"] for f in files if f["complete"] and f["lines"] != f["ok"] + f["dead_letters"] + f["blank"]]
    if flow_breaks or lines_unaccounted:
        data_loss["stages"] = {"flow_breaks": flow_breaks, "lines_unaccounted": lines_unaccounted}
    incomplete = [{"uri": f["uri"], "lines_read": f["lines"], "lines_expected": f["expected_lines"], "incomplete_reads": f["incomplete_reads"]} for f in files if not f["complete"]]
    error_rate = totals["dead_letters"] / totals["lines"] if totals["lines"] else 0.0
    # input that was not blank, and not one record kept from it: never a success (no _SUCCESS)
    nothing_kept = totals["lines"] > totals["blank"] and totals["records_kept"] == 0
    if failure is not None:
        code = EXIT_FAILED
    elif data_loss:
        code = EXIT_DATA_LOSS
    elif incomplete:
        code = EXIT_INCOMPLETE
    elif nothing_kept:
        code = EXIT_ERROR_RATE
    elif job.max_error_rate is not None and error_rate > job.max_error_rate:
        code = EXIT_ERROR_RATE
    else:
        code = EXIT_OK
    totals["records_written"] = output_checks.get(RECORDS_OUTPUT, {}).get("landed", 0)
    summary = {
        "labelbeam": _version("labelbeam"),
        "run_id": run_id,
        "state": state,
        "failure": failure,
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "seconds": round(finished - started, 3),
        "inputs": [storage.redact_url(p) for p in job.input],
        "output": storage.redact_url(job.output),
        "options": {"job": job.redacted(), "pipeline": storage.redact(pipeline_options)},
        "versions": {
            "python": platform.python_version(),
            "apache-beam": _version("apache-beam"),
            "pyarrow": _version("pyarrow"),
            "fsspec": _version("fsspec"),
        },
        "totals": totals,
        "outputs": listed_in_run_json(output_checks),
        "data_loss": data_loss,
        "incomplete_files": incomplete,
        "files": files,
        "error_rate": round(error_rate, 6),
        "max_error_rate": job.max_error_rate,
        "exit_code": code,
        "exit_meaning": NO_RECORDS_MEANING if code == EXIT_ERROR_RATE and nothing_kept else EXIT_MEANINGS[code],
        "no_records_kept": nothing_kept,
    }
    # every output's every file, for .labelbeam/published.json (written first: run.json names it)
    file_records = {"run_id": run_id, "outputs": {name: e["published"] for name, e in output_checks.items()}}
    store.write_atomically(storage.join(staging, FILE_RECORDS), orjson.dumps(file_records))
    store.write_atomically(storage.join(staging, RUN_FILE), orjson.dumps(storage.redact(summary), option=orjson.OPT_INDENT_2))
    if files:
        write_table(store, storage.join(staging, STATS_OUTPUT, INPUTS_TABLE), inputs_table(files))
    write_report_html(staging, storage.redact(summary), store)
    counters_path = store.fs(counters_url)
    if counters_path[0].exists(counters_path[1]):
        counters_path[0].rm(counters_path[1])
    return summary


def _reasons(counts: list[dict] | None) -> str:
    listed = ", ".join(f"{c['reason']} {c['count']}" for c in counts or ())
    return f" ({listed})" if listed else ""


def describe(summary: dict, where: str) -> str:
    """The short summary the CLI prints."""
    totals = summary["totals"]
    lines = [f"labelbeam: {summary['state']} in {summary['seconds']:.1f}s (run {summary['run_id']})"]
    if summary["failure"]:
        lines.append(f"  FAILED: {summary['failure']}")
    lines += describe_counts(summary, where)
    for name, entry in summary["outputs"].items():
        if name.startswith("manifests/"):
            refused = ""
            if entry["refused"]:
                folder = storage.join(where, refused_output(name.split("/", 1)[1]))
                refused = f"; {entry['refused']} refused: the format cannot hold them (still in records/) -> {folder}"
            objects = entry.get("objects") or {}
            if objects.get("refused") or objects.get("other_jobs"):  # objects left out of written records
                parts = [f"{objects['refused']} refused alone"] if objects.get("refused") else []
                parts += [f"{objects['other_jobs']} of other label jobs (--label_attribute)"] if objects.get("other_jobs") else []
                refused += f"; objects: {', '.join(parts)}"
            images = entry.get("images")
            copied = f" ({images['landed']} of them images copied beside the labels)" if images else ""
            lines.append(f"  {name}: {entry['landed']} written in {entry['files']} file(s){copied}{refused}")
    if totals["dead_letters_by_code"]:
        codes = ", ".join(f"{code} {n}" for code, n in totals["dead_letters_by_code"].items())
        lines.append(f"  dead letters by code: {codes} -> {storage.join(where, 'errors')}")
    if totals["warnings_by_code"]:
        reasons = totals.get("warnings_by_reason", {})
        listed = ", ".join(f"{code} {n}{_reasons(reasons.get(code))}" for code, n in totals["warnings_by_code"].items())
        lines.append(f"  warnings on kept records: {listed}")
    for stage, codes in totals["refused_by_stage"].items():
        listed = ", ".join(f"{code} {n}" for code, n in codes.items())
        lines.append(f"  records refused at stage {stage}: {listed}")
    if totals["records_superseded"] or totals["records_merged"]:
        lines.append(f"  records folded by --on_duplicate (counted, not written on their own): superseded {totals['records_superseded']}, merged {totals['records_merged']}")
    if totals.get("skipped"):
        lines.append("  skipped on purpose: " + ", ".join(f"{k} {v}" for k, v in totals["skipped"].items()))
    for entry in summary["incomplete_files"]:
        lines.append(f"  INCOMPLETE: {entry['uri']}: {entry['lines_read']} of {entry['lines_expected']} lines read")
    for name, loss in summary["data_loss"].items():
        if name == "stages":
            for uri, breaks in loss["flow_breaks"].items():
                lines.append(f"  DATA LOSS in {uri}: {'; '.join(breaks)}")
            for uri in loss["lines_unaccounted"]:
                lines.append(f"  DATA LOSS: lines of {uri} are not accounted for")
        else:
            lines.append(f"  DATA LOSS in {name}: {'; '.join(loss['problems'])}")
    lines.append(f"  statistics in {storage.join(where, 'stats')}; run report {storage.join(where, RUN_FILE)}, {storage.join(where, REPORT_FILE)}")
    if summary.get("no_records_kept"):
        lines.append(f"  NO RECORDS: {totals['lines'] - totals['blank']} input items that are not blank, and not one record kept "
                     "(every one a dead letter or refused): published without _SUCCESS")
    elif summary["exit_code"] == EXIT_ERROR_RATE:
        lines.append(f"  error rate {summary['error_rate']:.4f} exceeds --max_error_rate {summary['max_error_rate']}")
    lines.append(f"  exit {summary['exit_code']}: {summary['exit_meaning']}")
    return "\n".join(lines)


# What one input item is, by file layout: a JSON-array file (a Label Studio export) holds
# elements (tasks), not lines.
_ITEM_NAMES = {"jsonl": ("line", "lines"), "json_array": ("JSON-array element", "JSON-array elements"), "json_object": ("JSON document", "JSON documents")}


def input_items(files: list[dict]) -> dict[str, int]:
    """Input items per kind (lines, JSON-array elements, documents), for the summary."""
    items: dict[str, int] = {}
    for entry in files:
        kind = entry.get("layout") if entry.get("layout") in _ITEM_NAMES else "jsonl"
        items[kind] = items.get(kind, 0) + entry["lines"]
    return {names[items[kind] != 1]: items[kind] for kind, names in _ITEM_NAMES.items() if items.get(kind)}


def describe_counts(summary: dict, where: str) -> list[str]:
    """The input and record counts, each saying what it counts: an item is a line, or an element
    of a JSON array; one item can give several records (a Label Studio task gives one per
    annotation and one per prediction)."""
    totals = summary["totals"]
    kinds = input_items(summary["files"])
    parts = " + ".join(f"{n} {kind}" for kind, n in kinds.items())
    reconciled = "reconciled" if totals["reconciled"] else "NOT reconciled"
    out = [
        f"  input: {totals['lines']} items in {totals['files']} file(s){' = ' + parts if parts else ''}",
        f"    {totals['ok']} parsed, {totals['dead_letters']} dead letters (refused at read or parse), {totals['blank']} blank "
        f"({reconciled}: {totals['lines']} = {totals['ok']} + {totals['dead_letters']} + {totals['blank']})",
    ]
    if totals["records"] == totals["ok"]:
        made = f"  records: {totals['records']}, one per parsed item"
    else:
        made = (f"  records: {totals['records']} from the {totals['ok']} parsed items "
                "(an item can give several: a Label Studio task gives one per annotation and per prediction)")
    out.append(made)
    written = summary["outputs"].get(RECORDS_OUTPUT)
    kept = f"    {totals['records_refused']} refused by the record stages, {totals['records_kept']} kept"
    if written:
        kept += f"; {written['landed']} written to {storage.join(where, RECORDS_OUTPUT)}"
    out.append(kept)
    return out
