"""One storage configuration for every reader and writer, through fsspec.

Every location is a URL fsspec understands (local path, file://, s3://, gs://, az://, memory://).
Credentials come from the usual environment and profiles (AWS_ENDPOINT_URL, AWS_PROFILE,
GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*); the storage options cover the rest. They are
either one dict for every protocol, or a dict keyed by protocol: {"s3": {...}, "gs": {...}}.

`Storage` carries those options as one picklable value: the launcher builds it once, every
transform takes it, and each worker process resolves a protocol's filesystem once (the resolved
filesystems are never pickled).
"""

from __future__ import annotations

import functools
import posixpath
import re
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

_PROTOCOL_KEYS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "file", "memory", "http", "https"}
_ALIASES = {"gcs": "gs", "s3a": "s3", "abfs": "az", "abfss": "az"}

# Option names whose values never reach logs, outputs or run.json.
SECRET_HINTS = ("key", "secret", "token", "password", "credential", "sas", "connection_string", "signature")
REDACTED = "***"
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def protocol_of(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "file"


def split_url(url: str) -> tuple[str, str]:
    """'s3://bucket/key' -> ('s3', 'bucket/key'); a local path -> ('', path)."""
    if "://" in url:
        scheme, rest = url.split("://", 1)
        return scheme, rest
    return "", url


def options_for(url: str, storage_options: dict | None) -> dict[str, Any]:
    """The fsspec keyword arguments for this URL's protocol."""
    if not storage_options:
        return {}
    if any(key in _PROTOCOL_KEYS for key in storage_options):
        protocol = protocol_of(url)
        return dict(storage_options.get(protocol) or storage_options.get(_ALIASES.get(protocol, protocol)) or {})
    return {} if protocol_of(url) in ("file", "memory") else dict(storage_options)


def filesystem(url: str, storage_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    options = options_for(url, storage_options)
    if _ALIASES.get(protocol_of(url), protocol_of(url)) == "gs" and _gcs_emulated(options):
        return _plain_gcs(url, options)
    return fsspec.core.url_to_fs(url, **options)


def _gcs_emulated(options: dict) -> bool:
    import os

    return bool(options.get("endpoint_url")) or os.environ.get("STORAGE_EMULATOR_HOST", "") not in ("", "default")


def _plain_gcs(url: str, options: dict) -> tuple[fsspec.AbstractFileSystem, str]:
    """gcsfs's JSON-API filesystem, for a GCS endpoint of one's own (an emulator).

    gcsfs's default class first asks the Storage Control gRPC API what kind each bucket is, over
    TLS at the same host: an emulator serving plain HTTP never answers, and every bucket costs
    a 60 s timeout. The JSON API alone is what emulators serve."""
    fs = _json_api_gcs()(**options)
    return fs, fs._strip_protocol(url)


@functools.lru_cache(maxsize=1)
def _json_api_gcs():
    from gcsfs.core import GCSFileSystem

    class JsonApiGCSFileSystem(GCSFileSystem):
        async def _mv_file(self, path1, path2, **kwargs):
            # Emulators serve no objects.moveTo: gcsfs would try it, log the failure with a
            # traceback and copy; this copies and deletes straight away.
            await self._cp_file(path1, path2)
            await self._rm_file(path1)

    return JsonApiGCSFileSystem


class Storage:
    """The storage options of a job, as one picklable value with a per-process filesystem cache."""

    def __init__(self, options: dict | None = None):
        self.options: dict = dict(options or {})
        self._filesystems: dict[str, fsspec.AbstractFileSystem] = {}

    def __getstate__(self):
        return {"options": self.options}

    def __setstate__(self, state):
        self.options = state["options"]
        self._filesystems = {}

    def __eq__(self, other):
        return isinstance(other, Storage) and other.options == self.options

    def __repr__(self):
        return f"Storage({redact(self.options)!r})"

    def fs(self, url: str) -> tuple[fsspec.AbstractFileSystem, str]:
        """(filesystem, path) for a URL; one filesystem per protocol per process."""
        protocol = _ALIASES.get(protocol_of(url), protocol_of(url))
        cached = self._filesystems.get(protocol)
        if cached is None:
            cached, path = filesystem(url, self.options)
            self._filesystems[protocol] = cached
            return cached, path
        return cached, cached._strip_protocol(url)

    def open(self, url: str, mode: str = "rb", **kwargs):
        fs, path = self.fs(url)
        return fs.open(path, mode, **kwargs)

    def exists(self, url: str) -> bool:
        fs, path = self.fs(url)
        return fs.exists(path)

    def expand(self, pattern: str) -> list[tuple[str, int]]:
        return expand(pattern, self.options)

    def write_atomically(self, url: str, data: bytes) -> None:
        write_atomically(url, data, self.options)

    def read_bytes(self, url: str) -> bytes:
        fs, path = self.fs(url)
        return fs.cat_file(path)


def to_url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A filesystem path back to the URL users write: plain paths for local files."""
    if isinstance(fs, LocalFileSystem):
        return posixpath.normpath(path)
    return fs.unstrip_protocol(path)


def expand(pattern: str, storage_options: dict | None = None) -> list[tuple[str, int]]:
    """Files matching a glob pattern (or one path), as (url, size), sorted; folders excluded."""
    fs, path = filesystem(pattern, storage_options)
    if fs.isfile(path):
        return [(_as_given(pattern, to_url(fs, path)), fs.size(path))]
    found = fs.glob(path, detail=True) if fsspec.core.has_magic(path) else {}
    return sorted(
        (_as_given(pattern, to_url(fs, name)), info.get("size") or 0)
        for name, info in found.items()
        if info.get("type") != "directory"
    )


def _as_given(pattern: str, url: str) -> str:
    """A found URL in the scheme the user wrote: adlfs names every match `abfs://`, also for
    an `az://` pattern, and the records, run.json and resolved references keep the user's."""
    if "://" in pattern and "://" in url and protocol_of(url) != protocol_of(pattern):
        return f"{protocol_of(pattern)}://{url.split('://', 1)[1]}"
    return url


def open_file(url: str, mode: str = "rb", storage_options: dict | None = None, **kwargs):
    fs, path = filesystem(url, storage_options)
    return fs.open(path, mode, **kwargs)


def write_atomically(url: str, data: bytes, storage_options: dict | None = None) -> None:
    """Writes a whole file under a hidden name, then renames it: never seen half written.

    The one place a single file is written whole; run.json, stats, counters and markers use it."""
    fs, path = filesystem(url, storage_options)
    folder, name = posixpath.split(path)
    temp = posixpath.join(folder, f".{name}.inprogress")
    fs.makedirs(folder, exist_ok=True)
    with fs.open(temp, "wb") as handle:
        handle.write(data)
    fs.mv(temp, path)


def move(fs: fsspec.AbstractFileSystem, source: str, target: str) -> None:
    """Moves a file or a folder tree (filesystem paths). A rename on local disk; on object
    storage, where folders are key prefixes, each object is copied then deleted."""
    if isinstance(fs, LocalFileSystem) or fs.isfile(source):
        fs.mv(source, target, recursive=True)
        return
    source = source.rstrip("/")
    for path in fs.find(source):
        fs.mv(path, target.rstrip("/") + path[len(source):])
    if fs.exists(source):
        fs.rm(source, recursive=True)


def join(base: str, *parts: str) -> str:
    scheme, rest = split_url(base)
    joined = posixpath.join(rest, *parts)
    return f"{scheme}://{joined}" if scheme else joined


def relative_to(url: str, root: str) -> str:
    """'out/records/a/b.parquet' relative to 'out/records' -> 'a/b.parquet'."""
    root = root.rstrip("/") + "/"
    if not url.startswith(root):
        raise ValueError(f"{url} is not under {root}")
    return url[len(root):]


def parent(url: str) -> str:
    scheme, rest = split_url(url)
    return f"{scheme}://{posixpath.dirname(rest)}" if scheme else posixpath.dirname(url)


def _secret_key(key: Any) -> bool:
    return any(hint in str(key).lower() for hint in SECRET_HINTS)


def redact_url(text: str) -> str:
    """'s3://user:pw@host/x' -> 's3://***@host/x': userinfo never leaves the process."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text) if "@" in text else text


def redact(options: Any) -> Any:
    """A copy of an options structure with secret-looking values and URL userinfo replaced."""
    if isinstance(options, dict):
        return {
            key: REDACTED if _secret_key(key) and value not in (None, "", {}, []) else redact(value)
            for key, value in options.items()
        }
    if isinstance(options, (list, tuple)):
        return [redact(v) for v in options]
    if isinstance(options, str):
        return redact_url(options)
    return options


# -- what a job may open -------------------------------------------------------------------
# A manifest is untrusted input: the files it references are opened only inside allowed roots.
_OBJECT_STORES = {"s3", "gs", "az", "adl"}


def strip_userinfo(url: str) -> str:
    return _USERINFO.sub(lambda m: m.group("scheme"), url) if "@" in url else url


def _normal(url: str) -> tuple[str, str] | None:
    """(scheme, normalized path) for comparing a URL with a root; None when it cannot be
    compared safely (a `..` left in an object key). Local paths resolve symlinks and `..`."""
    scheme, rest = split_url(strip_userinfo(url))
    scheme = _ALIASES.get(scheme.lower(), scheme.lower())
    if scheme in ("", "file"):
        return "file", _resolved_local(rest)
    parts = rest.split("?", 1)[0].split("#", 1)[0].split("/")
    if ".." in parts or "." in parts:
        return None
    return scheme, "/".join(p for p in parts if p)


def _resolved_local(path: str) -> str:
    """os.path.realpath, with the folder's resolution cached: a manifest's thousands of masks
    share a few folders, and realpath walks every component with a system call each. The file
    itself is resolved afresh when it is a symlink."""
    import os

    folder, name = os.path.split(os.path.abspath(path))
    full = os.path.join(_resolved_folder(folder), name)
    return os.path.realpath(full) if os.path.islink(full) else full


@functools.lru_cache(maxsize=4096)
def _resolved_folder(folder: str) -> str:
    import os

    return os.path.realpath(folder)


def default_root(manifest_url: str) -> str:
    """The root a manifest's references may use by default: its bucket on object storage,
    its own folder elsewhere (local disk, http, memory)."""
    scheme, rest = split_url(strip_userinfo(manifest_url))
    if _ALIASES.get(scheme, scheme) in _OBJECT_STORES:
        return f"{scheme}://{rest.split('/', 1)[0]}"
    return parent(manifest_url) or "."


def within_roots(url: str, roots) -> bool:
    """Whether `url` lies inside one of `roots` (URLs or paths), after resolving `..`, symlinks
    (local) and scheme aliases. Path-segment aware: root /data does not cover /database."""
    target = _normal(url)
    if target is None:
        return False
    for root in roots:
        base = _normal(root)
        if base is None or base[0] != target[0]:
            continue
        prefix = base[1].rstrip("/")
        if target[1] == prefix or target[1].startswith(prefix + "/") or prefix == "":
            return True
    return False


# -- why storage failed --------------------------------------------------------------------
NOT_FOUND, NO_CREDENTIALS, ACCESS_DENIED, UNREACHABLE, IO_ERROR = "not_found", "no_credentials", "access_denied", "unreachable", "io_error"
REASONS = (NOT_FOUND, NO_CREDENTIALS, ACCESS_DENIED, UNREACHABLE, IO_ERROR)
# Exception class names (botocore, aiohttp, urllib3, google-auth, azure) by reason, matched over
# the MRO so no storage SDK is imported here.
_REASON_BY_NAME = {
    "NoCredentialsError": NO_CREDENTIALS,
    "PartialCredentialsError": NO_CREDENTIALS,
    "CredentialRetrievalError": NO_CREDENTIALS,
    "DefaultCredentialsError": NO_CREDENTIALS,
    "ClientAuthenticationError": ACCESS_DENIED,
    "EndpointConnectionError": UNREACHABLE,
    "ConnectTimeoutError": UNREACHABLE,
    "ReadTimeoutError": UNREACHABLE,
    "ConnectionClosedError": UNREACHABLE,
    "ClientConnectorError": UNREACHABLE,
    "ServerDisconnectedError": UNREACHABLE,
    "ServerTimeoutError": UNREACHABLE,
    "ServiceRequestError": UNREACHABLE,
    "NewConnectionError": UNREACHABLE,
    # a transfer cut short (fewer bytes than Content-Length): the connection broke mid-read
    "ClientPayloadError": IO_ERROR,
    "IncompleteRead": IO_ERROR,
    "IncompleteReadError": IO_ERROR,
    "ResponseStreamingError": IO_ERROR,
}


# HTTP errors of gcsfs (HttpError.code) and the Azure SDK (HttpResponseError.status_code).
_HTTP_ERRORS = {"HttpError", "HttpResponseError"}
_REASON_BY_STATUS = {401: ACCESS_DENIED, 403: ACCESS_DENIED, 404: NOT_FOUND}


def failure_reason(exc: BaseException) -> str | None:
    """The class of a storage failure: not_found, no_credentials, access_denied, unreachable,
    io_error; None when the exception is not a storage failure (a bug to report)."""
    for cause in (exc, exc.__cause__, exc.__context__):
        if cause is None:
            continue
        for cls in type(cause).__mro__:
            if cls.__name__ in _REASON_BY_NAME:
                return _REASON_BY_NAME[cls.__name__]
            if cls.__name__ in _HTTP_ERRORS:
                status = getattr(cause, "status_code", None) or getattr(cause, "code", None)
                return _REASON_BY_STATUS.get(status, IO_ERROR)
    # adlfs, given neither a connection string nor an account with credentials
    if isinstance(exc, ValueError) and "connection_string or account_name" in str(exc):
        return NO_CREDENTIALS
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return NOT_FOUND
    if isinstance(exc, PermissionError):
        return ACCESS_DENIED
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return UNREACHABLE
    if isinstance(exc, OSError):
        text = str(exc)
        if "Unable to locate credentials" in text:
            return NO_CREDENTIALS
        if "AccessDenied" in text or "Forbidden" in text or "403" in text:
            return ACCESS_DENIED
        return IO_ERROR
    return None
