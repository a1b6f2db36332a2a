"""Record judging: findings -> kept rows with warnings, or dead letters, under a profile.

Beam-free: ValidateRecords and CheckFiles (transforms/stages/) call it on each batch. A finding
the profile makes an error refuses its record (the first such finding names the refusal, the
others are listed in the message); every other finding is appended to the record's `issues` as a
warning. Parse-time issues the profile rejects are escalated here too.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms import errors, schema
from transforms.checks import numbers, profiles


@dataclasses.dataclass
class Findings:
    """Findings on the rows of one batch, as columns: a check that finds the same thing on
    thousands of rows (a reference outside the allowed roots) hands them on without a Python
    tuple per row. Row indices, codes and messages, one entry per finding."""

    rows: np.ndarray  # int64
    codes: pa.Array  # string
    messages: pa.Array  # string

    @classmethod
    def of(cls, found) -> Findings:
        """Findings from (row, code, message) tuples (or Findings, as they are)."""
        if isinstance(found, Findings):
            return found
        return cls(np.array([f[0] for f in found], np.int64), pa.array([f[1] for f in found], pa.string()),
                   pa.array([f[2] for f in found], pa.string()))

    def __len__(self) -> int:
        return len(self.rows)

    def __add__(self, other: Findings) -> Findings:
        if not len(other):
            return self
        if not len(self):
            return other
        return Findings(np.concatenate([self.rows, other.rows]), pa.concat_arrays([self.codes, other.codes]),
                        pa.concat_arrays([self.messages, other.messages]))

    def sorted(self) -> Findings:
        """By row, stably: a row's findings keep their order."""
        order = np.argsort(self.rows, kind="stable")
        if (order == np.arange(len(order))).all():
            return self
        taken = pa.array(order)
        return Findings(self.rows[order], self.codes.take(taken), self.messages.take(taken))

    def where(self, keep: np.ndarray) -> Findings:
        mask = pa.array(keep)
        return Findings(self.rows[keep], self.codes.filter(mask), self.messages.filter(mask))

    def counts(self) -> dict[str, int]:
        """Findings per code, in the order the codes first occur."""
        counts: dict[str, int] = {}
        if len(self):
            for item in pc.value_counts(self.codes).to_pylist():
                counts[item["values"]] = item["counts"]
        return counts

    def tuples(self) -> list[tuple[int, str, str]]:
        return list(zip(self.rows.tolist(), self.codes.to_pylist(), self.messages.to_pylist()))


def append_warnings(batch: pa.RecordBatch, found: Findings) -> pa.RecordBatch:
    """schema.append_issues of `found` as warnings, built from the columns (no dict per row):
    each row's own issues first, then its findings in their order."""
    if not len(found):
        return batch
    issues = batch.column("issues")
    new_issues = pa.StructArray.from_arrays(
        [found.codes, pa.repeat(pa.scalar(errors.WARNING, pa.string()), len(found)), found.messages],
        fields=list(schema.ISSUE),
    )
    old_rows = pc.list_parent_indices(issues).to_numpy(zero_copy_only=False).astype(np.int64)
    rows = np.concatenate([old_rows, found.rows])
    order = np.argsort(rows, kind="stable")  # a row's own issues keep their place, first
    counts = np.bincount(rows, minlength=batch.num_rows)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    flat = pa.concat_arrays([pc.list_flatten(issues), new_issues]).take(pa.array(order))
    column = pa.ListArray.from_arrays(offsets, flat, type=schema.SCHEMA.field("issues").type)
    return batch.set_column(batch.schema.get_field_index("issues"), "issues", column)


def judge(batch: pa.RecordBatch, profile: profiles.Profile, found, stage: str):
    """Findings (row, code, message tuples, or Findings) -> (the batch of kept rows with
    warnings appended, dead letters of the others).

    A row with any finding the profile makes an error is refused with its first such finding
    (the others named in the message); warnings go to the kept rows' issues."""
    found = Findings.of(found)
    if not len(found):
        return batch, []
    codes = pc.unique(found.codes).to_pylist()
    errors_named = [code for code in codes if profile.severity(code) == errors.ERROR]
    is_error = pc.is_in(found.codes, value_set=pa.array(errors_named, pa.string())).to_numpy(zero_copy_only=False) if errors_named else np.zeros(len(found), bool)
    batch = append_warnings(batch, found.where(~is_error))
    severe: dict[int, list[tuple[str, str]]] = {}
    for row, code, message in found.where(is_error).tuples():
        severe.setdefault(row, []).append((code, message))
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
