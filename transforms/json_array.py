"""Stream the elements of a file whose top level is a JSON array, with bounded memory.

Label Studio exports a project as one JSON array: a file of many gigabytes is one JSON value.
`iter_json_array` cuts it into its elements without decoding them, holding only the element
being read (plus one read chunk) in memory.

Speed: each chunk is analysed once with numpy: unescaped quotes give which brackets lie inside
strings, and a cumulative sum of the other brackets gives the depth, so the closing bracket of
every element is known without a per-byte Python loop. Only the top level (commas, blanks,
scalar elements) is walked with compiled regexes. Elements are not validated inside; decoding
each one (orjson) finds what else is wrong with it.
"""

from __future__ import annotations

import re
from collections import deque
from typing import BinaryIO, Iterator

import numpy as np
import orjson

# A string element at the top level.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_SPACE = re.compile(rb"[ \t\r\n]*")
# The end of a number / true / false / null element.
_SCALAR_END = re.compile(rb'[ \t\r\n,\[\]{}"]')
_BOM = b"\xef\xbb\xbf"
_CLOSER = {ord("["): ord("]"), ord("{"): ord("}")}
# Depth change of each byte outside strings.
_DEPTH_STEP = np.zeros(256, np.int8)
_DEPTH_STEP[list(b"[{")] = 1
_DEPTH_STEP[list(b"]}")] = -1
_OPEN_FOLDED, _CLOSE_FOLDED = ord("{"), ord("}")  # a bracket's byte | 0x20
_QUOTE, _OPEN_ARRAY, _CLOSE_ARRAY, _COMMA = ord('"'), ord("["), ord("]"), ord(",")


class JsonArrayError(ValueError):
    """The file is not a well-formed JSON array (or is cut short); `offset` is where it broke."""

    def __init__(self, message: str, offset: int):
        super().__init__(f"{message} at byte {offset}")
        self.reason = message
        self.offset = offset


class _Buffer:
    """The unconsumed tail of the file: `data[i]` is the file's byte `base + i`.

    Every chunk read is analysed once (`_BracketScan`); the file offsets of the brackets that
    close a top-level element wait in `element_ends`.
    """

    def __init__(self, fileobj: BinaryIO, chunk_size: int):
        self.fileobj = fileobj
        self.chunk_size = max(1, int(chunk_size))
        self.data = b""
        self.base = 0
        self.eof = False
        self.scan = _BracketScan()
        self.element_ends: deque[int] = deque()

    def more(self, keep_from: int) -> int:
        """Drop bytes before `keep_from`, read more; returns how far positions shifted.

        Reads at least as much as is already held, so an element larger than a chunk costs
        amortized linear time to gather.
        """
        if self.eof:
            return 0
        kept = self.data[keep_from:]
        chunk = self.fileobj.read(max(self.chunk_size, len(kept)))
        if not chunk:
            self.eof = True
        else:
            self.element_ends.extend(self.scan.element_ends(bytes(chunk)))
        self.data = kept + chunk if kept else bytes(chunk)
        self.base += keep_from
        return keep_from

    def skip_space(self, pos: int) -> tuple[int, int | None]:
        """Position of the next non-blank byte and the byte (None at end of file)."""
        while True:
            pos = _SPACE.match(self.data, pos).end()
            if pos < len(self.data):
                return pos, self.data[pos]
            pos -= self.more(pos)
            if self.eof and pos >= len(self.data):
                return pos, None


class _BracketScan:
    """Finds, chunk after chunk, the brackets that bring the depth back to the array's level.

    Carries across chunks: the depth (1 = inside the top-level array, between elements),
    whether the chunk starts inside a string, and how many backslashes ended the last chunk.
    """

    def __init__(self):
        self.offset = 0
        self.depth = 0
        self.in_string = False
        self.trailing_backslashes = 0

    def element_ends(self, chunk: bytes) -> list[int]:
        arr = np.frombuffer(chunk, np.uint8)
        is_quote = self._unescaped_quotes(arr)
        # `[` and `{` are the only bytes that become `{` with the 0x20 bit set, `]` and `}` the
        # only ones that become `}`: two comparisons of one pass, and a boolean flatnonzero
        # (several times faster than a table lookup and a flatnonzero of its int8 steps)
        folded = arr | 0x20
        brackets = np.flatnonzero((folded == _OPEN_FOLDED) | (folded == _CLOSE_FOLDED))
        if brackets.size:
            # A bracket is inside a string when an odd number of quotes (with the carry) precede
            # it: the quotes of each stretch between brackets, summed in one pass and accumulated
            # (quotes are dense in JSON text: listing them all cost more than the rest together).
            # A bracket is never a quote, so a first bracket at 0 (a repeated index) sums to 0.
            stretches = np.add.reduceat(is_quote.view(np.uint8), np.concatenate(([0], brackets)), dtype=np.int64)
            quotes_before = np.cumsum(stretches[:-1]) + self.in_string
            brackets = brackets[quotes_before % 2 == 0]
        deltas = _DEPTH_STEP[arr[brackets]].astype(np.int64)
        depths = self.depth + np.cumsum(deltas)
        ends = brackets[(deltas < 0) & (depths == 1)] + self.offset
        if depths.size:
            self.depth = int(depths[-1])
        self.in_string = bool((self.in_string + int(np.count_nonzero(is_quote))) % 2)
        stripped = len(chunk) - len(chunk.rstrip(b"\\"))
        self.trailing_backslashes = stripped + (
            self.trailing_backslashes if stripped == len(chunk) else 0
        )
        self.offset += len(chunk)
        return ends.tolist()

    def _unescaped_quotes(self, arr: np.ndarray) -> np.ndarray:
        """True at the quotes not escaped by an odd run of backslashes just before them."""
        is_quote = arr == _QUOTE
        candidates = np.flatnonzero(is_quote[1:] & (arr[:-1] == 0x5C)) + 1
        if candidates.size:
            # index of the last non-backslash byte at or before each position (-1: none)
            positions = np.arange(arr.size, dtype=np.int64)
            last_other = np.maximum.accumulate(np.where(arr != 0x5C, positions, -1))
            runs = candidates - 1 - last_other[candidates - 1]
            runs += np.where(last_other[candidates - 1] < 0, self.trailing_backslashes, 0)
            is_quote[candidates[runs % 2 == 1]] = False
        if is_quote.size and is_quote[0] and self.trailing_backslashes % 2:
            is_quote[0] = False  # escaped by the backslashes that ended the last chunk
        return is_quote


