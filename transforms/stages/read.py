"""ReadManifests: file patterns -> byte-range shards -> batches of raw records with provenance.

JSON-lines files are cut into byte-range shards so one big file is read by many workers. A
shard owns the lines that *start* inside [start, end): it skips the partial line it begins in and
reads past its end to finish its last line, so no line is lost or read twice at an edge.

Exact 1-based line numbers need to know how many lines precede a shard. Before reading, every
shard of a split file counts the line starts in its byte range (bytes.count over the range, in
parallel, I/O bound); a GroupByKey of those small counts per file gives each shard its first line
number, so the reader emits exact numbers and nothing waits on a side input. (Beam 2.77's
FnApiRunner drops elements of a large main input read with a side input when it runs more than
one worker; this design needs none.) Gzip files, JSON arrays and single-object files cannot be
split: one shard each, numbered from 1. A file a format reads as a document in parts (COCO:
`ManifestFormat.plan_document`) is planned by that format: one shard per part, each a byte
range of one member's array elements.
"""

from __future__ import annotations

import bisect
import dataclasses
import gzip
import io
import itertools
import zlib
from typing import Iterator

import apache_beam as beam

from transforms import errors, storage
from transforms.formats.base import ParseContext, detect_format, document_format, get_format
from transforms.read_layout import (  # noqa: F401 (the layouts and helpers callers import from here)
    JSON_ARRAY,
    JSON_ARRAY_PART,
    JSON_OBJECT,
    JSONL,
    JSONL_CR,
    LINE_END,
    compression_of,
    count_line_starts,
    cr_only,
    sample_records,
    sniff,
)
from transforms.schema import RawBatch
from transforms.stages.accounting import LEDGER

DEFAULT_SHARD_SIZE = 64 << 20
DEFAULT_MAX_LINE_BYTES = 32 << 20
DEFAULT_BATCH_LINES = 4096
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
_BATCH_BYTES = 8 << 20
_CHUNK = 4 << 20
_LINE_ROOM = 64 << 10
_SAMPLE_BYTES = 256 << 10
_SAMPLE_RECORDS = 50

# The layout of a file a format reads as a document in parts (ManifestFormat.plan_document).
DOCUMENT = "document"
# Tags of ReadManifests' outputs.
BATCHES = "batches"
_SPLIT_SHARDS = "split_shards"

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


class _GzipStream(io.RawIOBase):
    """A gzip file read with read1: a truncated or corrupt stream keeps every line before the
    damage (GzipFile.read(n) drops what it had decompressed of a read that hits the damage)."""

    def __init__(self, raw):
        super().__init__()
        self._raw = raw
        self._gzip = gzip.GzipFile(fileobj=raw)

    def read(self, size: int = -1) -> bytes:
        return self._gzip.read() if size is None or size < 0 else self._gzip.read1(size)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._gzip.close()
        self._raw.close()
        super().close()


# What a damaged file raises while it is read: it becomes READ_FAILED, never a crash.
READ_ERRORS = (OSError, EOFError, gzip.BadGzipFile, zlib.error)


def _open(uri: str, store: storage.Storage, compression=None):
    raw = store.open(uri, "rb", block_size=_CHUNK)
    return _GzipStream(raw) if compression == "gzip" else raw


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


