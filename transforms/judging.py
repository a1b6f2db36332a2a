"""Record judging: findings -> kept rows with warnings, or dead letters, under a profile.

Beam-free: ValidateRecords and CheckFiles (transforms/stages/) call it on each batch. A finding
the profile makes an error refuses its record (the first such finding names the refusal, the
others are listed in the message); every other finding is appended to the record's `issues` as a
warning. Parse-time issues the profile rejects are escalated here too.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.compute as pc

from transforms import errors, schema
from transforms.checks import numbers, profiles


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


def with_errors(profile: profiles.Profile, *codes: str) -> profiles.Profile:
    """`profile` with `codes` made errors too (e.g. INTERNAL_ERROR, COORDINATE_NOT_FINITE)."""
    return dataclasses.replace(profile, errors=profile.errors | set(codes))


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


def refuse_escalated(kept: pa.RecordBatch, original: pa.RecordBatch, escalated, profile: profiles.Profile, stage: str):
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
        letters.append(errors.row_dead_letter(row, stage, code, f"the {profile.name} profile rejects {code}: {message}"))
    return kept.filter(pc.invert(refuse)), letters


def validate_batch(batch: pa.RecordBatch, profile: profiles.Profile, stage: str = errors.VALIDATE):
    """A profile's record rules on one batch -> (kept rows, dead letters). Non-finite numbers are
    refused whatever the profile (no writer can represent them)."""
    escalated = parse_time_findings(batch, profile)
    # A parse-time finding is already in the row's issues: only the new findings append.
    found = profiles.record_findings(batch, profile) + numbers.non_finite_findings(batch)
    kept, letters = judge(batch, with_errors(profile, errors.COORDINATE_NOT_FINITE), found, stage)
    if escalated:
        kept, more = refuse_escalated(kept, batch, escalated, profile, stage)
        letters += more
    return kept, letters
