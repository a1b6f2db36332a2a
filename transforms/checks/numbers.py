"""Numbers a record may not carry: coordinates, areas and scores that are not finite.

JSON has no inf or NaN, but a manifest can still produce them: 1e308 is a valid number, and a
box of left 1e308 plus width 1e308 (or 1e308 divided by a small image size) overflows to inf;
a float32 column (score, rotation) turns 1e39 into inf. No output format can write them (JSON
has no inf, COCO tools divide by them), so such a record is refused at ValidateRecords with
COORDINATE_NOT_FINITE, whatever the profile, and never reaches a writer.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.errors import COORDINATE_NOT_FINITE, INTEGER_TOO_LARGE, WARNING


def _bad_parents(values: pa.Array, parents: np.ndarray) -> np.ndarray:
    """Parent indices of the values that are present and not finite."""
    if len(values) == 0:
        return parents[:0]
    bad = pc.invert(pc.fill_null(pc.is_finite(values), True)).to_numpy(zero_copy_only=False)
    return parents[bad]


def non_finite_findings(batch: pa.RecordBatch) -> list[tuple[int, str, str]]:
    """(row, COORDINATE_NOT_FINITE, which fields) for every row with a non-finite number."""
    if batch.num_rows == 0:
        return []
    bad: dict[int, set[str]] = {}

    def note(rows, field):
        for row in np.unique(rows):
            bad.setdefault(int(row), set()).add(field)

    objects = batch.column("objects")
    flat = pc.list_flatten(objects)
    parents = pc.list_parent_indices(objects).to_numpy()
    if len(flat):
        bbox = pc.struct_field(flat, "bbox")
        for side in ("x_min", "y_min", "x_max", "y_max"):
            note(_bad_parents(pc.struct_field(bbox, side), parents), "bbox")
        for field in ("area", "score", "rotation"):
            note(_bad_parents(pc.struct_field(flat, field), parents), field)
        rings = pc.struct_field(flat, "polygon")
        ring_parents = parents[pc.list_parent_indices(rings).to_numpy()]
        ring_values = pc.list_flatten(rings)
        point_parents = ring_parents[pc.list_parent_indices(ring_values).to_numpy()]
        note(_bad_parents(pc.list_flatten(ring_values), point_parents), "polygon")
        keypoints = pc.struct_field(flat, "keypoints")
        key_parents = parents[pc.list_parent_indices(keypoints).to_numpy()]
        flat_keys = pc.list_flatten(keypoints)
        for axis in ("x", "y"):
            note(_bad_parents(pc.struct_field(flat_keys, axis), key_parents), "keypoints")
    labels = batch.column("labels")
    note(_bad_parents(pc.struct_field(pc.list_flatten(labels), "score"), pc.list_parent_indices(labels).to_numpy()), "label score")
    return [
        (row, COORDINATE_NOT_FINITE, f"not a finite number (inf or NaN, e.g. from 1e308 overflowing) in: {', '.join(sorted(fields))}")
        for row, fields in sorted(bad.items())
    ]


# -- integers beyond 64 bits -----------------------------------------------------------------
# orjson reads integers in [-2**63, 2**64) exactly and anything beyond as a float, silently
# (123456789012345678901234567890 becomes 1.2345678901234568e+29; -9223372036854775809, one
# below -2**63, becomes -9.223372036854776e+18). The cheap sign is one scan of the raw bytes
# for a run of 20 digits, or of 19 digits after a minus (every integer outside the range has
# one); only then is the record parsed again, and the exact bounds decide.
_LONG_DIGITS = re.compile(rb"\d{20}|-\d{19}")
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def might_be_inexact(raw: bytes) -> bool:
    """The cheap first test of has_inexact_integer: 20 digits, or a minus and 19 digits."""
    return _LONG_DIGITS.search(raw) is not None


# digit -> "0", minus -> "-", any other byte -> "."
_DIGITS_TO_ZERO = bytes(48 if 48 <= byte <= 57 else 45 if byte == 45 else 46 for byte in range(256))


def block_might_be_inexact(block: bytes) -> bool:
    """might_be_inexact of a whole batch of lines at memory speed: digits mapped to one byte,
    then two finds (a regex over the batch runs at about a tenth of that)."""
    mapped = block.translate(_DIGITS_TO_ZERO)
    return b"0" * 20 in mapped or b"-" + b"0" * 19 in mapped


def any_might_be_inexact(raws: list[bytes]) -> bool:
    """might_be_inexact of any of `raws` (joined by newlines: no run crosses two lines)."""
    return block_might_be_inexact(b"\n".join(raws))


def has_inexact_integer(raw: bytes) -> bool:
    """Whether the JSON text holds an integer orjson cannot keep exactly."""
    if not _LONG_DIGITS.search(raw):
        return False
    found = []

    def parse_int(text: str) -> int:
        value = int(text)
        if not _INT_MIN <= value <= _INT_MAX:
            found.append(value)
        return value

    try:
        json.loads(raw.decode("utf-8", errors="replace").lstrip("\ufeff"), parse_int=parse_int)
    except (ValueError, RecursionError):
        return False
    return bool(found)


def inexact_integer_issue() -> dict:
    return {"code": INTEGER_TOO_LARGE, "severity": WARNING, "message": "an integer beyond 64 bits was read as a float: its last digits are lost (write such ids as strings)"}
