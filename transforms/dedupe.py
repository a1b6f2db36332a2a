"""Several records of one image: when their labels conflict, which one a policy keeps, and how
records are merged. Beam-free; transforms/stages/dedupe.py groups the records of one image (by
the split key of its URI) and calls `resolve` on each group.

The rules (docs/formats.md, "Duplicates across sources"):

- Records of one image are ordered by `order_key`: the source file's URI, then the line, the
  byte offset, the label attribute / annotation id, and the record id. `first` keeps the
  smallest; `merge` builds on it. The order never depends on which worker saw a record first.
- A prediction never replaces, and is never merged into, a ground-truth record: `first` and
  `merge` act on the records of one origin.
- Labels conflict when the ground-truth records of an image that carry image-level labels do not
  all carry the same set of names (the rule stats/duplicates.parquet reports).
"""

from __future__ import annotations

import copy
import dataclasses

from transforms import errors
from transforms.schema import issue

KEEP_ALL, FIRST, MERGE, ERROR = "keep_all", "first", "merge", "error"
POLICIES = (KEEP_ALL, FIRST, MERGE, ERROR)
# What happened to a record a policy took out of the output (counted per file in run.json).
SUPERSEDED, MERGED = "superseded", "merged"
FOLDED_OUTCOMES = (SUPERSEDED, MERGED)

GROUND_TRUTH = "ground_truth"
# Sources named in one issue message, at most (the count is always complete).
NAMED_SOURCES = 10


def label_signature(labels: list[dict] | None) -> str:
    """The sorted, distinct image-level label names of a record, as one comparable string."""
    return ",".join(sorted({label.get("name") or "" for label in labels or []}))


def conflicting_label_sets(rows: list[dict]) -> list[str]:
    """The distinct label sets of the ground-truth records that carry image labels, when there
    is more than one of them (else [])."""
    found = sorted({label_signature(r.get("labels")) for r in rows if r.get("origin") == GROUND_TRUTH and r.get("labels")})
    return found if len(found) > 1 else []


def order_key(row: dict) -> tuple:
    """The documented order of the records of one image: `first` keeps the smallest."""
    source = row.get("source") or {}
    return (source.get("uri") or "", source.get("line") or 0, source.get("offset") or 0, source.get("attribute") or "", row.get("record_id") or "")


def where(row: dict) -> str:
    source = row.get("source") or {}
    return f"{source.get('uri') or '?'} line {source.get('line') or 0}"


def _named(rows: list[dict]) -> str:
    named = ", ".join(where(r) for r in rows[:NAMED_SOURCES])
    return named + (f" and {len(rows) - NAMED_SOURCES} more" if len(rows) > NAMED_SOURCES else "")


@dataclasses.dataclass
class Resolution:
    """What a policy made of the records of one image."""

    kept: list[dict] = dataclasses.field(default_factory=list)
    refused: list[tuple[dict, str]] = dataclasses.field(default_factory=list)  # (row, message): dead letters
    removed: list[tuple[dict, str]] = dataclasses.field(default_factory=list)  # (row, SUPERSEDED | MERGED)


def resolve(rows: list[dict], policy: str) -> Resolution:
    """The records of one image -> what `policy` keeps, refuses and takes out (see the module)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown duplicate policy {policy!r}; known: {', '.join(POLICIES)}")
    rows = sorted(rows, key=order_key)
    if len(rows) < 2:
        return Resolution(kept=rows)
    conflict = conflicting_label_sets(rows)
    message = ""
    if conflict:
        message = f"{len(rows)} records of this image disagree on image labels ({' / '.join(s or '-' for s in conflict)}): {_named(rows)}"
    if conflict and policy == ERROR:
        return Resolution(refused=[(row, message) for row in rows])
    result = Resolution()
    for origin_rows in _by_origin(rows):
        if policy in (KEEP_ALL, ERROR) or len(origin_rows) == 1:
            result.kept += origin_rows
        elif policy == FIRST:
            kept, others = origin_rows[0], origin_rows[1:]
            kept = _with_issue(kept, errors.DUPLICATE_SUPERSEDED, f"kept over {len(others)} other record(s) of this image (--on_duplicate first): {_named(others)}")
            result.kept.append(kept)
            result.removed += [(row, SUPERSEDED) for row in others]
        else:
            merged = merge_rows(origin_rows)
            others = origin_rows[1:]
            merged = _with_issue(merged, errors.DUPLICATES_MERGED, f"merged with {len(others)} other record(s) of this image (--on_duplicate merge): {_named(others)}")
            result.kept.append(merged)
            result.removed += [(row, MERGED) for row in others]
    if conflict:
        result.kept = [_with_issue(row, errors.CONFLICTING_LABELS, message) for row in result.kept]
    return result


def _by_origin(rows: list[dict]) -> list[list[dict]]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row.get("origin") or "", []).append(row)
    return list(groups.values())


def _with_issue(row: dict, code: str, message: str) -> dict:
    row = dict(row)
    row["issues"] = [*(row.get("issues") or []), issue(code, message, errors.default_severity(code))]
    return row


def merge_rows(rows: list[dict]) -> dict:
    """Records of one image and origin, in `order_key` order -> one record: the first record's
    provenance and fields, the union of the image-level labels (by name, the first score) and of
    the distinct objects, the first known image size and mask, every record's issues."""
    base = copy.deepcopy(rows[0])
    labels, names = [], set()
    objects, seen = [], set()
    issues, seen_issues = [], set()
    for row in rows:
        for label in row.get("labels") or []:
            if label.get("name") not in names:
                names.add(label.get("name"))
                labels.append(label)
        for obj in row.get("objects") or []:
            key = errors.row_json(obj)
            if key not in seen:
                seen.add(key)
                objects.append(obj)
        for found in row.get("issues") or []:
            key = (found.get("code"), found.get("message"))
            if key not in seen_issues:
                seen_issues.add(key)
                issues.append(found)
    base["labels"], base["objects"], base["issues"] = labels, objects, issues
    image = base.get("image") or {}
    if not (image.get("width") and image.get("height")):
        sized = next((r["image"] for r in rows if (r.get("image") or {}).get("width") and r["image"].get("height")), None)
        if sized:
            base["image"] = {**image, "width": sized["width"], "height": sized["height"]}
    if not (base.get("mask") or {}).get("uri"):
        masked = next((r["mask"] for r in rows if (r.get("mask") or {}).get("uri")), None)
        if masked:
            base["mask"] = masked
    base["task"] = merged_task(rows, labels, objects)
    return base


def merged_task(rows: list[dict], labels: list[dict], objects: list[dict]) -> str:
    """One task for a merged record: that of the first record with objects when it has objects,
    else of the first with labels (multilabel_classification once it holds several names)."""
    if objects:
        return next(r["task"] for r in rows if r.get("objects"))
    if labels:
        task = next(r["task"] for r in rows if r.get("labels"))
        return "multilabel_classification" if task == "classification" and len(labels) > 1 else task
    return rows[0].get("task")
