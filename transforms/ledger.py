"""The ledger's counts: what every stage read, kept and refused, per input file and per output.

Beam-free: a stage counts a bundle in a `Ledger` and hands its (uri, counts) pairs to the LEDGER
output once (transforms/stages/accounting.py wires that); the counts are summed per file
(`merge_into`) and written to COUNTERS_FILE, which the driver reads once the job is done and
checks (`file_entries`, `stage_flow`):

- lines: per file, lines == ok + dead letters + blank, and the reader saw every line the
  byte-range pre-count found (`complete`);
- flow: per file and record stage, rows in == rows out + rows refused (+ rows superseded or
  merged into a kept row, --on_duplicate first / merge), and every stage's input
  is the previous stage's output, so a step that drops rows without saying so, or a stage that
  forgot to report, breaks the chain where it happened;
- landed: per output, the rows its published files hold (Parquet footers, manifest elements,
  dead-letter lines, counted by the writer's finalize step from the files themselves) equal the
  rows given to its writer minus those the writer refused.
"""

from __future__ import annotations

import collections
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from transforms import errors, storage
from transforms.dedupe import FOLDED_OUTCOMES

# A storage reason as FILE_UNREADABLE messages name it ("<uri>: unreachable: ..." or "unreachable: ...").
_REASON_PATTERN = r"(?:^|: )(?P<reason>" + "|".join(storage.REASONS) + r"): "
# The key of counts that belong to an output, not to an input file.
OUTPUTS = "__outputs__"
# Read by the driver once the job is done (under the run's staging folder).
COUNTERS_FILE = ".labelbeam-counters.json"


