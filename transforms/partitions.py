"""Hive partition folders of records/ and manifests/: which columns, and how a value becomes a
folder name that stays inside the output.

A partition folder is `column=value`. Values come from the input (a label job's name, a split
given in the input), so they are encoded, not trusted: every byte outside `A-Z a-z 0-9 - _ . ~`
is percent-escaped (UTF-8), which is the encoding pyarrow.dataset (`partitioning="hive"`) and
DuckDB (`hive_partitioning=true`) decode when they read the folders back. A `/`, `\\`, `=`,
`%` or newline never reaches the file system as itself, so `../x` is the folder
`label_job=..%2Fx`, inside its parent. Null and empty values are Hive's null folder
`__HIVE_DEFAULT_PARTITION__`, which both readers give back as null. A value whose encoded folder
name would pass MAX_SEGMENT_BYTES (file systems refuse names over 255 bytes) is cut and ends in
`~` and a hash of the whole value, so distinct long values stay in distinct folders.
Beam-free.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterator
from urllib.parse import quote, unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.schema import SCHEMA

NULL_FOLDER = "__HIVE_DEFAULT_PARTITION__"
MAX_SEGMENT_BYTES = 200
NO_PARTITIONS = "none"


def _top_level(name: str) -> Callable[[pa.RecordBatch], pa.Array]:
    return lambda batch: batch.column(name)


def _nested(column: str, field: str) -> Callable[[pa.RecordBatch], pa.Array]:
    return lambda batch: pc.struct_field(batch.column(column), field)


# Partition column name -> its values in a batch. split, task and origin are columns of the
# schema, kept out of the Parquet files when they name a folder; source_format and label_job
# are read from structs that stay in the files, and add a column when the dataset is read.
KEYS: dict[str, Callable[[pa.RecordBatch], pa.Array]] = {
    "split": _top_level("split"),
    "task": _top_level("task"),
    "origin": _top_level("origin"),
    "source_format": _nested("source", "format"),
    "label_job": _nested("annotation", "job_name"),
}
RECORDS_DEFAULT = ("split", "task")


def parse_partition_by(value: Any) -> list[str]:
    """'split,task', ['split', 'task'] or 'none' (no folders) -> column names, in order."""
    items = value if isinstance(value, (list, tuple)) else [value]
    names = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    if names == [NO_PARTITIONS]:
        return []
    if NO_PARTITIONS in names:
        raise ValueError(f"'{NO_PARTITIONS}' stands alone (no partition folders), got {value!r}")
    return names


def folder_value(value: Any) -> str:
    """One partition value -> the text after `column=`, safe as one path segment."""
    if value is None or value == "":
        return NULL_FOLDER
    text = str(value)
    encoded = quote(text, safe="")
    if len(encoded) <= MAX_SEGMENT_BYTES:
        return encoded
    digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    room = MAX_SEGMENT_BYTES - len(digest) - 1
    kept, size = [], 0
    for char in text:  # whole characters only, so the cut still decodes as UTF-8
        piece = quote(char, safe="")
        if size + len(piece) > room:
            break
        kept.append(piece)
        size += len(piece)
    return "".join(kept) + "~" + digest


def value_of_folder(text: str) -> str | None:
    """The inverse of folder_value: the text after `column=` -> the value, as pyarrow.dataset
    and DuckDB read it (percent-unescaped; Hive's null folder -> None). Empty values went to
    the null folder and come back as None, and a value cut to MAX_SEGMENT_BYTES comes back
    as its cut (its start, `~` and the hash), which is all the folder holds."""
    if text == NULL_FOLDER:
        return None
    return unquote(text, encoding="utf-8", errors="strict")


def folder_path(columns: tuple[str, ...], values: tuple[Any, ...]) -> str:
    """('split', 'label_job'), ('train', '../x') -> 'split=train/label_job=..%2Fx'."""
    return "/".join(f"{name}={folder_value(value)}" for name, value in zip(columns, values))


def partition_values(path: str) -> dict[str, str | None]:
    """The inverse of folder_path: 'split=train/label_job=..%2Fx' -> {'split': 'train',
    'label_job': '../x'}, in folder order ('' -> {})."""
    values: dict[str, str | None] = {}
    for segment in filter(None, path.split("/")):
        name, sep, text = segment.partition("=")
        if not sep:
            raise ValueError(f"{segment!r} in {path!r} is not a partition folder (column=value)")
        values[name] = value_of_folder(text)
    return values


def stored_in_folders(columns: tuple[str, ...]) -> tuple[str, ...]:
    """The schema columns a partitioned Parquet file leaves out (their folder holds them)."""
    return tuple(name for name in columns if name in SCHEMA.names)


def _null_if_empty(values: pa.Array) -> pa.Array:
    """Empty and null share one folder, so they group together."""
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def partition_batch(batch: pa.RecordBatch, columns: tuple[str, ...]) -> Iterator[tuple[str, pa.RecordBatch]]:
    """A batch -> (hive path 'a=x/b=y', sub-batch) for each distinct partition value.

    Each key column is dictionary-encoded, the codes combined into one number per row, and
    the batch taken once in a stable order of it: each partition is then a zero-copy slice,
    its rows in their input order, and no row index becomes a Python object.
    """
    if batch.num_rows == 0:
        return
    if not columns:
        yield "", batch
        return
    combined = np.zeros(batch.num_rows, np.int64)
    dictionaries = []
    for name in columns:
        encoded = pc.dictionary_encode(_null_if_empty(pc.cast(KEYS[name](batch), pa.string())), null_encoding="encode")
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        dictionaries.append(encoded.dictionary.to_pylist())
        combined = combined * len(dictionaries[-1]) + encoded.indices.to_numpy(zero_copy_only=False)
    keys, inverse = np.unique(combined, return_inverse=True)
    if len(keys) == 1:
        ordered, counts = batch, [batch.num_rows]
    else:
        ordered = batch.take(pa.array(np.argsort(inverse, kind="stable")))
        counts = np.bincount(inverse, minlength=len(keys)).tolist()
    start = 0
    for key, count in zip(keys.tolist(), counts):
        values = []
        for dictionary in reversed(dictionaries):  # the mixed-radix digits, last column first
            key, digit = divmod(key, len(dictionary))
            values.append(dictionary[digit])
        yield folder_path(columns, tuple(reversed(values))), ordered.slice(start, count)
        start += count


def with_partition_columns(batch: pa.RecordBatch, values: dict[str, str | None]) -> pa.RecordBatch:
    """A batch read from a records/ file -> a canonical batch, the columns its folders hold
    (`values`, from partition_values) put back; every other column is the file's own."""
    columns = []
    for field in SCHEMA:
        if field.name in values:
            columns.append(pa.array([values[field.name]] * batch.num_rows, pa.string()).cast(field.type))
        else:
            columns.append(batch.column(field.name))
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)
