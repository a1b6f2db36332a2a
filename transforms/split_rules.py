"""What decides a record's split, before the hash: the key of its image, its group, and a split
the input already gives. Beam-free; transforms/split_assigner.py applies it to batches.

Precedence, for each record:

1. with keep_input: a `split` field of the source record (a line's own key, an Azure line's
   key, a Label Studio task's data or task field), when it is a split name;
2. with keep_input: the name of the input file the record was read from, when one of its words
   (split at anything but letters and digits) names a split and no other word names another
   (`train_annotations.jsonl`, `validation_annotations.jsonl`, `val.manifest`, `test-2024.json`;
   not `latest.json`, not `train_val.jsonl`);
3. with keep_input: the folder nearest the image in its URI that names a split
   (`/train/`, `/val/`, `/validation/`, `/test/`, ... or one of the configured split names);
4. the stable hash of the record's key: its image (`by="image"`), or its group (`by="group"`),
   or, with no group value, its image.

A given split is mapped onto the configured names of the same kind (`val` -> `validation`, or
`validation` -> `val` when the ratios name `val`); another name is kept as it is written when
it is letters, digits, `_` or `-`, and ignored (the record is hashed) otherwise.
"""

from __future__ import annotations

import math
import posixpath
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from transforms.formats.base import UnknownFormatError, get_format
from transforms.schema import loads_extra

DEFAULT_RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}
SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_WORDS = re.compile(r"[^a-z0-9]+")
INPUT_SPLIT_FIELD = "split"

# Spellings of the three usual splits, in folder names and in `split` fields.
SPLIT_KINDS = {
    "train": ("train", "training"),
    "validation": ("validation", "val", "valid"),
    "test": ("test", "testing"),
}

BY_IMAGE = "image"
BY_GROUP = "group"
SPLIT_BY = (BY_IMAGE, BY_GROUP)
GROUP_FOLDER = "folder"
GROUP_ATTRIBUTE = "attribute:"


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
        if not SPLIT_NAME.match(name):
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


def parse_group(text: str | None) -> str:
    """`folder` or `attribute:NAME` (checked at launch); None -> folder."""
    value = (text or GROUP_FOLDER).strip()
    if value == GROUP_FOLDER:
        return value
    if value.startswith(GROUP_ATTRIBUTE) and value[len(GROUP_ATTRIBUTE):].strip():
        return GROUP_ATTRIBUTE + value[len(GROUP_ATTRIBUTE):].strip()
    raise ValueError(f"a split group is 'folder' or 'attribute:NAME' (a field of the source records), got {text!r}")


def folder_of(image_key: str) -> str:
    """The folder an image is in, from its split key: 's3://b/cats/1.jpg' -> 's3://b/cats'."""
    return posixpath.dirname(image_key.split("?", 1)[0])


def source_fields(format_name: str | None, extra: str | None) -> dict[str, Any]:
    """The source record's own fields, as its format kept them in `extra`."""
    if not extra or not format_name:
        return {}
    try:
        fmt = get_format(format_name)
    except UnknownFormatError:
        return {}
    return fmt.source_fields(loads_extra(extra))


def group_value(value: Any) -> str | None:
    """A field's value as a group: text, numbers and flags; nothing for null, '' or a list."""
    if value is None or isinstance(value, (dict, list)) or value == "":
        return None
    return str(value)


class InputSplits:
    """Reads the split a record's input already gives, in the configured names."""

    def __init__(self, names: list[str]):
        self.names = list(names)
        self.aliases: dict[str, str] = {}
        for kind, spellings in SPLIT_KINDS.items():
            configured = next((n for n in self.names if n.lower() in spellings), kind)
            self.aliases.update({spelling: configured for spelling in spellings})
        self.aliases.update({name.lower(): name for name in self.names})

    def from_field(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        text = value.strip()
        if text in self.names:
            return text
        known = self.aliases.get(text.lower())
        if known is not None:
            return known
        return text if SPLIT_NAME.match(text) else None

    def from_file_name(self, source_uri: str | None) -> str | None:
        """The split the input file's name gives: exactly one split among its words."""
        if not source_uri:
            return None
        name = posixpath.basename(urlsplit(source_uri).path if "://" in source_uri else source_uri)
        found = {self.aliases[word] for word in _WORDS.split(name.lower()) if word in self.aliases}
        return found.pop() if len(found) == 1 else None

    def from_folders(self, image_key: str) -> str | None:
        """The split the nearest folder of the image names; its file name is not a folder."""
        folder = folder_of(image_key)
        path = urlsplit(folder).path if "://" in folder else folder  # a bucket is not a folder
        for segment in reversed(path.split("/")):
            known = self.aliases.get(segment.lower())
            if known is not None:
                return known
        return None
