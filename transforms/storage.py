"""One storage configuration for every reader and writer, through fsspec.

Every location is a URL fsspec understands (local path, file://, s3://, gs://, az://, memory://).
Credentials come from the usual environment and profiles (AWS_ENDPOINT_URL, AWS_PROFILE,
GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*); `storage_options` covers the rest. It is either
one dict for every protocol, or a dict keyed by protocol: {"s3": {...}, "gs": {...}}.
"""

from __future__ import annotations

import posixpath
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

_PROTOCOL_KEYS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "file", "memory", "http", "https"}

# Option names whose values never reach logs or run.json.
SECRET_HINTS = ("key", "secret", "token", "password", "credential", "sas", "connection_string")


def protocol_of(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "file"


def options_for(url: str, storage_options: dict | None) -> dict[str, Any]:
    """The fsspec keyword arguments for this URL's protocol."""
    if not storage_options:
        return {}
    if any(key in _PROTOCOL_KEYS for key in storage_options):
        protocol = protocol_of(url)
        aliases = {"gcs": "gs", "s3a": "s3", "abfs": "az", "abfss": "az"}
        return dict(
            storage_options.get(protocol) or storage_options.get(aliases.get(protocol, protocol)) or {}
        )
    return {} if protocol_of(url) in ("file", "memory") else dict(storage_options)


def filesystem(url: str, storage_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    return fsspec.core.url_to_fs(url, **options_for(url, storage_options))


def to_url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A filesystem path back to the URL users write: plain paths for local files."""
    if isinstance(fs, LocalFileSystem):
        return posixpath.normpath(path)
    return fs.unstrip_protocol(path)


def expand(pattern: str, storage_options: dict | None = None) -> list[tuple[str, int]]:
    """Files matching a glob pattern (or one path), as (url, size), sorted; folders excluded."""
    fs, path = filesystem(pattern, storage_options)
    if fs.isfile(path):
        return [(to_url(fs, path), fs.size(path))]
    found = fs.glob(path, detail=True) if fsspec.core.has_magic(path) else {}
    return sorted(
        (to_url(fs, name), info.get("size") or 0)
        for name, info in found.items()
        if info.get("type") != "directory"
    )


def open_file(url: str, mode: str = "rb", storage_options: dict | None = None, **kwargs):
    fs, path = filesystem(url, storage_options)
    return fs.open(path, mode, **kwargs)


def write_atomically(url: str, data: bytes, storage_options: dict | None = None) -> None:
    """Writes a whole file under a hidden name, then renames it: never seen half written."""
    fs, path = filesystem(url, storage_options)
    folder, name = posixpath.split(path)
    temp = posixpath.join(folder, f".{name}.inprogress")
    fs.makedirs(folder, exist_ok=True)
    with fs.open(temp, "wb") as handle:
        handle.write(data)
    fs.mv(temp, path)


def join(base: str, *parts: str) -> str:
    if "://" in base:
        scheme, rest = base.split("://", 1)
        return f"{scheme}://{posixpath.join(rest, *parts)}"
    return posixpath.join(base, *parts)


def parent(url: str) -> str:
    if "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{posixpath.dirname(rest)}"
    return posixpath.dirname(url)


def redact(options: Any) -> Any:
    """A copy of an options structure with secret-looking values replaced."""
    if isinstance(options, dict):
        return {
            key: "***" if any(h in str(key).lower() for h in SECRET_HINTS) and value else redact(value)
            for key, value in options.items()
        }
    if isinstance(options, list):
        return [redact(v) for v in options]
    return options
