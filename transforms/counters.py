"""Per-file counters for run.json: how every input line was accounted for.

Each stage emits (file uri, {counter: value}) pairs; MergeCounters sums them per file (nested
dicts add up key by key). The driver reads the merged file once the job is done.
"""

from __future__ import annotations

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from transforms import storage

# Read by the driver once the job is done, then removed with its hidden folder.
COUNTERS_FILE = ".labelbeam-tmp/counters.json"


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


def counters_of_dead_letters(letter: dict) -> tuple[str, dict]:
    return letter["source_uri"], {"dead_letter_codes": {letter["stage"]: {letter["code"]: 1}}}


def issue_counts(batch: pa.RecordBatch) -> list[tuple[str, dict]]:
    """(file uri, {"warnings": {code: n}}) for the issues on the kept records of a batch."""
    issues = batch.column("issues")
    flat = pc.list_flatten(issues)
    if len(flat) == 0:
        return []
    uris = pc.take(pc.struct_field(batch.column("source"), "uri"), pc.list_parent_indices(issues))
    table = pa.table({"uri": uris, "code": pc.struct_field(flat, "code")})
    counted = table.group_by(["uri", "code"], use_threads=False).aggregate([("code", "count")])
    per_file: dict[str, dict] = {}
    for row in counted.to_pylist():
        per_file.setdefault(row["uri"], {})[row["code"]] = row["code_count"]
    return [(uri, {"warnings": codes}) for uri, codes in per_file.items()]


class _WriteJsonFn(beam.DoFn):
    def __init__(self, url, storage_options):
        self._url = url
        self._storage_options = storage_options

    def process(self, items):
        storage.write_atomically(self._url, orjson.dumps(dict(items), option=orjson.OPT_SORT_KEYS), self._storage_options)
        yield self._url


class WriteCounters(beam.PTransform):
    """(uri, counters) pairs -> one JSON object {uri: counters} at `url`."""

    def __init__(self, url: str, storage_options: dict | None = None):
        super().__init__()
        self._url = url
        self._storage_options = storage_options

    def expand(self, counters):
        return (
            counters
            | "CollectCounters" >> beam.combiners.ToList()
            | "WriteCountersFile" >> beam.ParDo(_WriteJsonFn(self._url, self._storage_options))
        )
