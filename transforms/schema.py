"""The canonical Arrow schema: the one source of truth for every labelbeam record.

One row is one image with one annotation set. Coordinates are normalized to [0, 1] of the
image, origin top left, x to the right, y down. docs/schema.md documents every column.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import orjson
import pyarrow as pa

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


def record_id(uri: str, offset: int, index: int) -> str:
    """A deterministic id from where the record came from (file, byte offset, annotation)."""
    digest = hashlib.blake2b(f"{uri}\x00{offset}\x00{index}".encode(), digest_size=12)
    return digest.hexdigest()


def rows_to_batch(rows: Iterable[dict]) -> pa.RecordBatch:
    """Canonical row dicts -> one RecordBatch of SCHEMA (missing keys become null)."""
    return pa.RecordBatch.from_pylist(list(rows), schema=SCHEMA)


def dumps_extra(extra: dict | None) -> str | None:
    """The `extra` column: source fields without a column, as deterministic JSON."""
    if not extra:
        return None
    return orjson.dumps(extra, option=orjson.OPT_SORT_KEYS).decode()


def loads_extra(text: str | None) -> dict:
    return orjson.loads(text) if text else {}


def issue(code: str, message: str, severity: str = "warning") -> dict:
    return {"code": code, "severity": severity, "message": message}
