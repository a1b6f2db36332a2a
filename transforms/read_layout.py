"""The layout of a manifest file from its first bytes (JSON lines, a JSON array, one JSON object,
CR-ended lines), a sample of its records to detect its format, and the line starts a byte range
of it owns: what the read stage plans shards with, Beam-free."""

from __future__ import annotations

import io
import re

import orjson

_CHUNK = 4 << 20
_SAMPLE_RECORDS = 50

JSONL, JSON_ARRAY, JSON_OBJECT = "jsonl", "json_array", "json_object"
# A part of a large JSON array, cut at element boundaries when the file was planned.
JSON_ARRAY_PART = "json_array_part"
# JSON lines ended by a lone CR (classic Mac OS line endings): read whole, split at CR, and at
# LF or CRLF too (a file that goes on with other line endings later).
JSONL_CR = "jsonl_cr"
LINE_END = re.compile(rb"\r\n|\r|\n")


_CR_BEFORE_RECORD = re.compile(rb"\r(?!\n)[ \t]*\{")


def cr_only(head: bytes) -> bool:
    """Lines ended by CR alone, at least in part: CRs in the head and not one LF, or a lone CR
    (not the first half of a CRLF) right before a record. Such a file is read with CR, LF and
    CRLF all ending lines (a raw CR is never inside a JSON string)."""
    if b"\r" not in head:
        return False
    return b"\n" not in head or _CR_BEFORE_RECORD.search(head) is not None


def count_line_starts(handle, start: int, end: int) -> int:
    """Lines that start in [start, end): the lines a shard owns (0 or a byte after a newline)."""
    if end <= start:
        return 0
    count = 1 if start == 0 else 0
    position = max(start - 1, 0)
    handle.seek(position)
    remaining = (end - 1) - position
    while remaining > 0:
        chunk = handle.read(min(_CHUNK, remaining))
        if not chunk:
            break
        count += chunk.count(b"\n")
        remaining -= len(chunk)
    return count


def compression_of(uri: str) -> str | None:
    return "gzip" if uri.endswith(".gz") else None


def sniff(head: bytes, complete: bool = True) -> str:
    """The file layout from its first bytes: JSON lines, a JSON array, or one JSON object.

    One object is a file that starts with `{` and whose first line is not a record by itself:
    when the whole file was seen, it must parse as one object; when only its head was, its
    first line must be a lone `{` (a pretty-printed document). Anything else is JSON lines, so
    a broken or very long first line never hides the lines after it.
    """
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"["):
        return JSON_ARRAY
    if not text.startswith(b"{"):
        return JSONL
    first_line = text.split(b"\n", 1)[0].strip()
    if _is_object(first_line):
        return JSONL
    if complete:
        return JSON_OBJECT if _is_object(text) else JSONL
    return JSON_OBJECT if first_line == b"{" else JSONL


def _is_object(data: bytes) -> bool:
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False


def sample_records(head: bytes, layout: str, complete: bool) -> list:
    """A few decoded records from the start of a file, to detect its format."""
    head = head.lstrip(b"\xef\xbb\xbf")
    if layout == JSONL:
        lines = head.split(b"\n")
        if not complete:
            lines = lines[:-1]
        found = []
        for line in lines:
            if line.strip():
                try:
                    found.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
            if len(found) >= _SAMPLE_RECORDS:
                break
        return found
    if layout == JSON_ARRAY:
        from transforms.json_array import iter_json_array

        found = []
        try:
            for _, raw in iter_json_array(io.BytesIO(head)):
                found.append(orjson.loads(raw))
                if len(found) >= _SAMPLE_RECORDS:
                    break
        except ValueError:
            pass  # the sample ends inside an element: what was read is the sample
        return found
    try:
        return [orjson.loads(head)] if complete else []
    except orjson.JSONDecodeError:
        return []
