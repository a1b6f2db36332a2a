"""What the formats' fast paths share: the per-object loop that feeds column lists, and the
`source` column of the rows they take.

A per-object fast path (sagemaker/fast_lines.py, label_studio/fast_tasks.py) decodes each raw
item with orjson and offers it to a columns object (`add(index, obj) -> bool`, `index`,
`build(uri, format, lines, offsets)`), which keeps what it reads exactly and declines the rest;
the declined items go to the format's plugin.
"""

from __future__ import annotations

import gc
from typing import Any, Protocol

import orjson
import pyarrow as pa

from transforms import schema, storage
from transforms.checks import numbers
from transforms.formats.base import FastPart

BOM = b"\xef\xbb\xbf"
# what Arrow (or a column list) raises on a value that does not fit: the plugin says which item
BUILD_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)


class ObjectColumns(Protocol):
    index: list[int]  # the item's position in the RawBatch, per row added

    def add(self, index: int, obj: dict) -> bool: ...

    def build(self, uri: str, format_name: str, lines: list[int], offsets: list[int]) -> pa.RecordBatch: ...


def read_objects(batch, columns: ObjectColumns) -> FastPart | None:
    """The items of `batch` that `columns` takes, as one RecordBatch; None when it takes none
    or a value does not fit (the whole batch then goes to the plugin)."""
    collecting = gc.isenabled()
    gc.disable()  # the batch's many small objects would trigger full collections for nothing
    try:
        declined = gather(batch, columns)
    finally:
        if collecting:
            gc.enable()
    if not columns.index:
        return None
    try:
        built = columns.build(batch.uri, batch.format, batch.lines, batch.offsets)
    except BUILD_ERRORS:
        return None
    return FastPart(built, columns.index, declined)


def gather(batch, columns: ObjectColumns) -> list[int]:
    """Feeds the decodable objects of `batch` to `columns`; returns the positions declined: a
    reader failure, a byte order mark, a 20-digit run (maybe INTEGER_TOO_LARGE), JSON orjson
    refuses, something that is not an object, or an object `columns` does not take."""
    failed = {index for index, _, _ in batch.failures}
    declined: list[int] = []
    loads = orjson.loads
    # a 20-digit run (maybe an integer beyond 64 bits) is rare: one search over the batch, and
    # a search per item only when the batch has one
    suspect = numbers.any_might_be_inexact(batch.raws)
    for index, raw in enumerate(batch.raws):
        if index in failed or raw.startswith(BOM) or (suspect and numbers.might_be_inexact(raw)):
            declined.append(index)
            continue
        try:
            obj = loads(raw)
        except orjson.JSONDecodeError:
            declined.append(index)
            continue
        if type(obj) is not dict or not columns.add(index, obj):
            declined.append(index)
    return declined


def source_column(uri: str, format_name: str, lines: Any, offsets: Any, attribute: Any) -> pa.StructArray:
    """`source` of rows read from one file: its redacted URL and format, each row's line and
    offset (lists or numpy arrays), and `attribute` (one name for all, a list, or an array)."""
    n = len(offsets)
    if isinstance(attribute, str):
        attribute = [attribute] * n
    return pa.StructArray.from_arrays(
        [pa.array([storage.redact_url(uri)] * n, pa.string()), pa.array(lines, pa.int64()), pa.array(offsets, pa.int64()),
         pa.array([format_name] * n, pa.string()), attribute if isinstance(attribute, pa.Array) else pa.array(attribute, pa.string())],
        fields=list(schema.SOURCE),
    )