class _PlanShardsFn(beam.DoFn):
    """(uri, size) -> the shards of that file, with its layout and format."""

    def __init__(self, format_name, shard_size, store, max_line_bytes=DEFAULT_MAX_LINE_BYTES, checks=FileChecks()):
        self._format_name = format_name
        self._shard_size = shard_size
        self._storage = store
        self._max_line_bytes = max_line_bytes
        self._checks = checks

    def process(self, file_info):
        uri, size = file_info
        compression = compression_of(uri)
        try:
            with _open(uri, self._storage, compression) as handle:
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
            yield Shard(uri, 0, 0, 0, "unreadable:" + storage.redact_url(str(exc))[:300], None, compression)
            return
        yield beam.pvalue.TaggedOutput(LEDGER, (uri, {"format": name, "layout": DOCUMENT if parts is not None else layout, "bytes": size}))
        if parts is not None:  # a document the format reads in parts (COCO): each part one shard
            for index, (member, start, end, before, count) in enumerate(parts):
                yield Shard(uri, index, start, end, JSON_ARRAY_PART, name, None, line_base=before, counted_lines=count, member=member)
            return
        if layout not in (JSONL, JSON_ARRAY) or compression:
            yield Shard(uri, 0, 0, -1, layout, name, compression)
            return
        # JSON lines: the head holds more lines than the sample's first records, and its own
        # lines give their size; a JSON array: the sample's elements.
        line_bytes = len(head) / max(head.count(b"\n") if layout == JSONL else len(sample), 1)
        step = shard_bytes(self._shard_size, sample, line_bytes, get_format(name) if name else None, self._checks, size)
        parts = self._array_parts(uri, step) if layout == JSON_ARRAY and size > step else []
        if size <= step or (layout == JSON_ARRAY and len(parts) <= 1):
            yield Shard(uri, 0, 0, -1, layout, name, compression)
            return
        if layout == JSON_ARRAY:
            for index, (start, end, before, count) in enumerate(parts):
                yield Shard(uri, index, start, end, JSON_ARRAY_PART, name, None, line_base=before, counted_lines=count)
            return
        for index, start in enumerate(range(0, size, step)):
            shard = Shard(uri, index, start, min(start + step, size), layout, name)
            yield beam.pvalue.TaggedOutput(_SPLIT_SHARDS, shard)

    def _document_parts(self, uri: str, name: str, compression, size: int) -> list | None:
        """The format's plan of a file it reads as a document in parts, or None (the format
        reads records: the file is planned by its layout)."""
        fmt = get_format(name)
        if not fmt.joins_documents:
            return None
        if compression:
            raise ValueError(f"a {name} document is read in parts, which a gzip stream cannot be: decompress it")
        step = min(self._shard_size, max(SPREAD_MIN_SHARD, size // SPREAD_SHARDS))
        return fmt.plan_document(lambda: _open(uri, self._storage), step)

    def _array_parts(self, uri: str, step: int) -> list:
        """The parts of a large JSON array (one pass over it); [] when it is malformed, so
        that reading it whole reports where."""
        from transforms.json_array import JsonArrayError, plan_parts

        try:
            with _open(uri, self._storage) as handle:
                return plan_parts(handle, step)
        except JsonArrayError:
            return []

    def _sample(self, uri, compression, head, complete, layout):
        if layout == JSON_OBJECT and not complete:
            # A pretty-printed document larger than the sample: detect from all of it
            # (bounded: a longer one is a LINE_TOO_LONG dead letter anyway).
            with _open(uri, self._storage, compression) as handle:
                head = handle.read(self._max_line_bytes + 1)
            complete = len(head) <= self._max_line_bytes
        if layout == JSONL_CR:
            sample = sample_records(head.replace(b"\r", b"\n"), JSONL, complete)
        else:
            sample = sample_records(head, layout, complete)
        if not sample and layout == JSONL and not complete:
            # The first lines are longer than the sample: read on, bounded, to reach records.
            with _open(uri, self._storage, compression) as handle:
                head = handle.read(2 * self._max_line_bytes)
            sample = sample_records(head, layout, len(head) < 2 * self._max_line_bytes)
        return head, complete, sample


class _CountShardLinesFn(beam.DoFn):
    """A shard of a split file -> (uri, (shard, lines it owns)). A shard whose lines cannot be
    counted (storage failed) is not read: its line numbers, and those of the shards after it,
    cannot be known, so it becomes one READ_FAILED where it starts and the file is incomplete."""

    def __init__(self, store: storage.Storage):
        self._storage = store

    def process(self, shard: Shard):
        try:
            with _open(shard.uri, self._storage) as handle:
                lines = count_line_starts(handle, shard.start, shard.end)
        except Exception as exc:  # noqa: BLE001 - any storage failure here is the reader's to report
            reason = storage.failure_reason(exc) or "error"
            message = storage.redact_url(f"its lines could not be counted ({reason}: {type(exc).__name__}: {exc})")[:400]
            shard, lines = dataclasses.replace(shard, layout="unreadable:" + message), -1
        yield shard.uri, (shard, lines)


def _with_line_bases(file_shards):
    """(uri, [(shard, lines)]) -> the shards of the file, each knowing the lines before it."""
    _, counted = file_shards
    base = 0
    for shard, lines in sorted(counted, key=lambda item: item[0].index):
        yield dataclasses.replace(shard, line_base=base, counted_lines=lines)
        base += max(lines, 0)


class _ReadShardFn(beam.DoFn):
    """A shard -> RawBatches, and on LEDGER the lines it owns (and the pre-count's figure)."""

    def __init__(self, store: storage.Storage, batch_lines: int, max_line_bytes: int):
        self._storage = store
        self._batch_lines = batch_lines
        self._max_line_bytes = max_line_bytes

    def process(self, shard: Shard):
        reader = _ShardReader(shard, self._batch_lines, self._max_line_bytes)
        if shard.layout.startswith("unreadable:"):
            reader.incomplete = True
            yield from reader.fail(shard.start, errors.READ_FAILED, shard.layout.split(":", 1)[1])
        else:
            try:
                with _open(shard.uri, self._storage, shard.compression) as handle:
                    if shard.layout == JSON_ARRAY:
                        yield from reader.read_array(handle)
                    elif shard.layout == JSON_ARRAY_PART:
                        yield from reader.read_array_part(handle)
                    elif shard.layout == JSON_OBJECT:
                        yield from reader.read_object(handle)
                    elif shard.layout == JSONL_CR:
                        yield from reader.read_mixed_lines(handle)
                    else:
                        yield from reader.read_lines(handle)
            except Exception as exc:  # noqa: BLE001 (whatever storage raises, the job goes on)
                reader.incomplete = True
                message = storage.redact_url(f"read failed: {type(exc).__name__}: {exc}")[:500]
                yield from reader.fail(shard.start, errors.READ_FAILED, message)
        yield from reader.flush()
        expected = shard.counted_lines if shard.counted_lines >= 0 else reader.line_count
        counts = {"lines": reader.line_count, "expected_lines": expected, "incomplete_reads": int(reader.incomplete)}
        yield beam.pvalue.TaggedOutput(LEDGER, (shard.uri, counts))


def _read_size(remaining: float) -> int:
    """Bytes to read next: _CHUNK, or what is left of the shard plus room for its last line
    (small shards, cut for file checks, would otherwise each read _CHUNK)."""
    return int(min(_CHUNK, max(remaining, 0) + _LINE_ROOM))


class _ShardReader:
    """The per-shard state: the batch being filled and the count of lines seen."""

    def __init__(self, shard: Shard, batch_lines: int, max_line_bytes: int):
        self.shard = shard
        self.batch_lines = batch_lines
        self.max_line_bytes = max_line_bytes
        self.line_count = 0  # lines this shard owns, blank ones included
        self.incomplete = False  # reading stopped before the end of the shard
        self.batch = self._new_batch()
        self.batch_bytes = 0
        self.newline = b"\r" if shard.layout == JSONL_CR else b"\n"

    def _new_batch(self) -> RawBatch:
        return RawBatch(self.shard.uri, self.shard.format, self.shard.index, member=self.shard.member)

    def _add(self, offset: int, raw: bytes, failure: tuple[str, str] | None = None) -> bool:
        """Counts the line into the batch; True when the batch is full (the caller flushes it)."""
        batch = self.batch
        self.line_count += 1
        if failure is None and not raw.strip():
            batch.blank += 1
        else:
            if failure is not None:
                batch.failures.append((len(batch.raws), *failure))
            batch.lines.append(self.shard.line_base + self.line_count)
            batch.offsets.append(offset)
            batch.raws.append(raw)
            self.batch_bytes += len(raw)
        return len(batch.raws) >= self.batch_lines or self.batch_bytes >= _BATCH_BYTES

    def flush(self):
        if self.batch.raws or self.batch.blank:
            yield self.batch
        self.batch = self._new_batch()
        self.batch_bytes = 0

    def fail(self, offset: int, code: str, message: str):
        if self._add(offset, b"", (code, message)):
            yield from self.flush()

    def read_lines(self, handle) -> Iterator[RawBatch]:
        shard = self.shard
        end = shard.end if shard.end >= 0 else float("inf")
        position = shard.start
        pending = b""
        if shard.start > 0:
            handle.seek(shard.start - 1)
            position = shard.start - 1
            # Skip the rest of the line that began before this shard: it belongs to the last one.
            while True:
                chunk = handle.read(_read_size(end - position))
                if not chunk:
                    return
                newline = chunk.find(b"\n")
                if newline >= 0:
                    position += newline + 1
                    pending = chunk[newline + 1 :]
                    break
                position += len(chunk)
        skipping = False  # inside a line longer than max_line_bytes
        while position < end:
            chunk = handle.read(_read_size(end - position))
            at_eof = not chunk
            if at_eof:
                if not pending or skipping:
                    return
                chunk = self.newline  # the last line has no newline: end it here
            buffer = pending + chunk if pending else chunk
            start = 0
            if not skipping:  # the complete lines of the buffer at once; the loop below does the rest
                start, position = yield from self._read_complete_lines(buffer, position, end)
            while position < end:
                newline = buffer.find(self.newline, start)
                if newline < 0:
                    break
                if skipping:
                    skipping = False
                else:  # inline, not a generator per line: this loop runs once per line of the input
                    raw = buffer[start:newline]
                    if raw.endswith(b"\r"):
                        raw = raw[:-1]
                    if len(raw) > self.max_line_bytes:
                        yield from self._too_long(position, raw)
                    elif self._add(position, raw):
                        yield from self.flush()
                position += newline - start + 1
                start = newline + 1
            if at_eof:
                return
            pending = buffer[start:]
            if position < end and len(pending) > self.max_line_bytes and not skipping:
                yield from self._too_long(position, pending)
                skipping = True
            if skipping:
                position += len(pending)
                pending = b""

    def read_mixed_lines(self, handle) -> Iterator[RawBatch]:
        """A whole file whose lines end in CR, LF or CRLF, mixed (one that starts with classic
        Mac line endings and goes on with LF): each of the three ends one line. A CR at the end
        of a chunk waits for the next one, in case it is the first half of a CRLF."""
        position = 0  # file offset of pending[0]
        pending = b""
        skipping = False  # inside a line longer than max_line_bytes
        while True:
            chunk = handle.read(_CHUNK)
            at_eof = not chunk
            buffer = pending + chunk
            start = 0
            for match in LINE_END.finditer(buffer):
                if not at_eof and match.group() == b"\r" and match.end() == len(buffer):
                    break  # maybe the CR of a CRLF cut by the chunk
                raw = buffer[start : match.start()]
                if skipping:
                    skipping = False
                elif len(raw) > self.max_line_bytes:
                    yield from self._too_long(position + start, raw)
                elif self._add(position + start, raw):
                    yield from self.flush()
                start = match.end()
            pending = buffer[start:]
            position += start
            if at_eof:
                if pending and not skipping:  # the last line has no line end
                    if len(pending) > self.max_line_bytes:
                        yield from self._too_long(position, pending)
                    elif self._add(position, pending):
                        yield from self.flush()
                return
            if len(pending) > self.max_line_bytes:
                if not skipping:
                    yield from self._too_long(position, pending)
                    skipping = True
                position += len(pending)
                pending = b""

    def _read_complete_lines(self, buffer: bytes, position: int, end: float):
        """Every complete line of `buffer` that starts before `end`, split in one call; returns
        (where the unread rest of the buffer starts, its offset in the file). Declines (returns
        (0, position)) a buffer with a line over max_line_bytes: the line loop reports it."""
        last = buffer.rfind(self.newline)
        if last < 0:
            return 0, position
        lines = buffer[:last].split(self.newline)
        lengths = list(map(len, lines))
        if max(lengths) > self.max_line_bytes:
            return 0, position
        starts = list(itertools.accumulate((length + 1 for length in lengths[:-1]), initial=position))
        mine = bisect.bisect_left(starts, end)  # lines starting at `end` or later are the next shard's
        if mine < len(lines):
            lines, starts = lines[:mine], starts[:mine]
            last = starts[-1] - position + lengths[mine - 1] if mine else -1
        if self.newline == b"\n" and b"\r" in buffer:
            lines = [raw[:-1] if raw.endswith(b"\r") else raw for raw in lines]
        yield from self._add_lines(starts, lines)
        return last + 1, position + last + 1

    def _add_lines(self, starts: list[int], raws: list[bytes]):
        """_add of each line, in bulk while the batch has room (blank lines counted apart)."""
        i = 0
        while i < len(raws):
            batch = self.batch
            j = min(len(raws), i + self.batch_lines - len(batch.raws))
            piece = raws[i:j]
            size = sum(map(len, piece))
            if self.batch_bytes + size >= _BATCH_BYTES or j == i:  # near the byte bound: line by line
                if self._add(starts[i], raws[i]):
                    yield from self.flush()
                i += 1
                continue
            first = self.shard.line_base + self.line_count + 1
            kept = [k for k, raw in enumerate(piece) if raw.strip()]
            if len(kept) < len(piece):  # blank lines are counted, not kept
                batch.lines.extend(first + k for k in kept)
                batch.offsets.extend(starts[i + k] for k in kept)
                batch.raws.extend(piece[k] for k in kept)
                batch.blank += len(piece) - len(kept)
            else:
                batch.lines.extend(range(first, first + len(piece)))
                batch.offsets.extend(starts[i:j])
                batch.raws.extend(piece)
            self.line_count += len(piece)
            self.batch_bytes += size
            if len(batch.raws) >= self.batch_lines:
                yield from self.flush()
            i = j

    def _too_long(self, offset: int, raw: bytes):
        message = f"line longer than {self.max_line_bytes} bytes"
        if self._add(offset, raw[: errors.RAW_TEXT_LIMIT], (errors.LINE_TOO_LONG, message)):
            yield from self.flush()

    def read_array(self, handle, shift: int = 0) -> Iterator[RawBatch]:
        """The elements of a JSON array; `shift` is the file offset of the handle's byte 0."""
        from transforms.json_array import JsonArrayError, iter_json_array

        try:
            for offset, raw in iter_json_array(handle):
                if len(raw) > self.max_line_bytes:
                    yield from self._too_long(shift + offset, raw)
                elif self._add(shift + offset, raw):
                    yield from self.flush()
        except JsonArrayError as exc:
            self.incomplete = True  # the elements after the damage cannot be found
            where = shift + exc.offset
            yield from self.fail(where, errors.INVALID_JSON, f"{exc.reason} at byte {where}")

    def read_array_part(self, handle) -> Iterator[RawBatch]:
        from transforms.json_array import ArrayPart

        yield from self.read_array(ArrayPart(handle, self.shard.start, self.shard.end), shift=self.shard.start - 1)

    def read_object(self, handle) -> Iterator[RawBatch]:
        data = handle.read(self.max_line_bytes + 1)  # never more than the bound in memory
        if len(data) > self.max_line_bytes:
            yield from self._too_long(0, data)
        elif self._add(0, data):
            yield from self.flush()


def _match(pattern: str, store: storage.Storage):
    matched = store.expand(pattern)
    if not matched:
        raise FileNotFoundError(f"no file matches {storage.redact_url(pattern)!r}")
    yield from matched


class ReadManifests(beam.PTransform):
    """Glob patterns -> {batches: RawBatch, ledger: (uri, counts)}."""

    def __init__(
        self,
        patterns: list[str],
        format_name: str | None = None,
        shard_size: int = DEFAULT_SHARD_SIZE,
        store: storage.Storage | None = None,
        batch_lines: int = DEFAULT_BATCH_LINES,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        checks: FileChecks = FileChecks(),
        files: tuple[tuple[str, int], ...] | None = None,
    ):
        """`files`: the patterns already listed ((url, size) per file, at launch): read as
        given, not listed again."""
        super().__init__()
        self._patterns = list(patterns)
        self._files = None if files is None else sorted(set(files))
        self._format_name = format_name
        self._shard_size = max(int(shard_size), 1)
        self._storage = store or storage.Storage()
        self._batch_lines = batch_lines
        self._max_line_bytes = max_line_bytes
        self._checks = checks

    def expand(self, pbegin):
        if self._files is not None:
            files = pbegin | "ListedFiles" >> beam.Create(self._files)
        else:
            files = (
                pbegin
                | "Patterns" >> beam.Create(self._patterns)
                | "MatchFiles" >> beam.FlatMap(_match, self._storage)
                | "Deduplicate" >> beam.Distinct()
            )
        planned = files | "PlanShards" >> beam.ParDo(
            _PlanShardsFn(self._format_name, self._shard_size, self._storage, self._max_line_bytes, self._checks)
        ).with_outputs(LEDGER, _SPLIT_SHARDS, main="whole_files")
        numbered = (
            planned[_SPLIT_SHARDS]
            | "SpreadCounting" >> beam.Reshuffle()
            | "CountShardLines" >> beam.ParDo(_CountShardLinesFn(self._storage))
            | "ShardsPerFile" >> beam.GroupByKey()
            | "AssignLineBases" >> beam.FlatMap(_with_line_bases)
        )
        read = (
            (planned.whole_files, numbered)
            | "AllShards" >> beam.Flatten()
            | "SpreadShards" >> beam.Reshuffle()
            | "ReadShards"
            >> beam.ParDo(_ReadShardFn(self._storage, self._batch_lines, self._max_line_bytes)).with_outputs(LEDGER, main=BATCHES)
        )
        ledger = (planned[LEDGER], read[LEDGER]) | "ReadCounts" >> beam.Flatten()
        return {BATCHES: read[BATCHES], LEDGER: ledger}
