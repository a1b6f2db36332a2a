"""Reading one shard of a manifest file into RawBatches, Beam-free: the lines it owns (a byte
range of JSON lines, CR-ended lines read whole), the elements of a JSON array or of one part of
it, or one JSON object; each raw record with its 1-based line number and byte offset, blank lines
counted, a line longer than the bound a LINE_TOO_LONG failure, and a file that cannot be read or
ends damaged a READ_FAILED / INVALID_JSON failure where it stops, never a crash.

A shard owns the lines that *start* inside [start, end): it skips the partial line it begins in
and reads past its end to finish its last line, so no line is lost or read twice at an edge
(transforms/shards.py plans the shards and numbers their first lines).
"""

from __future__ import annotations

import bisect
import gzip
import io
import itertools
import zlib
from typing import TYPE_CHECKING, Iterator

from transforms import errors, storage
from transforms.read_layout import JSON_ARRAY, JSON_ARRAY_PART, JSON_OBJECT, JSONL_CR, LINE_END
from transforms.schema import RawBatch

if TYPE_CHECKING:
    from transforms.shards import Shard

DEFAULT_BATCH_LINES = 4096
_BATCH_BYTES = 8 << 20
_CHUNK = 4 << 20
_LINE_ROOM = 64 << 10


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


def open_manifest(uri: str, store: storage.Storage, compression=None):
    """The file as a binary stream, decompressed when it is gzip."""
    raw = store.open(uri, "rb", block_size=_CHUNK)
    return _GzipStream(raw) if compression == "gzip" else raw


def _read_size(remaining: float) -> int:
    """Bytes to read next: _CHUNK, or what is left of the shard plus room for its last line
    (small shards, cut for file checks, would otherwise each read _CHUNK)."""
    return int(min(_CHUNK, max(remaining, 0) + _LINE_ROOM))


class ShardReader:
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

    def read(self, store: storage.Storage) -> Iterator[RawBatch]:
        """Every batch of the shard, the last one flushed; a shard planned as unreadable, or a
        read that storage breaks, ends in one READ_FAILED where it stops (`incomplete`)."""
        shard = self.shard
        if shard.layout.startswith("unreadable:"):
            self.incomplete = True
            yield from self.fail(shard.start, errors.READ_FAILED, shard.layout.split(":", 1)[1])
        else:
            try:
                with open_manifest(shard.uri, store, shard.compression) as handle:
                    if shard.layout == JSON_ARRAY:
                        yield from self.read_array(handle)
                    elif shard.layout == JSON_ARRAY_PART:
                        yield from self.read_array_part(handle)
                    elif shard.layout == JSON_OBJECT:
                        yield from self.read_object(handle)
                    elif shard.layout == JSONL_CR:
                        yield from self.read_mixed_lines(handle)
                    else:
                        yield from self.read_lines(handle)
            except Exception as exc:  # noqa: BLE001 (whatever storage raises, the job goes on)
                self.incomplete = True
                message = storage.redact_url(f"read failed: {type(exc).__name__}: {exc}")[:500]
                yield from self.fail(shard.start, errors.READ_FAILED, message)
        yield from self.flush()

    def counts(self) -> dict:
        """The ledger's figures of the shard once read: the lines it owns, the lines the
        pre-count found in it (its own count when it was not pre-counted), and whether reading
        stopped early."""
        expected = self.shard.counted_lines if self.shard.counted_lines >= 0 else self.line_count
        return {"lines": self.line_count, "expected_lines": expected, "incomplete_reads": int(self.incomplete)}

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

