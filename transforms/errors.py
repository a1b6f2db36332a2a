"""Error codes, severities and the dead-letter row.

Codes are stable, upper-case strings; docs/errors.md is their catalogue. A record that cannot
be normalized becomes a dead-letter row; a finding on a kept record becomes an entry in its
`issues` column.
"""

from __future__ import annotations

import base64
import dataclasses

import orjson

# Reading and decoding (stage "read" / "normalize").
INVALID_UTF8 = "INVALID_UTF8"
INVALID_JSON = "INVALID_JSON"
NOT_AN_OBJECT = "NOT_AN_OBJECT"
LINE_TOO_LONG = "LINE_TOO_LONG"
UNKNOWN_FORMAT = "UNKNOWN_FORMAT"
READ_FAILED = "READ_FAILED"
# Ground Truth family.
MISSING_SOURCE_REF = "MISSING_SOURCE_REF"
MISSING_LABEL_METADATA = "MISSING_LABEL_METADATA"
INVALID_FIELD_TYPE = "INVALID_FIELD_TYPE"
UNKNOWN_LABEL_TYPE = "UNKNOWN_LABEL_TYPE"
INVALID_DATE = "INVALID_DATE"
MISSING_CLASS_NAME = "MISSING_CLASS_NAME"
MISSING_IMAGE_SIZE = "MISSING_IMAGE_SIZE"
MULTIPLE_MASKS = "MULTIPLE_MASKS"
# Writing.
OUTPUT_UNREPRESENTABLE = "OUTPUT_UNREPRESENTABLE"
# Anything a plugin did not expect: the record is kept out, the job goes on.
INTERNAL_ERROR = "INTERNAL_ERROR"

# Tag of the dead-letter output of every stage.
DEAD_LETTERS = "dead_letters"

ERROR = "error"
WARNING = "warning"

# Raw text kept in a dead letter, in characters: enough to see the problem, bounded.
RAW_TEXT_LIMIT = 4096


class RecordError(Exception):
    """Raised by a format plugin when one record cannot become a canonical row."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Where a raw record came from: enough to find it again in the input."""

    uri: str
    line: int
    offset: int
    format: str | None = None


def dead_letter(
    where: Provenance,
    stage: str,
    code: str,
    message: str,
    raw: bytes | str | None,
    severity: str = ERROR,
) -> dict:
    """One dead-letter row (a plain dict, written as one JSON line under errors/)."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw[: RAW_TEXT_LIMIT * 4]).decode("utf-8", errors="replace")
    if raw is not None and len(raw) > RAW_TEXT_LIMIT:
        raw = raw[:RAW_TEXT_LIMIT]
    return {
        "source_uri": where.uri,
        "line": where.line,
        "offset": where.offset,
        "format": where.format,
        "stage": stage,
        "code": code,
        "severity": severity,
        "message": message,
        "raw": raw,
    }


def row_dead_letter(row: dict, stage: str, code: str, message: str) -> dict:
    """A dead letter for a canonical row refused after normalization (validate, write stages)."""
    source = row.get("source") or {}
    where = Provenance(source.get("uri") or "", source.get("line") or 0, source.get("offset") or 0, source.get("format"))
    return dead_letter(where, stage, code, message, row_json(row))


def row_json(row: dict) -> str:
    """A canonical row as JSON (binary values such as brush RLEs as base64)."""
    return orjson.dumps(row, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()


def _json_default(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    return str(value)
