"""The canonical Arrow schema: the one source of truth for every labelbeam record.

One row is one image with one annotation set. Coordinates are normalized to [0, 1] of the
image, origin top left, x to the right, y down. docs/schema.md documents every column.
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
from typing import Iterable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

SCHEMA_VERSION = "1.0"

TASKS = (
    "classification",
    "multilabel_classification",
    "object_detection",
    "instance_segmentation",
    "semantic_segmentation",
    "keypoints",
    "unlabeled",
)
ORIGINS = ("ground_truth", "prediction")
SEVERITIES = ("error", "warning")

_STR_DICT = pa.dictionary(pa.int32(), pa.string())

BBOX = pa.struct(
    [
        ("x_min", pa.float64()),
        ("y_min", pa.float64()),
        ("x_max", pa.float64()),
        ("y_max", pa.float64()),
    ]
)
SOURCE = pa.struct(
    [
        ("uri", pa.string()),
        ("line", pa.int64()),
        ("offset", pa.int64()),
        ("format", pa.string()),
        ("attribute", pa.string()),
    ]
)
IMAGE = pa.struct(
    [
        ("uri", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("format", pa.string()),
    ]
)
LABEL = pa.struct([("name", pa.string()), ("score", pa.float32())])
KEYPOINT = pa.struct(
    [
        ("label", pa.string()),
        ("x", pa.float64()),
        ("y", pa.float64()),
        ("visible", pa.bool_()),
    ]
)
OBJECT = pa.struct(
    [
        ("label", pa.string()),
        ("score", pa.float32()),
        ("is_crowd", pa.bool_()),
        ("bbox", BBOX),
        ("rotation", pa.float32()),
        ("polygon", pa.list_(pa.list_(pa.float64()))),
        ("keypoints", pa.list_(KEYPOINT)),
        ("mask_rle", pa.binary()),
        ("area", pa.float64()),
        ("attributes", pa.string()),
    ]
)
COLOR = pa.struct(
    [
        ("index", pa.int32()),
        ("class_name", pa.string()),
        ("hex_color", pa.string()),
        ("confidence", pa.float32()),
    ]
)
CLASS_PIXELS = pa.struct([("class_name", pa.string()), ("pixels", pa.int64())])
MASK = pa.struct(
    [
        ("uri", pa.string()),
        ("color_map", pa.list_(COLOR)),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("class_pixels", pa.list_(CLASS_PIXELS)),
        ("foreground_bbox", BBOX),
        ("validated", pa.bool_()),
    ]
)
ANNOTATION = pa.struct(
    [
        ("id", pa.string()),
        ("job_name", pa.string()),
        ("annotator", pa.string()),
        ("human_annotated", pa.bool_()),
        ("created_at", pa.timestamp("ms", tz="UTC")),
        ("confidence", pa.float32()),
        ("model_version", pa.string()),
    ]
)
ISSUE = pa.struct(
    [("code", pa.string()), ("severity", pa.string()), ("message", pa.string())]
)

SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("source", SOURCE),
        pa.field("image", IMAGE),
        pa.field("task", _STR_DICT),
        pa.field("origin", _STR_DICT),
        pa.field("labels", pa.list_(LABEL)),
        pa.field("objects", pa.list_(OBJECT)),
        pa.field("mask", MASK),
        pa.field("annotation", ANNOTATION),
        pa.field("split", _STR_DICT),
        pa.field("issues", pa.list_(ISSUE)),
        pa.field("extra", pa.string()),
    ],
    metadata={
        b"labelbeam.schema_version": SCHEMA_VERSION.encode(),
        b"labelbeam.coordinates": b"normalized [0,1], origin top left, x right, y down",
    },
)

# Hive partition columns of the records/ dataset: kept out of the Parquet files themselves.
PARTITION_COLUMNS = ("split", "task")


def file_schema(partition_columns: tuple[str, ...] = PARTITION_COLUMNS) -> pa.Schema:
    """SCHEMA without the hive partition columns: what a records/ Parquet file holds."""
    result = SCHEMA
    for name in partition_columns:
        result = result.remove(result.get_field_index(name))
    return result


@dataclasses.dataclass
class RawBatch:
    """Raw records of one shard of one file, before decoding: what ReadManifests emits.

    `lines` are 1-based line numbers (element indices for JSON arrays), `offsets` byte offsets;
    `failures` are (index into the lists, code, message) of records the reader already knows
    are bad (LINE_TOO_LONG, READ_FAILED); `blank` counts blank lines, which carry no record.
    """

    uri: str
    format: str | None
    shard: int
    lines: list[int] = dataclasses.field(default_factory=list)
    offsets: list[int] = dataclasses.field(default_factory=list)
    raws: list[bytes] = dataclasses.field(default_factory=list)
    failures: list[tuple[int, str, str]] = dataclasses.field(default_factory=list)
    blank: int = 0
    #: the member of a document the elements were read from (a COCO file's `images`,
    #: `annotations`, `categories`; `results`): "" for manifests of records
    member: str = ""

    def size(self) -> int:
        return len(self.raws)


def record_id(uri: str, offset: int, index: int) -> str:
    """A deterministic id from where the record came from (file, byte offset, annotation)."""
    digest = hashlib.blake2b(f"{uri}\x00{offset}\x00{index}".encode(), digest_size=12)
    return digest.hexdigest()


def record_ids(uri: str, offsets: Iterable[int], index: int = 0) -> pa.Array:
    """record_id(uri, offset, index) of each offset, as one string column.

    The same digests: the hash of the shared prefix is computed once and copied per offset,
    and the hex text of all of them is one buffer sliced every 24 characters (no Python
    string per record)."""
    copy = hashlib.blake2b(f"{uri}\x00".encode(), digest_size=12).copy
    suffix = f"\x00{index}".encode()

    def digest(offset: int) -> bytes:
        state = copy()
        state.update(b"%d%b" % (offset, suffix))
        return state.digest()

    hexed = b"".join(map(digest, offsets)).hex().encode()
    n = len(hexed) // 24
    ends = np.arange(0, 24 * n + 1, 24, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(ends), pa.py_buffer(hexed)])


def rows_to_batch(rows: Iterable[dict]) -> pa.RecordBatch:
    """Canonical row dicts -> one RecordBatch of SCHEMA (missing keys become null)."""
    return pa.RecordBatch.from_pylist(list(rows), schema=SCHEMA)


def empty_lists(n: int, column: str) -> pa.Array:
    """`n` empty lists of a list column of SCHEMA (no labels, objects or issues)."""
    item = SCHEMA.field(column).type.value_type
    return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], item), type=SCHEMA.field(column).type)


def constant_dictionary(n: int, value: str | None) -> pa.DictionaryArray:
    """A dictionary column (task, origin, split) holding `value` (or null) in every row."""
    if value is None:
        return pa.DictionaryArray.from_arrays(pa.nulls(n, pa.int32()), pa.array([], pa.string()))
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value]))


def batch_rows(batch: pa.RecordBatch) -> list[dict]:
    """batch.to_pylist(), column by column: Arrow converts a column at a time several times
    faster than a row at a time, and dictionary columns faster as plain strings."""
    names = batch.schema.names
    columns = []
    for column in batch.columns:
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        columns.append(column.to_pylist())
    return [dict(zip(names, values)) for values in zip(*columns)]


def dumps_extra(extra: dict | None) -> str | None:
    """The `extra` column: source fields without a column, as deterministic JSON."""
    if not extra:
        return None
    try:
        return orjson.dumps(extra, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError as exc:  # nested deeper than JSON encoders go (254 levels)
        from transforms.errors import INVALID_FIELD_TYPE, RecordError

        raise RecordError(INVALID_FIELD_TYPE, f"a field the schema keeps in extra cannot be stored: {exc}") from None


def loads_extra(text: str | None) -> dict:
    return orjson.loads(text) if text else {}


def object_attributes(obj: dict) -> dict:
    """An object's `attributes` JSON text as a dict; {} when it has none, or holds no JSON
    object (a writer reads what it can and writes the rest without them)."""
    text = obj.get("attributes")
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def issue(code: str, message: str, severity: str = "warning") -> dict:
    return {"code": code, "severity": severity, "message": message}


def append_issues(batch: pa.RecordBatch, found: list[tuple[int, str, str, str]]) -> pa.RecordBatch:
    """`batch` with (row index, code, severity, message) findings appended to rows' `issues`.

    Columnar: the existing and the new issues are concatenated with their row indices, stably
    sorted by row, and rebuilt as one list column; no row becomes a Python dict.
    """
    if not found:
        return batch
    issues = batch.column("issues")
    old_rows = pc.list_parent_indices(issues)
    new_rows = pa.array([f[0] for f in found], pa.int64())
    new_issues = pa.array([{"code": f[1], "severity": f[2], "message": f[3]} for f in found], ISSUE)
    rows = pa.concat_arrays([old_rows.cast(pa.int64()), new_rows])
    flat = pa.concat_arrays([pc.list_flatten(issues), new_issues])
    order = pc.array_sort_indices(rows)  # stable: a row's own issues keep their order
    rows_sorted = pc.take(rows, order).to_numpy()
    counts = np.bincount(rows_sorted, minlength=batch.num_rows)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    column = pa.ListArray.from_arrays(offsets, pc.take(flat, order), type=SCHEMA.field("issues").type)
    return batch.set_column(batch.schema.get_field_index("issues"), "issues", column)


def _names(*fields) -> "types.SimpleNamespace":
    return types.SimpleNamespace(**{f.name: f.name for f in fields})


# Names of SCHEMA's columns (COL.image) and of its structs' fields (FIELD.width), taken from the
# definitions above, so code that reads rows by name never spells a name the schema lacks.
COL = _names(*SCHEMA)
FIELD = _names(*(f for t in (SOURCE, IMAGE, LABEL, KEYPOINT, OBJECT, BBOX, COLOR, CLASS_PIXELS, MASK, ANNOTATION, ISSUE) for f in t))
