"""How the read stage cuts manifest files into shards, Beam-free: a file's layout, format and
shards (ShardPlanner), the lines each shard of a split file owns, and the line number each
shard starts from.

JSON-lines files are cut into byte-range shards so one big file is read by many workers; a
shard owns the lines that *start* inside it (transforms/shard_reader.py). Exact 1-based line
numbers need to know how many lines precede a shard: every shard of a split file counts the line
starts in its byte range (count_shard_lines, in parallel, I/O bound), and the counts of one file,
grouped, give each shard its first line number (with_line_bases). Gzip files, JSON arrays small
enough for one shard and single-object files are one shard each, numbered from 1. A large JSON
array is cut into parts at element starts (transforms/json_array.py). A file a format reads as a
document in parts (COCO: `ManifestFormat.plan_document`) is planned by that format: one shard
per part, each a byte range of one member's array elements.
"""

from __future__ import annotations

import dataclasses

from transforms import storage
from transforms.formats.base import ParseContext, detect_format, document_format, get_format
from transforms.read_layout import (
    JSON_ARRAY,
    JSON_ARRAY_PART,
    JSON_OBJECT,
    JSONL,
    JSONL_CR,
    compression_of,
    count_line_starts,
    cr_only,
    sample_records,
    sniff,
)
from transforms.shard_reader import open_manifest

DEFAULT_SHARD_SIZE = 64 << 20
DEFAULT_MAX_LINE_BYTES = 32 << 20
MIN_SHARD_SIZE = 1024
# A large file is cut into at least this many shards (of at least SPREAD_MIN_SHARD bytes, at
# most the configured shard size), so that a file of a few hundred MB still spreads over every
# worker of a small pool: 171 MB in 64 MB shards kept one of two workers idle a third of the run.
SPREAD_SHARDS = 32
SPREAD_MIN_SHARD = 4 << 20
# A shard of a file whose records reference files to check holds about this many of them, so
# per-record I/O spreads over every worker even when the manifest itself is small.
FILE_CHECKS_PER_SHARD = 200
# ... but a file is not cut into more shards than this for its file checks: every shard ends in
# a batch of its own, and a batch costs about 15 ms of fixed work to normalize, whatever its
# size (200,000 lines with 60,000 mask references, in process: 256 shards of 780 lines 20.7 s,
# 64 shards 14.3 s; 1,000,000 lines in 1,500 shards ran 3x slower than in 256).
MAX_FILE_CHECK_SHARDS = 64
_SAMPLE_BYTES = 256 << 10

# The layout of a file a format reads as a document in parts (ManifestFormat.plan_document).
DOCUMENT = "document"


@dataclasses.dataclass(frozen=True)
class Shard:
    uri: str
    index: int
    start: int
    end: int  # exclusive; -1 reads to the end of the file
    layout: str
    format: str | None
    compression: str | None = None
    line_base: int = 0  # lines of the file before this shard
    counted_lines: int = -1  # lines the pre-count found in this shard (-1: not counted)
    member: str = ""  # the document member the part's elements belong to (RawBatch.member)


@dataclasses.dataclass(frozen=True)
class FileChecks:
    """Which references the job opens per record: shards are sized so they spread."""

    masks: bool = False
    images: bool = False

    def share(self, rows: list[dict]) -> float:
        """The share of sampled rows with a file to check."""
        if not rows or not (self.masks or self.images):
            return 0.0
        def busy(row):
            if self.images and (row.get("image") or {}).get("uri"):
                return True
            if self.masks and ((row.get("mask") or {}).get("uri") or any(o.get("mask_rle") for o in row.get("objects") or [])):
                return True
            return False
        return sum(1 for row in rows if busy(row)) / len(rows)


NO_FILE_CHECKS = FileChecks()


