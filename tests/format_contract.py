"""The contract every format plugin passes: detect, parse, write, read-back round trip.

A format's test module calls these helpers on its own examples; see tests/test_format_*.py.
"""

from __future__ import annotations

import orjson

from transforms import schema
from transforms.formats.base import ManifestFormat, ParseContext, WriteContext

# Columns that say where a row came from, not what it is: they differ after a rewrite.
PROVENANCE_COLUMNS = ("record_id", "source", "split")


def canonical(rows: list[dict]) -> list[dict]:
    """Rows as they come out of a RecordBatch (types applied), without provenance."""
    batch = schema.rows_to_batch(rows)
    return [
        {k: v for k, v in row.items() if k not in PROVENANCE_COLUMNS}
        for row in batch.to_pylist()
    ]


def parse_all(fmt: ManifestFormat, objs: list, ctx: ParseContext) -> list[dict]:
    rows = []
    for obj in objs:
        rows.extend(fmt.parse(obj, ctx).rows)
    return rows


def assert_round_trip(fmt: ManifestFormat, objs: list, ctx: ParseContext, write_options=None):
    """parse -> canonical batch -> write -> decode -> parse gives equal canonical rows."""
    first = canonical(parse_all(fmt, objs, ctx))
    wctx = WriteContext(options=fmt.options(write_options) if write_options is not None else None)
    encoded = list(fmt.write(schema.rows_to_batch(parse_all(fmt, objs, ctx)).to_pylist(), wctx))
    assert not wctx.rejected, wctx.rejected
    again = canonical(parse_all(fmt, [orjson.loads(e) for e in encoded], ctx))
    assert again == first
    return first, encoded


def assert_detects(fmt: ManifestFormat, objs: list) -> None:
    """The format claims its own sample, and more of it than any other registered format."""
    from transforms.formats.base import detect_format

    assert fmt.detect(objs) > 0.5
    assert detect_format(objs) == fmt.name