def merge_into(target: dict, update: dict) -> dict:
    """Adds numbers, merges dicts, keeps the first non-null of anything else."""
    for key, value in update.items():
        if isinstance(value, dict):
            merge_into(target.setdefault(key, {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            target[key] = target.get(key, 0) + value
        elif target.get(key) is None:
            target[key] = value
    return target


def rows_by_file(batch: pa.RecordBatch) -> dict[str, int]:
    """Rows of a canonical batch per source file (columnar)."""
    if batch.num_rows == 0:
        return {}
    uris = pc.struct_field(batch.column("source"), "uri")
    first = uris[0]
    if uris.null_count == 0 and pc.all(pc.equal(uris, first)).as_py():  # a batch is one file's, most of the time
        return {first.as_py() or "": batch.num_rows}
    counted = pc.value_counts(uris)
    return {item["values"].as_py() or "": item["counts"].as_py() for item in counted}


class Ledger:
    """Counts of one bundle, per file; `emit()` hands them to the LEDGER output once."""

    def __init__(self):
        self._counts: dict[str, dict] = collections.defaultdict(dict)

    def add(self, uri: str, counts: dict) -> None:
        merge_into(self._counts[uri], counts)

    def rows_in(self, stage: str, batch: pa.RecordBatch) -> None:
        for uri, n in rows_by_file(batch).items():
            self.add(uri, {"stages": {stage: {"in": n}}})

    def rows_out(self, stage: str, batch: pa.RecordBatch) -> None:
        for uri, n in rows_by_file(batch).items():
            self.add(uri, {"stages": {stage: {"out": n}}})

    def warnings(self, batch: pa.RecordBatch) -> None:
        """Issues on the rows of a batch, per file and code (the kept records' warnings)."""
        issues = batch.column("issues")
        flat = pc.list_flatten(issues)
        if len(flat) == 0:
            return
        uris = pc.take(pc.struct_field(batch.column("source"), "uri"), pc.list_parent_indices(issues))
        table = pa.table({"uri": uris, "code": pc.struct_field(flat, "code")})
        counted = table.group_by(["uri", "code"], use_threads=False).aggregate([("code", "count")])
        for uri, code, n in zip(*(counted.column(c).to_pylist() for c in ("uri", "code", "code_count"))):
            self.add(uri, {"warnings": {code: n}})
        self._storage_reasons(table.append_column("message", pc.struct_field(flat, "message")))

    def _storage_reasons(self, issues: pa.Table) -> None:
        """FILE_UNREADABLE per storage reason (named in its message), so one outage reads as one
        cause with a count: `FILE_UNREADABLE 90122 (unreachable 90122)`."""
        unreadable = issues.filter(pc.equal(issues.column("code"), errors.FILE_UNREADABLE))
        if unreadable.num_rows == 0:
            return
        found = pc.extract_regex(unreadable.column("message"), _REASON_PATTERN)
        reasons = pc.fill_null(pc.struct_field(found, "reason"), "other")
        table = pa.table({"uri": unreadable.column("uri"), "reason": reasons})
        counted = table.group_by(["uri", "reason"], use_threads=False).aggregate([("reason", "count")])
        for uri, reason, n in zip(*(counted.column(c).to_pylist() for c in ("uri", "reason", "reason_count"))):
            self.add(uri, {"warning_reasons": {errors.FILE_UNREADABLE: {reason: n}}})

    def refused(self, stage: str, letter: dict) -> None:
        self.add(letter["source_uri"], {"stages": {stage: {"refused": {letter["code"]: 1}}}})

    def output(self, name: str, counts: dict) -> None:
        self.add(OUTPUTS, {name: counts})

    def drain(self) -> list[tuple[str, dict]]:
        """The (uri, counts) pairs counted so far, once: the ledger starts again empty."""
        pairs, self._counts = list(self._counts.items()), collections.defaultdict(dict)
        return pairs


# -- the driver's checks (plain Python) ------------------------------------------------------

_FILE_COUNTERS = ("lines", "ok", "dead_letters", "blank", "records")


def file_entries(counters: dict, record_stages: list[str]) -> list[dict]:
    """Merged per-file counts -> run.json `files` entries, each reconciled."""
    entries = []
    for uri in sorted(u for u in counters if u != OUTPUTS):
        counts = counters[uri]
        entry: dict[str, Any] = {"uri": uri, **{k: counts.get(k) for k in ("format", "layout", "bytes")}}
        entry.update({name: int(counts.get(name, 0)) for name in _FILE_COUNTERS})
        entry["skipped"] = counts.get("skipped", {})
        entry["dead_letter_codes"] = counts.get("dead_letter_codes", {})
        entry["warnings"] = dict(sorted(counts.get("warnings", {}).items()))
        entry["warning_reasons"] = counts.get("warning_reasons", {})
        entry["expected_lines"] = int(counts.get("expected_lines", entry["lines"]))
        entry["incomplete_reads"] = int(counts.get("incomplete_reads", 0))
        entry["complete"] = entry["lines"] == entry["expected_lines"] and not entry["incomplete_reads"]
        lines_ok = entry["lines"] == entry["ok"] + entry["dead_letters"] + entry["blank"]
        flow, broken = stage_flow(counts.get("stages", {}), entry["records"], record_stages)
        entry["stages"] = flow
        entry["flow_breaks"] = broken
        entry["records_refused"] = sum(sum(s.get("refused", {}).values()) for s in flow.values())
        for outcome in FOLDED_OUTCOMES:
            entry[f"records_{outcome}"] = sum(s.get(outcome, 0) for s in flow.values())
        entry["records_kept"] = flow[record_stages[-1]]["out"] if record_stages else entry["records"]
        entry["reconciled"] = entry["complete"] and lines_ok and not broken
        entries.append(entry)
    return entries


def stage_flow(stages: dict, records: int, order: list[str]) -> tuple[dict, list[str]]:
    """Each record stage's in / out / refused for one file, and where the chain breaks."""
    flow, broken, expected = {}, [], records
    for stage in order:
        counts = stages.get(stage, {})
        rows_in, rows_out = int(counts.get("in", 0)), int(counts.get("out", 0))
        refused = {code: int(n) for code, n in sorted(counts.get("refused", {}).items())}
        flow[stage] = {"in": rows_in, "out": rows_out, "refused": refused}
        # rows a kept row stands for (--on_duplicate first / merge): counted, neither out nor refused
        folded = {outcome: int(counts[outcome]) for outcome in FOLDED_OUTCOMES if outcome in counts}
        flow[stage].update(folded)
        if rows_in != expected:
            broken.append(f"{stage}: {rows_in} rows in, {expected} given by the stage before")
        if rows_in != rows_out + sum(refused.values()) + sum(folded.values()):
            taken = "".join(f" + {n} {outcome}" for outcome, n in folded.items())
            broken.append(f"{stage}: {rows_in} rows in, {rows_out} out + {sum(refused.values())} refused{taken}")
        expected = rows_out
    return flow, broken
