"""The ledger: one interface through which every stage reports what it read, kept and refused.

Counts are kept per input file (its URI) and per stage, in a bundle-scoped `Ledger`, and leave
each bundle once (finish_bundle) on the LEDGER tag as (uri, counts) pairs. `MergeCounters` sums
them per file; `WriteCounters` writes the merged table, which the driver reads once the job is
done and checks with `reconcile`:

- lines: per file, lines == ok + dead letters + blank, and the reader saw every line the
  byte-range pre-count found (`complete`);
- flow: per file and record stage, rows in == rows out + rows refused (+ rows superseded or
  merged into a kept row, --on_duplicate first / merge), and every stage's input
  is the previous stage's output, so a step that drops rows without saying so, or a stage that
  forgot to report, breaks the chain where it happened;
- landed: per output, the rows its published files hold (Parquet footers, manifest elements,
  dead-letter lines, counted by the writer's finalize step from the files themselves) equal the
  rows given to its writer minus those the writer refused.

Record stages do not count by hand: `Accounted(stage, fn)` wraps a DoFn and counts the rows of
every RecordBatch that goes in and comes out, and every dead letter it emits.
"""

from __future__ import annotations

import collections
from typing import Any, Iterable

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.transforms.window import GlobalWindows

from transforms import errors, storage
from transforms.dedupe import FOLDED_OUTCOMES
from transforms.stages.coders import of_record_batches

LEDGER = "ledger"
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
    counted = pc.value_counts(pc.struct_field(batch.column("source"), "uri"))
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

    def emit(self, windowed: bool = True) -> Iterable:
        """(uri, counts) pairs on the LEDGER tag; windowed for finish_bundle."""
        for uri, counts in self._counts.items():
            value = (uri, counts)
            yield beam.pvalue.TaggedOutput(LEDGER, GlobalWindows.windowed_value(value) if windowed else value)
        self._counts = collections.defaultdict(dict)


class _AccountedFn(beam.DoFn):
    """Runs `inner` and counts, per file, the rows it was given, emitted and refused."""

    def __init__(self, stage: str, inner: beam.DoFn, count_warnings: bool = False):
        self._stage = stage
        self._inner = inner
        self._count_warnings = count_warnings

    def setup(self):
        self._inner.setup()

    def start_bundle(self):
        self._ledger = Ledger()
        self._inner.start_bundle()

    def process(self, batch):
        self._ledger.rows_in(self._stage, batch)
        yield from self._count(self._inner.process(batch))

    def finish_bundle(self):
        yield from self._count(self._inner.finish_bundle())
        yield from self._ledger.emit()

    def teardown(self):
        self._inner.teardown()

    def _count(self, outputs):
        for output in outputs or ():
            value = output.value if isinstance(output, beam.pvalue.TaggedOutput) else output
            value = getattr(value, "value", value)  # finish_bundle outputs are WindowedValues
            if isinstance(output, beam.pvalue.TaggedOutput):
                if output.tag == errors.DEAD_LETTERS:
                    self._ledger.refused(self._stage, value)
                elif output.tag == LEDGER:
                    pass
            elif isinstance(value, pa.RecordBatch):
                self._ledger.rows_out(self._stage, value)
                if self._count_warnings:
                    self._ledger.warnings(value)
            yield output


class Accounted(beam.PTransform):
    """ParDo(fn) whose rows are counted per file under `stage`:
    -> {main: RecordBatches, dead_letters: dicts, ledger: (uri, counts)} (+ `extra_tags`).
    The last record stage also counts the warnings on the rows it passes on (count_warnings)."""

    def __init__(self, stage: str, fn: beam.DoFn, extra_tags: tuple[str, ...] = (), count_warnings: bool = False):
        super().__init__()
        self._stage = stage
        self._fn = fn
        self._extra_tags = extra_tags
        self._count_warnings = count_warnings

    def expand(self, batches):
        fn = _AccountedFn(self._stage, self._fn, self._count_warnings)
        outputs = batches | self._stage >> beam.ParDo(fn).with_outputs(
            errors.DEAD_LETTERS, LEDGER, *self._extra_tags, main="main"
        )
        of_record_batches(outputs["main"])
        return outputs


class MergeCounters(beam.CombineFn):
    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, counters):
        return merge_into(accumulator, counters)

    def merge_accumulators(self, accumulators):
        merged: dict = {}
        for accumulator in accumulators:
            merge_into(merged, accumulator)
        return merged

    def extract_output(self, accumulator):
        return accumulator


class _WriteJsonFn(beam.DoFn):
    def __init__(self, url: str, storage_config: storage.Storage):
        self._url = url
        self._storage = storage_config

    def process(self, items):
        self._storage.write_atomically(self._url, orjson.dumps(dict(items), option=orjson.OPT_SORT_KEYS))
        yield self._url


class WriteCounters(beam.PTransform):
    """Ledger PCollections -> one JSON object {uri: counts} at `url`, merged per file."""

    def __init__(self, url: str, storage_config: storage.Storage):
        super().__init__()
        self._url = url
        self._storage = storage_config

    def expand(self, ledgers):
        return (
            ledgers
            | "AllCounts" >> beam.Flatten()
            # Records carry their file's URL without userinfo; the reader's counts join them there.
            | "RedactKeys" >> beam.Map(lambda item: (storage.redact_url(item[0]), item[1]))
            | "MergePerFile" >> beam.CombinePerKey(MergeCounters())
            | "CollectCounters" >> beam.combiners.ToList()
            | "WriteCountersFile" >> beam.ParDo(_WriteJsonFn(self._url, self._storage))
        )


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
