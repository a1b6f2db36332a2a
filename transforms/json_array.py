"""Stream the elements of a file whose top level is a JSON array, with bounded memory.

Label Studio exports a project as one JSON array: a file of many gigabytes is one JSON value.
`iter_json_array` cuts it into its elements without decoding them, holding only the element
being scanned (plus one read chunk) in memory. Scanning is done by compiled regexes over the
buffered bytes: one step per string and per bracket, never per byte, and commas or numbers
inside an element are skipped by C code. Elements are not validated beyond their brackets;
decoding each one (orjson) finds what else is wrong with it.
"""

from __future__ import annotations

import re
from typing import BinaryIO, Iterator

# Inside an element: a whole string, a bracket, or a string still open at the buffer's end.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|"', re.S)
# A string element at the top level.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_SPACE = re.compile(rb"[ \t\r\n]*")
# The end of a number / true / false / null element.
_SCALAR_END = re.compile(rb'[ \t\r\n,\[\]{}"]')
_BOM = b"\xef\xbb\xbf"
_CLOSER = {ord("["): ord("]"), ord("{"): ord("}")}
_QUOTE, _OPEN_ARRAY, _CLOSE_ARRAY, _COMMA = ord('"'), ord("["), ord("]"), ord(",")


class JsonArrayError(ValueError):
    """The file is not a well-formed JSON array (or is cut short); `offset` is where it broke."""

    def __init__(self, message: str, offset: int):
        super().__init__(f"{message} at byte {offset}")
        self.offset = offset


class _Buffer:
    """The unconsumed tail of the file: `data[i]` is the file's byte `base + i`."""

    def __init__(self, fileobj: BinaryIO, chunk_size: int):
        self.fileobj = fileobj
        self.chunk_size = max(1, int(chunk_size))
        self.data = b""
        self.base = 0
        self.eof = False

    def more(self, keep_from: int) -> int:
        """Drop bytes before `keep_from`, read more; returns how far positions shifted.

        Reads at least as much as is already held, so re-scanning a large open string or
        element after each read costs amortized linear time.
        """
        if self.eof:
            return 0
        kept = self.data[keep_from:]
        chunk = self.fileobj.read(max(self.chunk_size, len(kept)))
        if not chunk:
            self.eof = True
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
            raise JsonArrayError(f"expected ',' or ']' after an element, found {what}", buf.base + pos)
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
    """Match brackets (skipping strings) from the object/array at `start` to its closer."""
    expected: list[int] = []  # closers still owed, innermost last
    pos = start
    while True:
        for match in _TOKEN.finditer(buf.data, pos):
            token_start = match.start()
            byte = buf.data[token_start]
            if byte == _QUOTE:
                if match.end() - token_start == 1:  # string open at the buffer's end
                    pos = token_start
                    break
                continue
            if byte in _CLOSER:
                expected.append(_CLOSER[byte])
                continue
            if not expected or byte != expected.pop():
                raise JsonArrayError(f"unbalanced {chr(byte)!r}", buf.base + token_start)
            if not expected:
                return start, match.end()
        else:
            pos = len(buf.data)
        if buf.eof:
            raise JsonArrayError("element cut short (unclosed object or array)", buf.base + start)
        shift = buf.more(start)
        start -= shift
        pos -= shift