def shard_bytes(shard_size: int, sample: list, line_bytes: float, fmt, checks: FileChecks, file_size: int = 0) -> int:
    """Bytes per shard: `shard_size`, smaller for a file that would be fewer than SPREAD_SHARDS
    shards, and smaller when records reference files to check, so that a shard holds about
    FILE_CHECKS_PER_SHARD of them (and the file is cut in at most MAX_FILE_CHECK_SHARDS)."""
    shard_size = min(shard_size, max(SPREAD_MIN_SHARD, file_size // SPREAD_SHARDS))
    if fmt is None or not sample or not (checks.masks or checks.images):
        return shard_size
    ctx = ParseContext(uri="sample", base_uri="")
    rows = []
    for obj in sample:
        try:
            rows.extend(fmt.parse(obj, ctx).rows)
        except Exception:  # noqa: BLE001 - a bad sample record only leaves the size as it is
            continue
    share = checks.share(rows)
    if share == 0:
        return shard_size
    per_checks = max(max(line_bytes, 1.0) * FILE_CHECKS_PER_SHARD / share, file_size / MAX_FILE_CHECK_SHARDS)
    return int(max(MIN_SHARD_SIZE, min(shard_size, per_checks)))


@dataclasses.dataclass
class FilePlan:
    """What planning one file gives: its ledger figures (None for a file that could not be
    opened: its one shard is `unreadable:`), its shards, and whether they are byte ranges of
    JSON lines whose line starts must be counted before they are read (`split`)."""

    counts: dict | None
    shards: list[Shard]
    split: bool = False


class ShardPlanner:
    """(uri, size) -> the file's FilePlan: its layout sniffed from its head, its format given
    or detected from a sample, and its shards sized by shard_bytes."""

    def __init__(self, format_name, shard_size, store, max_line_bytes=DEFAULT_MAX_LINE_BYTES, checks=NO_FILE_CHECKS):
        self._format_name = format_name
        self._shard_size = shard_size
        self._storage = store
        self._max_line_bytes = max_line_bytes
        self._checks = checks

    def plan(self, uri: str, size: int) -> FilePlan:
        compression = compression_of(uri)
        try:
            with open_manifest(uri, self._storage, compression) as handle:
                head = handle.read(_SAMPLE_BYTES)
                complete = len(head) < _SAMPLE_BYTES or not handle.read(1)
            layout = sniff(head, complete)
            if layout == JSONL and cr_only(head):
                layout = JSONL_CR
            name = self._format_name or document_format(head)
            sample = []
            if name is None or self._checks.masks or self._checks.images:
                head, complete, sample = self._sample(uri, compression, head, complete, layout)
            if name is None:
                name = detect_format(sample)
            parts = self._document_parts(uri, name, compression, size) if name else None
        except Exception as exc:  # noqa: BLE001 - an unreadable file is one dead letter, the job goes on
            return FilePlan(None, [Shard(uri, 0, 0, 0, "unreadable:" + storage.redact_url(str(exc))[:300], None, compression)])
        counts = {"format": name, "layout": DOCUMENT if parts is not None else layout, "bytes": size}
        if parts is not None:  # a document the format reads in parts (COCO): each part one shard
            return FilePlan(counts, [
                Shard(uri, index, start, end, JSON_ARRAY_PART, name, None, line_base=before, counted_lines=count, member=member)
                for index, (member, start, end, before, count) in enumerate(parts)
            ])
        if layout not in (JSONL, JSON_ARRAY) or compression:
            return FilePlan(counts, [Shard(uri, 0, 0, -1, layout, name, compression)])
        # JSON lines: the head holds more lines than the sample's first records, and its own
        # lines give their size; a JSON array: the sample's elements.
        line_bytes = len(head) / max(head.count(b"\n") if layout == JSONL else len(sample), 1)
        step = shard_bytes(self._shard_size, sample, line_bytes, get_format(name) if name else None, self._checks, size)
        parts = self._array_parts(uri, step) if layout == JSON_ARRAY and size > step else []
        if size <= step or (layout == JSON_ARRAY and len(parts) <= 1):
            return FilePlan(counts, [Shard(uri, 0, 0, -1, layout, name, compression)])
        if layout == JSON_ARRAY:
            return FilePlan(counts, [
                Shard(uri, index, start, end, JSON_ARRAY_PART, name, None, line_base=before, counted_lines=count)
                for index, (start, end, before, count) in enumerate(parts)
            ])
        shards = [Shard(uri, index, start, min(start + step, size), layout, name) for index, start in enumerate(range(0, size, step))]
        return FilePlan(counts, shards, split=True)

    def _document_parts(self, uri: str, name: str, compression, size: int) -> list | None:
        """The format's plan of a file it reads as a document in parts, or None (the format
        reads records: the file is planned by its layout)."""
        fmt = get_format(name)
        if not fmt.joins_documents:
            return None
        if compression:
            raise ValueError(f"a {name} document is read in parts, which a gzip stream cannot be: decompress it")
        step = min(self._shard_size, max(SPREAD_MIN_SHARD, size // SPREAD_SHARDS))
        return fmt.plan_document(lambda: open_manifest(uri, self._storage), step)

    def _array_parts(self, uri: str, step: int) -> list:
        """The parts of a large JSON array (one pass over it); [] when it is malformed, so
        that reading it whole reports where."""
        from transforms.json_array import JsonArrayError, plan_parts

        try:
            with open_manifest(uri, self._storage) as handle:
                return plan_parts(handle, step)
        except JsonArrayError:
            return []

    def _sample(self, uri, compression, head, complete, layout):
        if layout == JSON_OBJECT and not complete:
            # A pretty-printed document larger than the sample: detect from all of it
            # (bounded: a longer one is a LINE_TOO_LONG dead letter anyway).
            with open_manifest(uri, self._storage, compression) as handle:
                head = handle.read(self._max_line_bytes + 1)
            complete = len(head) <= self._max_line_bytes
        if layout == JSONL_CR:
            sample = sample_records(head.replace(b"\r", b"\n"), JSONL, complete)
        else:
            sample = sample_records(head, layout, complete)
        if not sample and layout == JSONL and not complete:
            # The first lines are longer than the sample: read on, bounded, to reach records.
            with open_manifest(uri, self._storage, compression) as handle:
                head = handle.read(2 * self._max_line_bytes)
            sample = sample_records(head, layout, len(head) < 2 * self._max_line_bytes)
        return head, complete, sample


def count_shard_lines(shard: Shard, store: storage.Storage) -> tuple[Shard, int]:
    """A shard of a split file and the lines it owns. A shard whose lines cannot be counted
    (storage failed) is not read: its line numbers, and those of the shards after it, cannot be
    known, so it is marked `unreadable:` (one READ_FAILED where it starts) with -1 lines."""
    try:
        with open_manifest(shard.uri, store) as handle:
            lines = count_line_starts(handle, shard.start, shard.end)
    except Exception as exc:  # noqa: BLE001 - any storage failure here is the reader's to report
        reason = storage.failure_reason(exc) or "error"
        message = storage.redact_url(f"its lines could not be counted ({reason}: {type(exc).__name__}: {exc})")[:400]
        shard, lines = dataclasses.replace(shard, layout="unreadable:" + message), -1
    return shard, lines


def with_line_bases(file_shards):
    """(uri, [(shard, lines)]) -> the shards of the file, each knowing the lines before it."""
    _, counted = file_shards
    base = 0
    for shard, lines in sorted(counted, key=lambda item: item[0].index):
        yield dataclasses.replace(shard, line_base=base, counted_lines=lines)
        base += max(lines, 0)
