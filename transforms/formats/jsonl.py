"""Canonical JSON lines (write only): one record per line, the columns of records/, for tools
that do not read Parquet (DuckDB's read_json_auto, jq, pandas.read_json(lines=True)).

Every column is written, partition columns included, so a line stands alone. Values keep their
JSON form: timestamps as RFC 3339 text (UTC), brush RLEs (`mask_rle`) as base64 text, `extra`
and `attributes` as the JSON text they are in records/.
"""

from __future__ import annotations

import base64
from typing import Any, Iterator

import orjson

from transforms.formats.base import OutputFormat, WriteContext, register


@register
class CanonicalJsonLines(OutputFormat):
    name = "jsonl"
    one_label_job = False  # the records as they are: every label job, each object saying its own
    extension = ".jsonl"
    file_layout = "jsonl"
    partition_columns = ("split", "task")  # as records/


    def write(self, rows: list[dict], ctx: WriteContext) -> Iterator[bytes]:
        for row in rows:
            yield orjson.dumps(row, default=_base64, option=orjson.OPT_UTC_Z)


def _base64(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"{type(value).__name__} has no JSON form")
