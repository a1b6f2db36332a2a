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
import inspect
import os
import posixpath
import re
import stat
import threading
from typing import Any, Callable

import fsspec
from fsspec.implementations.local import LocalFileSystem

_PROTOCOL_KEYS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "file", "memory", "http", "https"}
_ALIASES = {"gcs": "gs", "s3a": "s3", "abfs": "az", "abfss": "az"}

# Option names whose values never reach logs, outputs or run.json.
SECRET_HINTS = ("key", "secret", "token", "password", "credential", "sas", "connection_string", "signature")
REDACTED = "***"
# URL userinfo: `scheme://user:pw@host`, also with JSON's escaped slashes (`s3:\/\/u:pw@b`, as a
# raw manifest line may hold it) and a password holding `@` (up to the last `@` before the host).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*:(?:\\?/){2})(?P<userinfo>[^/\s\"'<>\\]+)@")
# `user:pw@host` without a scheme: how clients quote a URL they failed on (botocore's
# `Invalid bucket name "u:pw@bucket"`).
_BARE_USERINFO = re.compile(r"(?<![\w.+%~-])[\w.+%~-]+:[^\s/\"'<>\\@]+@(?=[\w\[])")


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


# -- how long storage may keep the job waiting ---------------------------------------------
# --storage_timeout bounds every wait on an endpoint: each client gets connect / read timeouts
# and a retry count that fit in it (what the user set in --storage_options wins), and the calls
# made at launch run under a deadline of labelbeam's own (clients that ignore their timeouts
# included).
DEFAULT_STORAGE_TIMEOUT = 120.0
# Requests one stalled ranged read may make, measured against a loopback endpoint that never
# answers: s3fs nests its retries twice (_fetch_range retries a call that _call_s3 retries),
# and botocore with max_attempts 1 still sends 2 requests on a read timeout: 2 x 2 x 2 = 8.
_S3_ATTEMPTS, _S3FS_RETRIES = 1, 2
_S3_REQUESTS = 8


# gcsfs retries a failed request 6 times (a class setting, with backoff of its own).
_GCS_REQUESTS = 6


def per_request_gcs(timeout: float) -> float:
    return max(float(timeout) / _GCS_REQUESTS, 0.1)


def client_timeouts(url: str, timeout: float | None) -> dict[str, Any]:
    """fsspec options that bound one operation on `url`'s protocol to about `timeout` seconds:
    every attempt's connect + read timeouts, times the attempts, fit in it."""
    if not timeout:
        return {}
    protocol = _ALIASES.get(protocol_of(url), protocol_of(url))
    per_request = max(float(timeout) / _S3_REQUESTS, 0.1)
    connect = min(per_request, 10.0)
    if protocol == "s3":
        return {"config_kwargs": {"connect_timeout": connect, "read_timeout": per_request, "retries": {"max_attempts": _S3_ATTEMPTS, "mode": "standard"}}}
    if protocol == "az":
        return {"connection_timeout": max(1, int(connect)), "read_timeout": max(1, int(per_request))}
    if protocol == "gs":
        return {"requests_timeout": per_request_gcs(timeout)}
    if protocol in ("http", "https"):
        import aiohttp

        return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=per_request)}}
    return {}


def _with_timeouts(url: str, options: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """`options` with the client timeouts added beneath them (a key the user set wins, nested
    one level: config_kwargs / client_kwargs), only those the filesystem class accepts."""
    defaults = client_timeouts(url, timeout)
    if not defaults:
        return options
    try:
        cls = fsspec.get_filesystem_class(protocol_of(url))
    except (ImportError, ValueError):  # the client is not installed: fsspec says so later
        return options
    accepted: set[str] = set()
    for base in cls.__mro__:  # a subclass may pass its keywords on (gcsfs's ExtendedGcsFileSystem)
        try:
            accepted |= set(inspect.signature(base.__init__).parameters)
        except (TypeError, ValueError):
            continue
    merged = dict(options)
    for key, value in defaults.items():
        if key not in accepted:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**value, **merged[key]}
        else:
            merged.setdefault(key, value)
    return merged


