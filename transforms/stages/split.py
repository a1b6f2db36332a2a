"""AssignSplit: a deterministic train / validation / test split from a hash of the image URI.

The same image always lands in the same split, in every run and on every worker, so records of
one image never leak across splits and re-running a job does not reshuffle a dataset. The hash
is of the URI normalized (split_key), so the spellings of one image that different tools write
(an S3 https URL and s3://, file:// and a path, `./` segments, percent-escapes, a presigned
URL's query) land together.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import posixpath
import re
from urllib.parse import parse_qs, unquote, urlsplit

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.schema import SCHEMA
from transforms.stages.accounting import Accounted

STAGE = "split"

DEFAULT_RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def parse_ratios(text: str | dict) -> dict[str, float]:
    """'train=0.8,validation=0.1,test=0.1' (or a dict) -> ratios that sum to 1."""
    if isinstance(text, dict):
        ratios = {str(k): float(v) for k, v in text.items()}
    else:
        ratios = {}
        for part in str(text).split(","):
            name, _, value = part.partition("=")
            if not name.strip() or not value.strip():
                raise ValueError(f"split ratios look like train=0.8,validation=0.1,test=0.1; got {text!r}")
            ratios[name.strip()] = float(value)
    total = sum(ratios.values())
    if not ratios or not math.isfinite(total) or total <= 0 or any(v < 0 for v in ratios.values()):
        raise ValueError(f"split ratios must be finite, non-negative, with a positive sum: {text!r}")
    for name in ratios:
        if not _SPLIT_NAME.match(name):
            raise ValueError(f"a split name is letters, digits, '_' or '-' (it names a folder): {name!r}")
    return {name: value / total for name, value in ratios.items()}


_S3_HOST = re.compile(r"^(?P<bucket>[a-z0-9.-]+)\.s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com$")


def split_key(uri: str) -> str:
    """The key of an image for splitting: one key for the spellings of one URI."""
    text = uri.strip()
    if text.startswith("/data/local-files/"):  # Label Studio local storage: ?d=<path>
        found = parse_qs(urlsplit(text).query).get("d")
        if found:
            text = "/" + found[0].lstrip("/")
    if "://" not in text:
        return posixpath.normpath(unquote(text))
    parts = urlsplit(text)
    scheme, host, path = parts.scheme.lower(), (parts.hostname or "").lower(), unquote(parts.path)
    if scheme == "file":
        return posixpath.normpath(path)
    if scheme in ("http", "https"):
        match = _S3_HOST.match(host)
        if match:  # virtual-hosted S3 URL (presigned or not) -> s3://bucket/key
            scheme, host = "s3", match.group("bucket")
        elif host.startswith("s3.") and host.endswith(".amazonaws.com") or host == "s3.amazonaws.com":
            bucket, _, key = path.lstrip("/").partition("/")  # path-style S3 URL
            scheme, host, path = "s3", bucket, "/" + key
        # the query of an http URL is a signature or a cache buster, not another image
    elif parts.query:
        path = f"{path}?{parts.query}"
    return f"{scheme}://{host}{posixpath.normpath(path) if path else ''}"


# URIs that split_key returns unchanged: an object-store URL with a lower-case bucket and a path
# of plain segments (no escapes, dot segments, empty segments, query, fragment or spaces), or an
# absolute local path of the same kind. Checked for a whole column at once in Arrow; only the
# other spellings are normalized one by one.
_PLAIN_SEGMENTS = r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+$"
_PLAIN_URI = r"^(?:s3|s3a|gs|gcs|az|abfs|abfss|adl|oss|memory)://[a-z0-9._-]+" + _PLAIN_SEGMENTS
_PLAIN_PATH = r"^" + _PLAIN_SEGMENTS
_DOT_SEGMENT = r"/\.\.?(?:/|$)"


def split_keys(uris: pa.Array) -> list[str | None]:
    """split_key of every URI of a string column (None for null or empty), plain ones in bulk."""
    uris = uris.combine_chunks() if isinstance(uris, pa.ChunkedArray) else uris
    plain = pc.and_(
        pc.or_(pc.match_substring_regex(uris, _PLAIN_URI), pc.match_substring_regex(uris, _PLAIN_PATH)),
        pc.and_(pc.invert(pc.match_substring_regex(uris, _DOT_SEGMENT)), pc.invert(pc.starts_with(uris, "/data/local-files/"))),
    )
    values = uris.to_pylist()
    if pc.all(pc.fill_null(plain, False)).as_py():
        return [value or None for value in values]
    flags = pc.fill_null(plain, False).to_numpy(zero_copy_only=False)
    return [value if flag else (split_key(value) if value else None) for value, flag in zip(values, flags)]


class SplitAssigner:
    """Maps a key to a split name by where its hash falls in [0, 1)."""

    def __init__(self, ratios: dict[str, float], salt: str = ""):
        self.names = list(ratios)
        self.salt = salt.encode()
        bounds, running = [], 0.0
        for value in ratios.values():
            running += value
            bounds.append(running)
        bounds[-1] = 1.0
        self.bounds = bounds

    def assign(self, key: str) -> str:
        digest = hashlib.blake2b(self.salt + key.encode(), digest_size=8).digest()
        point = int.from_bytes(digest, "big") / 2**64
        return self.names[min(bisect.bisect_right(self.bounds, point), len(self.names) - 1)]

    def assign_keys(self, keys: list[str]) -> pa.Array:
        """`assign` of every key, the arithmetic in numpy: one hash per key is the only Python."""
        salt, blake2b = self.salt, hashlib.blake2b
        digests = b"".join([blake2b(salt + key.encode(), digest_size=8).digest() for key in keys])
        # uint64 -> float64 rounds to nearest even, as int / 2**64 does: the same point as assign()
        points = np.frombuffer(digests, dtype=">u8").astype(np.float64) / 2.0**64
        chosen = np.minimum(np.searchsorted(self.bounds, points, side="right"), len(self.names) - 1)
        return pc.dictionary_encode(pc.take(pa.array(self.names, pa.string()), pa.array(chosen)))

    def assign_batch(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        keys = split_keys(pc.struct_field(batch.column("image"), "uri"))
        if not all(keys):  # no image URI: the record's own id keeps it stable
            ids = batch.column("record_id").to_pylist()
            keys = [key or rid for key, rid in zip(keys, ids)]
        column = self.assign_keys(keys).cast(SCHEMA.field("split").type)
        return batch.set_column(SCHEMA.get_field_index("split"), "split", column)


class _AssignSplitFn(beam.DoFn):
    def __init__(self, ratios, salt):
        self._ratios = ratios
        self._salt = salt

    def setup(self):
        self._assigner = SplitAssigner(self._ratios, self._salt)

    def process(self, batch: pa.RecordBatch):
        yield self._assigner.assign_batch(batch)


@beam.typehints.with_input_types(pa.RecordBatch)
class AssignSplit(beam.PTransform):
    """RecordBatches -> {main: the same batches with `split` set, dead_letters (none), ledger}."""

    def __init__(self, ratios: dict[str, float] | None = None, salt: str = ""):
        super().__init__()
        self._ratios = dict(ratios or DEFAULT_RATIOS)
        self._salt = salt

    def expand(self, batches):
        return batches | Accounted(STAGE, _AssignSplitFn(self._ratios, self._salt), count_warnings=True)
