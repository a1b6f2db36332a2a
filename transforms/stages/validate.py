"""ValidateRecords: a target profile's limits and error rules, columnar, on every batch.

Where it sits: Read -> Normalize -> ValidateRecords -> CheckFiles -> AssignSplit -> writers.
The rules here need nothing but the columns (image size and format as the manifest gives them,
labels and boxes per image, buckets, the issues found while parsing), so they run on every
batch as Arrow expressions: no threads, no shuffle, no Python dict per row. They run before
CheckFiles so that a record the profile refuses never costs a fetch or a decode; CheckFiles
applies the same size rules again to the images whose size it has just probed.

A finding the profile makes an error sends its record to the dead letters (stage `validate`);
the others are appended to the record's `issues` as warnings. Warnings found while parsing that
the profile rejects (e.g. BBOX_OUT_OF_RANGE under azure_automl) are escalated here too.
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from transforms import errors, schema
from transforms.checks import numbers, profiles
from transforms.stages.accounting import Accounted

STAGE = errors.VALIDATE


def judge(batch: pa.RecordBatch, profile: profiles.Profile, found: list[tuple[int, str, str]], stage: str):
    """Findings -> (the batch of kept rows with warnings appended, dead letters of the others).

    A row with any finding the profile makes an error is refused with its first such finding
    (the others named in the message); warnings go to the kept rows' issues."""
    severe: dict[int, list[tuple[str, str]]] = {}
    warnings = []
    for row, code, message in found:
        if profile.severity(code) == errors.ERROR:
            severe.setdefault(row, []).append((code, message))
        else:
            warnings.append((row, code, errors.WARNING, message))
    batch = schema.append_issues(batch, warnings)
    if not severe:
        return batch, []
    refused = sorted(severe)
    letters = []
    for row, index in zip(batch.take(pa.array(refused, pa.int64())).to_pylist(), refused):
        (code, message), others = severe[index][0], severe[index][1:]
        text = f"the {profile.name} profile rejects {code}: {message}"
        if others:
            text += "; also " + ", ".join(c for c, _ in others)
        letters.append(errors.row_dead_letter(row, stage, code, text))
    keep = pc.invert(pc.is_in(pa.array(range(batch.num_rows), pa.int64()), value_set=pa.array(refused, pa.int64())))
    return batch.filter(keep), letters


def parse_time_findings(batch: pa.RecordBatch, profile: profiles.Profile) -> list[tuple[int, str, str]]:
    """Issues recorded while parsing whose code the profile makes an error (escalated)."""
    if not profile.errors or batch.num_rows == 0:
        return []
    issues = batch.column("issues")
    flat = pc.list_flatten(issues)
    hits = pc.is_in(pc.struct_field(flat, "code"), value_set=pa.array(sorted(profile.errors), pa.string()))
    if not pc.any(hits).as_py():
        return []
    rows = pc.filter(pc.list_parent_indices(issues), hits).to_pylist()
    codes = pc.filter(pc.struct_field(flat, "code"), hits).to_pylist()
    messages = pc.filter(pc.struct_field(flat, "message"), hits).to_pylist()
    return list(zip(rows, codes, messages))


class _ValidateRecordsFn(beam.DoFn):
    def __init__(self, profile_name: str):
        self._profile_name = profile_name

    def setup(self):
        self._profile = profiles.get_profile(self._profile_name)
        # Non-finite numbers are refused whatever the profile (no writer can represent them).
        self._strict = dataclasses.replace(self._profile, errors=self._profile.errors | {errors.COORDINATE_NOT_FINITE})

    def process(self, batch: pa.RecordBatch):
        escalated = parse_time_findings(batch, self._profile)
        # A parse-time finding is already in the row's issues: only the new findings append.
        found = profiles.record_findings(batch, self._profile) + numbers.non_finite_findings(batch)
        kept, letters = judge(batch, self._strict, found, STAGE)
        if escalated:
            kept, more = _refuse_escalated(kept, batch, escalated, self._profile)
            letters += more
        for letter in letters:
            yield beam.pvalue.TaggedOutput(errors.DEAD_LETTERS, letter)
        if kept.num_rows:
            yield kept


def _refuse_escalated(kept: pa.RecordBatch, original: pa.RecordBatch, escalated, profile):
    """Rows whose parse-time warnings the profile rejects -> dead letters (by record_id)."""
    first: dict[int, tuple[str, str]] = {}
    for row, code, message in escalated:
        first.setdefault(row, (code, message))
    ids = pc.take(original.column("record_id"), pa.array(sorted(first), pa.int64()))
    by_id = dict(zip(ids.to_pylist(), (first[i] for i in sorted(first))))
    refuse = pc.is_in(kept.column("record_id"), value_set=ids)
    letters = []
    for row in kept.filter(refuse).to_pylist():
        code, message = by_id[row["record_id"]]
        letters.append(errors.row_dead_letter(row, STAGE, code, f"the {profile.name} profile rejects {code}: {message}"))
    return kept.filter(pc.invert(refuse)), letters


@beam.typehints.with_input_types(pa.RecordBatch)
class ValidateRecords(beam.PTransform):
    """RecordBatches -> {main: kept RecordBatches, dead_letters, ledger} under a target profile."""

    def __init__(self, profile_name: str = "none"):
        super().__init__()
        profiles.get_profile(profile_name)  # a wrong name fails at construction
        self._profile_name = profile_name

    def expand(self, batches):
        return batches | Accounted(STAGE, _ValidateRecordsFn(self._profile_name))