def filesystem(url: str, storage_options: dict | None = None, timeout: float | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    options = _with_timeouts(url, options_for(url, storage_options), timeout)
    if _ALIASES.get(protocol_of(url), protocol_of(url)) == "gs" and _gcs_emulated(options):
        return _plain_gcs(url, options)
    fs, path = fsspec.core.url_to_fs(url, **options)
    if timeout and hasattr(fs, "retries") and type(fs).__name__ == "S3FileSystem":
        fs.retries = min(fs.retries, _S3FS_RETRIES)  # s3fs's own retries around botocore's
    return fs, path


class StorageTimeout(TimeoutError):
    """An endpoint gave no answer within --storage_timeout (reason: unreachable)."""


def within_deadline(call: Callable[[], Any], timeout: float | None, what: str) -> Any:
    """call() under a deadline of labelbeam's own: a StorageTimeout when it has not returned
    within `timeout` seconds. The call runs on a daemon thread, left behind when it hangs."""
    if not timeout:
        return call()
    outcome: dict[str, Any] = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="storage-deadline", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise StorageTimeout(f"no answer from storage within {timeout:g} s ({what}); --storage_timeout sets the limit")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


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

    def __init__(self, options: dict | None = None, timeout: float | None = None):
        self.options: dict = dict(options or {})
        self.timeout = timeout
        self._filesystems: dict[str, fsspec.AbstractFileSystem] = {}

    def __getstate__(self):
        return {"options": self.options, "timeout": self.timeout}

    def __setstate__(self, state):
        self.options = state["options"]
        self.timeout = state.get("timeout")
        self._filesystems = {}

    def __eq__(self, other):
        return isinstance(other, Storage) and other.options == self.options and other.timeout == self.timeout

    def __repr__(self):
        return f"Storage({redact(self.options)!r})"

    def fs(self, url: str) -> tuple[fsspec.AbstractFileSystem, str]:
        """(filesystem, path) for a URL; one filesystem per protocol per process."""
        protocol = _ALIASES.get(protocol_of(url), protocol_of(url))
        cached = self._filesystems.get(protocol)
        if cached is None:
            cached, path = filesystem(url, self.options, self.timeout)
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
        return expand(pattern, self.options, self.timeout)

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


class NotRegularFile(ValueError):
    """An input that is neither a file nor a folder (a FIFO, a device, a socket, a symlink to
    one): reading it would block or never end, so the job refuses it at launch."""


def _kind(fs: fsspec.AbstractFileSystem, path: str, info: dict) -> str:
    """'file', 'directory' or what else it is. Local paths are judged by os.stat (symlinks
    followed): fsspec calls a symlink to a regular file 'other' too."""
    if not isinstance(fs, LocalFileSystem):
        return info.get("type") or "file"
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "broken symlink"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def expand(pattern: str, storage_options: dict | None = None, timeout: float | None = None) -> list[tuple[str, int]]:
    """Files matching a glob pattern (or one path), as (url, size), sorted; folders excluded.

    Raises NotRegularFile for a match that is neither a file nor a folder, and lets every
    storage failure through (no credentials, access denied, unreachable, a bad option): only a
    path that does not exist is "no match"."""
    fs, path = filesystem(pattern, storage_options, timeout)
    found: dict[str, dict] = {}
    try:
        info = fs.info(path)
    except FileNotFoundError:
        info = None
    if info is not None and _kind(fs, path, info) != "directory":
        found = {path: info}
    elif fsspec.core.has_magic(path):
        found = fs.glob(path, detail=True)
    files = []
    for name, entry in found.items():
        kind = _kind(fs, name, entry)
        if kind == "directory":
            continue
        if kind != "file":
            raise NotRegularFile(f"{redact_url(to_url(fs, name))} is a {kind}, not a regular file")
        files.append((_as_given(pattern, to_url(fs, name)), entry.get("size") or 0))
    return sorted(files)


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
    """'s3://user:pw@host/x' -> 's3://***@host/x': userinfo never leaves the process.

    The one redaction of text: every message, dead letter (raw line included), record URI,
    report and log line labelbeam writes passes through it, third-party messages too."""
    if "@" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    return _BARE_USERINFO.sub(f"{REDACTED}@", text)


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


def protocol_kind(scheme: str) -> str:
    """'object_store' for s3 / gs / az (and their aliases), else 'other'."""
    return "object_store" if _ALIASES.get(scheme.lower(), scheme.lower()) in _OBJECT_STORES else "other"


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


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def reference_problem(url: str) -> str | None:
    """Why a referenced URL cannot be opened as written (None when it may be tried): a control
    character, credentials in an object-store URL, an object-store URL without a bucket."""
    if _CONTROL.search(url):
        return "holds a control character"
    scheme, rest = split_url(url)
    protocol = _ALIASES.get(scheme.lower(), scheme.lower())
    if protocol in _OBJECT_STORES:
        bucket = rest.split("/", 1)[0]
        # Azure's `container@account.dfs.core.windows.net` is an address, not credentials
        if "@" in bucket and (protocol != "az" or ":" in bucket.split("@", 1)[0]):
            return "has credentials (user:pw@) in an object-store URL: they are never read from it; use the environment or --storage_options"
        if not bucket:
            return "names no bucket"
    return None


def default_root(manifest_url: str) -> str | None:
    """The root a manifest's references may use by default: its bucket on object storage,
    its own folder elsewhere (local disk, http, memory). None when that folder is the root of
    everything (a manifest stored at `/`): `/` is a root only when --allowed_roots names it."""
    scheme, rest = split_url(strip_userinfo(manifest_url))
    if _ALIASES.get(scheme, scheme) in _OBJECT_STORES:
        bucket = rest.split("/", 1)[0]
        return f"{scheme}://{bucket}" if bucket else None
    root = parent(strip_userinfo(manifest_url)) or "."
    normal = _normal(root)
    if normal is None or not normal[1].strip("/"):
        return None
    return root


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
    # botocore's base of client-side HTTP failures (its subclasses above are matched first):
    # e.g. aiohttp refusing an endpoint URL that carries credentials
    "HTTPClientError": IO_ERROR,
}


BAD_OPTION = "bad_option"


def launch_failure_reason(exc: BaseException) -> str:
    """Why storage refused the job at launch: a failure_reason, else bad_option (the client
    rejected an option or the URL: a TypeError / ValueError from its constructor or call)."""
    return failure_reason(exc) or BAD_OPTION


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
