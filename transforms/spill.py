"""Keyed entries spilled to files by bucket: a join by key that holds one bucket at a time.

A join by key (COCO's annotations to their image) through a runner's GroupByKey of every entry
costs the local runners the whole input in memory (they hold a shuffle as Python objects). Here
each worker writes the entries it keyed to one file per bucket (`bucket_of` the key) and emits
only (bucket, file name); a GroupByKey of those names is small, and the join then reads one
bucket's files, groups them by key in memory, and goes on to the next. Memory is one bucket's
entries (the input / the number of buckets), whatever the input's size.

A file: records of a 8-byte header (key length, value length, little-endian uint32), the key
as JSON, the value's bytes.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from typing import Any, Callable, Iterable

import orjson

_HEAD = struct.Struct("<II")
#: bytes of input per bucket the number of buckets aims at
BUCKET_BYTES = 16 << 20
MAX_BUCKETS = 4096


def bucket_count(input_bytes: int) -> int:
    """Buckets for an input of this size: about BUCKET_BYTES each, 1 to MAX_BUCKETS."""
    return max(1, min(MAX_BUCKETS, -(-int(input_bytes) // BUCKET_BYTES)))


def bucket_of(key: Any, buckets: int) -> int:
    """The bucket of a key (a JSON value): the same on every worker and run."""
    return zlib.crc32(orjson.dumps(key)) % buckets


def write_buckets(open_file: Callable[[str, str], Any], folder: str, entries: Iterable[tuple[Any, bytes]], buckets: int) -> list[tuple[int, str]]:
    """(key, value bytes) entries -> one new file per bucket they fall in, under `folder`;
    -> [(bucket, file URL)]. `open_file(url, mode)` opens a file of the job's storage."""
    by_bucket: dict[int, list[bytes]] = {}
    for key, value in entries:
        encoded = orjson.dumps(key)
        by_bucket.setdefault(bucket_of(key, buckets), []).append(_HEAD.pack(len(encoded), len(value)) + encoded + value)
    written = []
    for bucket, records in sorted(by_bucket.items()):
        url = f"{folder.rstrip('/')}/{bucket:05d}-{uuid.uuid4().hex}.spill"
        with open_file(url, "wb") as out:
            out.write(b"".join(records))
        written.append((bucket, url))
    return written


def read_bucket(open_file: Callable[[str, str], Any], urls: Iterable[str]) -> dict[Any, list[bytes]]:
    """Every entry of a bucket's files, grouped by key (in the order of the files given)."""
    groups: dict[Any, list[bytes]] = {}
    for url in urls:
        with open_file(url, "rb") as handle:
            data = handle.read()
        position = 0
        while position < len(data):
            key_length, value_length = _HEAD.unpack_from(data, position)
            position += _HEAD.size
            key = orjson.loads(data[position : position + key_length])
            position += key_length
            groups.setdefault(key, []).append(data[position : position + value_length])
            position += value_length
    return groups