def iter_json_array(fileobj: BinaryIO, chunk_size: int = 1 << 20) -> Iterator[tuple[int, bytes]]:
    """Yield (byte offset of the element in the file, the element's raw bytes) per element.

    Raises JsonArrayError (a ValueError) with the byte offset when the file is not a JSON
    array, an element is cut short, or the array is malformed between elements.
    """
    buf = _Buffer(fileobj, chunk_size)
    while len(buf.data) < len(_BOM) and not buf.eof:
        buf.more(0)
    pos = len(_BOM) if buf.data.startswith(_BOM) else 0
    pos, byte = buf.skip_space(pos)
    if byte != _OPEN_ARRAY:
        raise JsonArrayError("expected '[' (the file is not a JSON array)", buf.base + pos)
    pos, byte = buf.skip_space(pos + 1)
    if byte == _CLOSE_ARRAY:
        return _expect_end(buf, pos + 1)
    while True:
        if byte is None:
            raise JsonArrayError("array cut short: expected an element", buf.base + pos)
        pos, end = _scan_element(buf, pos)
        yield buf.base + pos, buf.data[pos:end]
        pos, byte = buf.skip_space(end)
        if byte == _CLOSE_ARRAY:
            return _expect_end(buf, pos + 1)
        if byte != _COMMA:
            what = "end of file" if byte is None else repr(chr(byte))
            raise JsonArrayError(
                f"expected ',' or ']' after an element, found {what}", buf.base + pos
            )
        pos, byte = buf.skip_space(pos + 1)
        if byte == _CLOSE_ARRAY:
            raise JsonArrayError("trailing ',' before ']'", buf.base + pos)


def _expect_end(buf: _Buffer, pos: int) -> None:
    pos, byte = buf.skip_space(pos)
    if byte is not None:
        raise JsonArrayError("data after the closing ']'", buf.base + pos)


def _scan_element(buf: _Buffer, start: int) -> tuple[int, int]:
    """(start, end) in buf.data of the element beginning at `start` (positions may shift)."""
    first = buf.data[start]
    if first in _CLOSER:
        return _scan_container(buf, start)
    if first == _QUOTE:
        while True:
            match = _STRING.match(buf.data, start)
            if match:
                return start, match.end()
            if buf.eof:
                raise JsonArrayError("string element cut short", buf.base + start)
            start -= buf.more(start)
    if first in b",]}":
        raise JsonArrayError(f"expected an element, found {chr(first)!r}", buf.base + start)
    while True:  # a number, true, false or null: ends at a delimiter
        match = _SCALAR_END.search(buf.data, start)
        if match:
            return start, match.start()
        if buf.eof:
            raise JsonArrayError("array cut short after an element", buf.base + start)
        start -= buf.more(start)


def _scan_container(buf: _Buffer, start: int) -> tuple[int, int]:
    """The object/array at `start` ends at the next bracket that brings the depth back."""
    while True:
        absolute = buf.base + start
        while buf.element_ends and buf.element_ends[0] <= absolute:
            buf.element_ends.popleft()
        if buf.element_ends:
            end = buf.element_ends.popleft() - buf.base
            if buf.data[end] != _CLOSER[buf.data[start]]:
                raise JsonArrayError(f"unbalanced {chr(buf.data[end])!r}", buf.base + end)
            return start, end + 1
        if buf.eof:
            raise JsonArrayError("element cut short (unclosed object or array)", absolute)
        start -= buf.more(start)


def plan_parts(fileobj: BinaryIO, part_bytes: int) -> list[tuple[int, int, int, int]]:
    """Cut a JSON array into parts of about `part_bytes` at element boundaries, so that workers
    read one file in parallel: [(start, end, elements before, elements)], where start is the
    first byte of the part's first element and end the byte after its last one. One pass over
    the file (the same scan as reading it); raises JsonArrayError when it is malformed."""
    parts: list[tuple[int, int, int, int]] = []
    start = end = None
    count = before = 0
    for offset, raw in iter_json_array(fileobj):
        if start is None:
            start = offset
        elif offset - start >= part_bytes:
            parts.append((start, end, before, count))
            start, before, count = offset, before + count, 0
        end = offset + len(raw)
        count += 1
    if start is not None:
        parts.append((start, end, before, count))
    return parts


class ArrayPart:
    """A part of a JSON array (plan_parts) read as an array of its own: `[` + the bytes of its
    elements + `]`, streamed from the file. A position in it is the file's `start - 1 + pos`."""

    def __init__(self, fileobj: BinaryIO, start: int, end: int):
        self._file = fileobj
        self._file.seek(start)
        self._left = end - start
        self._state = 0  # 0: the opening bracket is next, 1: the elements, 2: the closing bracket sent

    def read(self, size: int = -1) -> bytes:
        out = b""
        if self._state == 0:
            out, self._state = b"[", 1
            size = size - 1 if size > 0 else size
        if self._state == 1:
            want = self._left if size < 0 else min(size, self._left)
            data = self._file.read(want) if want > 0 else b""
            self._left -= len(data)
            out += data
            if self._left <= 0 or (want > 0 and not data):
                out, self._state = out + b"]", 2
        return out


class ByteRange:
    """Bytes [start, end) of a file read as a file of their own (a member's array inside a
    document, handed to iter_json_array / plan_parts); a position in it is the file's start + pos."""

    def __init__(self, fileobj: BinaryIO, start: int, end: int):
        self._file = fileobj
        self._file.seek(start)
        self._left = end - start

    def read(self, size: int = -1) -> bytes:
        want = self._left if size < 0 else min(size, self._left)
        data = self._file.read(want) if want > 0 else b""
        self._left -= len(data)
        return data


def _skip_container(buf: _Buffer, start: int) -> int:
    """Where (in buf.data) the object or array at `start` ends, without holding it: its bytes
    are dropped as they are scanned (only where it ends is needed), so a member of many
    gigabytes costs one read chunk of memory."""
    absolute = buf.base + start
    opener = buf.data[start]
    while True:
        while buf.element_ends and buf.element_ends[0] <= absolute:
            buf.element_ends.popleft()
        if buf.element_ends:
            end = buf.element_ends.popleft() - buf.base
            if end < 0 or buf.data[end] != _CLOSER[opener]:
                raise JsonArrayError("unbalanced bracket", buf.base + max(end, 0))
            return end + 1
        if buf.eof:
            raise JsonArrayError("member cut short (unclosed object or array)", absolute)
        buf.more(len(buf.data))  # nothing of the value is kept


def member_ranges(fileobj: BinaryIO, chunk_size: int = 1 << 20) -> dict[str, tuple[int, int]]:
    """The byte range [start, end) of every top-level member's value of a file whose top level
    is a JSON object (a COCO instances file: `images`, `annotations`, `categories`), in one
    pass with one read chunk of memory, so each member can be planned and read apart
    (plan_parts over a ByteRange, then ArrayPart). A name given twice keeps its last range, as
    JSON parsers do. Raises JsonArrayError when the top level is not a well-formed object."""
    buf = _Buffer(fileobj, chunk_size)
    while len(buf.data) < len(_BOM) and not buf.eof:
        buf.more(0)
    pos = len(_BOM) if buf.data.startswith(_BOM) else 0
    pos, byte = buf.skip_space(pos)
    if byte != ord("{"):
        raise JsonArrayError("expected '{' (the file is not a JSON object)", buf.base + pos)
    ranges: dict[str, tuple[int, int]] = {}
    pos, byte = buf.skip_space(pos + 1)
    if byte == ord("}"):
        _expect_end(buf, pos + 1)
        return ranges
    while True:
        if byte != _QUOTE:
            raise JsonArrayError("expected a member name", buf.base + pos)
        pos, end = _scan_element(buf, pos)
        name = orjson.loads(buf.data[pos:end])
        pos, byte = buf.skip_space(end)
        if byte != ord(":"):
            raise JsonArrayError("expected ':' after a member name", buf.base + pos)
        pos, byte = buf.skip_space(pos + 1)
        if byte is None:
            raise JsonArrayError("object cut short: expected a value", buf.base + pos)
        value_start = buf.base + pos
        if buf.data[pos] in _CLOSER:
            end = _skip_container(buf, pos)
        else:
            pos, end = _scan_element(buf, pos)
            value_start = buf.base + pos
        ranges[name] = (value_start, buf.base + end)
        pos, byte = buf.skip_space(end)
        if byte == ord("}"):
            _expect_end(buf, pos + 1)
            return ranges
        if byte != _COMMA:
            what = "end of file" if byte is None else repr(chr(byte))
            raise JsonArrayError(f"expected ',' or '}}' after a member, found {what}", buf.base + pos)
        pos, byte = buf.skip_space(pos + 1)
