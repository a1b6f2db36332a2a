"""The file checks (mask PNGs, image headers, brush RLEs) of one batch's rows, Beam-free.

CheckFiles (transforms/stages/check_files.py) wires them: `rows_with_files` and `decided_without_opening`
pick, per batch and in Arrow, the rows that reference a file and, of those, the rows whose
references may not be opened at all (outside the allowed roots): only the rest become Python
dicts and go through the thread pool (transforms/checks/pool.py), where FileChecker fetches and
decodes each file, bounded in time and in decoded pixels. What is found is judged by
transforms/judging.py, as for ValidateRecords.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms import errors, judging, schema, storage
from transforms.checks import images, masks, profiles, rle
from transforms.checks.pool import BoundedRunner, PixelBudget, Task, usable_cpus
from transforms.logs import CauseLog
from transforms.settings import build, setting, url_list

_LOG = logging.getLogger(__name__)
# Compressed bytes a mask may have per declared pixel before it is refused unread (PNG worst case
# is about 4 bytes of RGBA per pixel plus small overheads).
_MAX_BYTES_PER_PIXEL = 5
_MIN_BYTE_BOUND = 1024 * 1024
# One decode budget per process and size, shared by every CheckFiles instance in it.
_BUDGETS: dict[int, PixelBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def decode_budget(pixels: int) -> PixelBudget:
    with _BUDGETS_LOCK:
        budget = _BUDGETS.get(pixels)
        if budget is None:
            budget = _BUDGETS[pixels] = PixelBudget(pixels)
        return budget


@dataclasses.dataclass(frozen=True)
class MaskConfig:
    """The job's `validate.mask` section: how masks are judged (declared here, beside the checks
    that read it; pipelines/config.py nests it in the job)."""

    alpha_threshold: int = setting(128, help="a mask pixel is labelled when its alpha is at least this", flag="mask_alpha_threshold", minimum=0, maximum=255)
    color_tolerance: int = setting(8, help="largest per-channel difference that still matches a declared colour", flag="mask_color_tolerance", minimum=0, maximum=255)
    max_pixels: int = setting(25_000_000, help="width x height a mask may declare; larger ones are refused before decoding", flag="mask_max_pixels", minimum=1)
    timeout_seconds: float = setting(30.0, help="time allowed per file (fetch and decode)", flag="mask_timeout_seconds", minimum=0.001)
    decode_budget_pixels: int = setting(50_000_000, help="mask pixels decoded at once per worker process, across its threads (bounds memory: about 10 bytes a pixel)", flag="mask_decode_budget_pixels", minimum=1)


@dataclasses.dataclass(frozen=True)
class ValidateConfig:
    """The job's `validate` section: record and file checks (docs/validation.md)."""

    profile: str = setting("none", help="target whose limits make findings errors", flag="validation_profile", choices=lambda: tuple(profiles.PROFILES))
    masks: bool = setting(True, help="check mask PNGs and brush masks", flag="validate_masks")
    probe_images: bool = setting(False, help="read image headers for size and format", flag="probe_images")
    mask: MaskConfig = setting(MaskConfig, help="how masks are judged")
    io_concurrency: int = setting(16, help="files fetched and decoded at once per worker", flag="io_concurrency", minimum=1)
    allowed_roots: list[str] = setting([], help="folders / buckets / URL prefixes referenced masks and images may be read from, besides each manifest's own folder (its bucket on object storage) and read.relative_to; comma-separated", flag="allowed_roots", parse=url_list)


@dataclasses.dataclass(frozen=True)
class FileCheckConfig:
    """What the file checks check and how hard they try: the job's validated `validate`
    section (declared once, above; docs/validation.md), the profile it names resolved once,
    and the roots referenced files may be opened from besides each manifest's own root
    (storage.default_root): validate.allowed_roots plus read.relative_to for the job, None to
    open anything (library callers only)."""

    settings: ValidateConfig
    profile: profiles.Profile
    allowed_roots: tuple[str, ...] | None

    @classmethod
    def of(cls, validate: ValidateConfig, allowed_roots: tuple[str, ...] | None = None) -> "FileCheckConfig":
        """The one place a profile name becomes a Profile (an unknown name fails here)."""
        return cls(validate, profiles.get_profile(validate.profile), allowed_roots)

    @classmethod
    def from_values(cls, values: dict | None = None, allowed_roots: tuple[str, ...] | None = None) -> "FileCheckConfig":
        """A `validate` section as a dict (YAML shape), checked like the job's."""
        return cls.of(build(ValidateConfig, values or {}, "validate"), allowed_roots)

    @property
    def enabled(self) -> bool:
        return self.settings.masks or self.settings.probe_images

    def mask_policy(self) -> masks.MaskPolicy:
        return mask_policy(self.settings.mask, self.profile.mask_background_white)


def mask_policy(mask: MaskConfig, require_white_background: bool = False) -> masks.MaskPolicy:
    """The mask rules of a `validate.mask` section (the file checks', and the mask writers')."""
    return masks.MaskPolicy(
        alpha_threshold=mask.alpha_threshold,
        color_tolerance=mask.color_tolerance,
        max_pixels=mask.max_pixels,
        require_white_background=require_white_background,
    )


def rows_with_files(batch: pa.RecordBatch, config: FileCheckConfig) -> pa.Array:
    """Per row (columnar): is there a mask, a brush RLE to measure, or an image to probe?"""
    work = np.zeros(batch.num_rows, bool)
    if config.settings.probe_images:
        work |= pc.is_valid(pc.struct_field(batch.column("image"), "uri")).to_numpy(zero_copy_only=False)
    if config.settings.masks:
        work |= pc.is_valid(pc.struct_field(batch.column("mask"), "uri")).to_numpy(zero_copy_only=False)
        objects = batch.column("objects")
        flat = pc.list_flatten(objects)
        unmeasured = pc.and_(pc.is_valid(pc.struct_field(flat, "mask_rle")), pc.is_null(pc.struct_field(flat, "area")))
        parents = pc.filter(pc.list_parent_indices(objects), unmeasured).to_numpy()
        work[parents] = True
    return pa.array(work)


class FileChecker:
    """The checks of one row's files (Beam-free; called from pool threads)."""

    def __init__(self, config: FileCheckConfig, store: storage.Storage):
        self.config = config
        self.storage = store
        self.profile = config.profile
        self.policy = config.mask_policy()
        self.budget = decode_budget(config.settings.mask.decode_budget_pixels)
        self.failures = CauseLog(_LOG)  # one traceback per cause, then counts

    def check(self, task: Task) -> tuple[dict, list[tuple[str, str]], bool]:
        """(the row with what was found filled in, findings, whether the image was probed)."""
        try:
            return self._check(task)
        except Exception as exc:  # noqa: BLE001 - one record's surprise never stops the batch
            self.failures.failed(f"file checks failed for {(task.payload.get('source') or {}).get('uri')}", exc)
            return task.payload, [(errors.INTERNAL_ERROR, storage.redact_url(f"{type(exc).__name__}: {exc}")[:500])], False

    def _check(self, task: Task):
        row = dict(task.payload)
        findings: list[tuple[str, str]] = []
        probed = False
        image = dict(row.get("image") or {})
        if self.config.settings.probe_images and image.get("uri") and self._allowed(row, image["uri"], findings):
            task.stage = "image"
            probed = self._probe_image(image, findings)
            row["image"] = image
        if self.config.settings.masks and (row.get("mask") or {}).get("uri"):
            task.stage = "mask"
            if self._allowed(row, row["mask"]["uri"], findings):
                row["mask"] = self._check_mask(row, image, findings, task)
            else:
                row["mask"] = dict(row["mask"], validated=False)
        if self.config.settings.masks and any(o.get("mask_rle") and o.get("area") is None for o in row.get("objects") or []):
            task.stage = "rle"
            row["objects"] = self._measure_rles(row, image, findings)
        return row, findings, probed

    def _allowed(self, row: dict, uri: str, findings: list) -> bool:
        """Whether `uri` may be opened; a finding (and no I/O at all) when not."""
        refused = not_to_open(uri, (row.get("source") or {}).get("uri") or "", self.config.allowed_roots)
        if refused is not None:
            findings.append(refused)
        return refused is None

    def _probe_image(self, image: dict, findings: list) -> bool:
        """Probe the header; fill width/height/format the manifest lacks. True if any was filled."""
        uri = image["uri"]
        try:
            fs, path = self.storage.fs(uri)
            header = images.probe(fs, path, want_file_bytes=self.profile.max_image_bytes is not None)
        except images.ImageProbeError as exc:
            findings.append((exc.code, f"{uri}: {exc.message}"))
            return False
        except Exception as exc:  # noqa: BLE001 - classified; anything else is a bug, raised on
            reason = storage.failure_reason(exc)
            if reason is None and not isinstance(exc, ValueError):  # ValueError: a URL fsspec cannot open
                raise
            code = errors.FILE_UNREADABLE if reason not in (None, storage.NOT_FOUND) else errors.IMAGE_NOT_FOUND
            findings.append((code, storage.redact_url(f"{uri}: {reason}: {type(exc).__name__}: {exc}")[:500]))
            return False
        findings.extend(profiles.file_size_findings(header.file_bytes, self.profile))
        filled = False
        for key in ("width", "height", "format"):
            if image.get(key) in (None, ""):
                image[key] = getattr(header, key)
                filled = True
        return filled

    def _check_mask(self, row: dict, image: dict, findings: list, task: Task | None = None) -> dict:
        mask = dict(row["mask"])
        mask["validated"] = False
        uri = mask["uri"]
        try:
            if task is not None:
                task.stage = MASK_FETCH
            data = self._fetch_mask(uri)
            if task is not None:
                task.stage = MASK_DECODE
            with self.budget.hold(_declared_pixels(data)):
                if task is not None:
                    task.started = time.monotonic()  # waiting for the budget is not the file's time
                report = masks.check_mask(
                    data,
                    mask.get("color_map"),
                    self.policy,
                    image_size=(image.get("width"), image.get("height")),
                    image_class=masks.image_class_of(row.get("labels")),
                )
        except masks.MaskRejected as exc:
            findings.append((exc.finding.code, storage.redact_url(f"{uri}: {exc.finding.message}")))
            return mask
        mask.update(
            width=report.width,
            height=report.height,
            class_pixels=report.class_pixels,
            foreground_bbox=report.foreground_bbox,
            validated=True,
        )
        findings.extend((f.code, f"{uri}: {f.message}") for f in report.findings)
        return mask

    def _measure_rles(self, row: dict, image: dict, findings: list) -> list[dict]:
        """Brush RLEs not measured at parse time (image size unknown then, probed now):
        decode against the image size; fill area and bbox."""
        width, height = image.get("width"), image.get("height")
        objects = [dict(o) for o in row["objects"]]
        if not (width and height):
            return objects  # the RLE's size is the image's: nothing to check it against
        reported = any(i.get("code") == errors.RLE_INVALID for i in row.get("issues") or [])
        for i, obj in enumerate(objects):
            if not obj.get("mask_rle") or obj.get("area") is not None:
                continue
            try:
                area, box = rle.mask_stats(obj["mask_rle"], width, height, self.policy.alpha_threshold)
            except ValueError as exc:
                if not reported:  # the format flagged it at parse time already: once is enough
                    findings.append((errors.RLE_INVALID, f"object {i} ({obj.get('label')}): {exc}"))
                continue
            if area == 0:
                findings.append((errors.RLE_EMPTY, f"object {i} ({obj.get('label')}): no pixel at alpha >= {self.policy.alpha_threshold}"))
            obj["area"] = float(area)
            if obj.get("bbox") is None and box is not None:
                obj["bbox"] = dict(zip(("x_min", "y_min", "x_max", "y_max"), box))
        return objects

    def _fetch_mask(self, uri: str) -> bytes:
        """The mask's bytes; the header is read and bounded before the rest is downloaded."""
        try:
            with self.storage.open(uri, "rb") as f:
                head = f.read(masks.HEADER_BYTES)
                width, height = masks.png_size(head) if len(head) == masks.HEADER_BYTES else (0, 0)
                if width:
                    masks.check_size_bound(width, height, self.policy.max_pixels)
                    bound = max(_MIN_BYTE_BOUND, width * height * _MAX_BYTES_PER_PIXEL)
                    rest = f.read(bound + 1)
                    if len(rest) > bound:
                        raise masks.MaskRejected(errors.MASK_TOO_LARGE, f"more than {bound} bytes for {width}x{height}")
                    return head + rest
                return head
        except masks.MaskRejected:
            raise
        except Exception as exc:  # noqa: BLE001 - classified; anything else is a bug, raised on
            reason = storage.failure_reason(exc)
            if reason == storage.NOT_FOUND:
                raise masks.MaskRejected(errors.MASK_NOT_FOUND, "does not exist (relative refs resolve against the manifest folder, or --relative_to)") from None
            if reason is None and isinstance(exc, ValueError):  # a URL fsspec cannot open
                raise masks.MaskRejected(errors.MASK_NOT_FOUND, storage.redact_url(f"cannot read: {exc}")[:500]) from None
            if reason is None:
                raise
            message = storage.redact_url(f"{reason}: {type(exc).__name__}: {exc}")[:500]
            raise masks.MaskRejected(errors.FILE_UNREADABLE, message) from None


def not_to_open(uri: str, manifest: str, roots: tuple[str, ...] | None) -> tuple[str, str] | None:
    """Why a referenced file may not be opened, as (code, message), or None when it may: a
    reference invalid as written, or outside every allowed root and its manifest's own root
    (`roots` None: anything may be opened). The file checks and the image copies ask this."""
    problem = storage.reference_problem(uri)
    if problem is not None:
        shown = storage.redact_url(uri).encode("unicode_escape").decode("ascii")[:300]
        return errors.REFERENCE_INVALID, f"{shown}: {problem}; not opened"
    if roots is None:
        return None
    own = storage.default_root(manifest)
    if storage.within_roots(uri, (*roots, own) if own else roots):
        return None
    return errors.REFERENCE_OUTSIDE_ROOTS, f"{storage.redact_url(uri)}{OUTSIDE_ROOTS_HINT}"


def _declared_pixels(data: bytes) -> int:
    """Pixels the PNG header declares (0 when it has none: nothing will be decoded)."""
    try:
        width, height = masks.png_size(data[: masks.HEADER_BYTES])
    except masks.MaskRejected:
        return 0
    return width * height


def files_are_local(row: dict, config: FileCheckConfig) -> bool:
    """Whether every file this row's checks open is on local disk (no scheme, or file://)."""
    uris = [(row.get("mask") or {}).get("uri") if config.settings.masks else None]
    uris.append((row.get("image") or {}).get("uri") if config.settings.probe_images else None)
    return all(storage.protocol_of(uri) == "file" for uri in uris if uri)


# Stages of a file check: waiting on storage, then decoding what came back.
MASK_FETCH, MASK_DECODE = "mask_fetch", "mask"


def timeout_outcome(task: Task, limit: float) -> tuple[dict, list[tuple[str, str]], bool]:
    """A check past the time limit: waiting on remote storage is FILE_UNREADABLE (unreachable);
    a decoder that never finishes, or a local file that never opens (a FIFO), is the file's
    fault (MASK_CORRUPT, IMAGE_CORRUPT, RLE_INVALID)."""
    row = dict(task.payload)
    stage = task.stage or MASK_FETCH
    if stage in (MASK_FETCH, MASK_DECODE) and row.get("mask"):
        row["mask"] = dict(row["mask"], validated=False)
    waited = f"no result within {limit:g} s ({stage} stage)"
    fetched = (row.get("mask") if stage == MASK_FETCH else row.get("image") if stage == "image" else None) or {}
    uri = fetched.get("uri") or ""
    if uri and storage.protocol_of(uri) != "file":  # waiting on an endpoint, not on a decoder
        return row, [(errors.FILE_UNREADABLE, storage.redact_url(f"{uri}: {storage.UNREACHABLE}: {waited}"))], False
    code = {"image": errors.IMAGE_CORRUPT, "rle": errors.RLE_INVALID}.get(stage, errors.MASK_CORRUPT)
    return row, [(code, waited)], False




def redact_uris(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` with URL userinfo redacted from image.uri and mask.uri. The checks above opened
    the files with it; nothing after them (splits, writers, statistics) sees it. Costs one
    substring test per column when no URI has an `@`."""
    for name in ("image", "mask"):
        column = batch.column(name)
        uris = pc.struct_field(column, "uri")
        if not pc.any(pc.match_substring(uris, "@")).as_py():
            continue
        redacted = pa.array([storage.redact_url(u) if u else u for u in uris.to_pylist()], pa.string())
        children = [redacted if field.name == "uri" else column.field(i) for i, field in enumerate(column.type)]
        rebuilt = pa.StructArray.from_arrays(children, fields=list(column.type), mask=column.is_null())
        batch = batch.set_column(batch.schema.get_field_index(name), batch.schema.field(name), rebuilt)
    return batch




# -- references decided without opening them, per batch in Arrow -------------------------------
# Two kinds of plain reference, for which storage.reference_problem is None and
# storage.within_roots is a path-segment prefix test, exact as Arrow expressions:
# - an object-store URL of plain path segments: no userinfo, query, fragment, percent escape,
#   control character, empty / `.` / `..` segment;
# - an absolute local path with the same restrictions: its folder is resolved once per batch
#   (symlinks, storage._resolved_folder, as within_roots does), and a path decided outside is
#   still looked at (os.path.islink) since a symlinked file may point inside a root.
# Anything else is decided by FileChecker, one row at a time.
_OBJECT_SCHEMES = {"s3": "s3", "s3a": "s3", "gs": "gs", "gcs": "gs", "az": "az", "abfs": "az", "abfss": "az", "adl": "adl"}
_SEGMENT = r"/[^/@?#%\x00-\x1f\x7f]+"
_PLAIN_OBJECT_URL = r"^(" + "|".join(_OBJECT_SCHEMES) + r")://[^/@?#%\x00-\x1f\x7f]+(" + _SEGMENT + r")+$"
_PLAIN_LOCAL_PATH = r"^(" + _SEGMENT + r")+$"
_DOT_SEGMENT = r"/\.\.?(/|$)"
OUTSIDE_ROOTS_HINT = ": outside the allowed roots, not opened (widen with validate.allowed_roots / --allowed_roots)"


def outside_roots(uris: pa.Array, manifests: pa.Array, allowed_roots: tuple[str, ...] | None) -> np.ndarray:
    """Per row: whether `uris` (a string column, nulls allowed) is a plain object-store URL or
    local path outside every allowed root and its manifest's own root, decided per batch.
    False means "not decided here" (FileChecker decides, as before)."""
    n = len(uris)
    if allowed_roots is None or n == 0:
        return np.zeros(n, bool)
    dotted = pc.match_substring_regex(uris, _DOT_SEGMENT)
    objects = pc.and_(pc.match_substring_regex(uris, _PLAIN_OBJECT_URL), pc.invert(dotted)).fill_null(False).to_numpy(zero_copy_only=False)
    local = pc.and_(pc.match_substring_regex(uris, _PLAIN_LOCAL_PATH), pc.invert(dotted)).fill_null(False).to_numpy(zero_copy_only=False)
    candidates = np.flatnonzero(objects | local)  # the rows decided here: the rest are not looked at again
    if not len(candidates):
        return np.zeros(n, bool)
    if len(candidates) < n:
        keep = pa.array(candidates)
        uris, manifests, objects, local = uris.take(keep), manifests.take(keep), objects[candidates], local[candidates]
    within = np.zeros(len(candidates), bool)
    schemes = paths = resolved = None
    if objects.any():
        parts = pc.extract_regex(pc.if_else(pa.array(objects), uris, pa.scalar("x://")), r"^(?P<scheme>[a-z0-9]+)://(?P<path>.*)$")
        schemes, paths = pc.struct_field(parts, "scheme"), pc.struct_field(parts, "path")
    if local.any():
        resolved = _resolved_paths(pc.if_else(pa.array(local), uris, pa.scalar("/x")))
    encoded = pc.dictionary_encode(pc.fill_null(manifests, ""))
    which = encoded.indices.to_numpy(zero_copy_only=False)
    for index, manifest in enumerate(encoded.dictionary.to_pylist()):
        own = storage.default_root(manifest)
        rows = which == index
        for root in (*allowed_roots, own) if own else allowed_roots:
            normal = storage._normal(root)  # noqa: SLF001 - the normalisation within_roots applies
            if normal is None:
                continue
            if normal[0] == "file":
                if resolved is not None:
                    within[rows] |= _under(resolved, normal[1])[rows]
            elif schemes is not None:
                same = pc.is_in(schemes, value_set=pa.array([s for s, alias in _OBJECT_SCHEMES.items() if alias == normal[0]], pa.string()))
                within[rows] |= (same.fill_null(False).to_numpy(zero_copy_only=False) & _under(paths, normal[1]))[rows]
    objects_out = objects & ~within
    local_out = local & ~within
    for row in np.flatnonzero(local_out):  # a symlinked file resolves on its own: FileChecker's
        if os.path.islink(uris[int(row)].as_py()):
            local_out[row] = False
    decided = np.zeros(n, bool)
    decided[candidates] = objects_out | local_out
    return decided


def _resolved_paths(paths: pa.Array) -> pa.Array:
    """Absolute local paths with their folder's symlinks resolved (storage._resolved_local,
    without the file's own link, which the caller looks at), one realpath per distinct folder."""
    split = pc.extract_regex(paths, r"^(?P<folder>.*)/(?P<name>[^/]+)$")
    folders = pc.dictionary_encode(pc.struct_field(split, "folder"))
    real = [storage._resolved_folder(folder or "/").rstrip("/") for folder in folders.dictionary.to_pylist()]  # noqa: SLF001
    return pc.binary_join_element_wise(pc.take(pa.array(real, pa.string()), folders.indices), pc.struct_field(split, "name"), "/")


def _under(paths: pa.Array, prefix: str) -> np.ndarray:
    """Path-segment prefix test, as storage.within_roots does it."""
    prefix = prefix.rstrip("/")
    if prefix == "":
        return np.ones(len(paths), bool)
    inside = pc.or_(pc.equal(paths, prefix), pc.starts_with(paths, prefix + "/"))
    return inside.fill_null(False).to_numpy(zero_copy_only=False)


def decided_without_opening(batch: pa.RecordBatch, config: FileCheckConfig) -> tuple[np.ndarray, judging.Findings]:
    """Rows of `batch` that open nothing: every reference they would open is outside the
    allowed roots (or absent), and no brush RLE waits to be measured. Returns (that row mask,
    their findings), the findings in FileChecker's order (image, then mask) with its messages,
    as columns."""
    n = batch.num_rows
    manifests = pc.struct_field(batch.column("source"), "uri")
    refs = []
    if config.settings.probe_images:
        refs.append(pc.struct_field(batch.column("image"), "uri"))
    if config.settings.masks:
        refs.append(pc.struct_field(batch.column("mask"), "uri"))
    decided = np.ones(n, bool)
    outside = []
    for uris in refs:
        valid = pc.is_valid(uris).to_numpy(zero_copy_only=False)
        out = outside_roots(uris, manifests, config.allowed_roots) if valid.any() else np.zeros(n, bool)
        decided &= out | ~valid
        outside.append((uris, out))
    if config.settings.masks and decided.any():
        objects = batch.column("objects")
        flat = pc.list_flatten(objects)
        if len(flat):
            unmeasured = pc.and_(pc.is_valid(pc.struct_field(flat, "mask_rle")), pc.is_null(pc.struct_field(flat, "area")))
            decided[pc.filter(pc.list_parent_indices(objects), unmeasured).to_numpy()] = False
    found = judging.Findings.of([])
    if not decided.any():
        return decided, found
    for uris, out in outside:
        rows = np.flatnonzero(decided & out)
        if len(rows):
            messages = pc.binary_join_element_wise(pc.take(uris, pa.array(rows)), OUTSIDE_ROOTS_HINT, "")
            codes = pa.repeat(pa.scalar(errors.REFERENCE_OUTSIDE_ROOTS, pa.string()), len(rows))
            found = found + judging.Findings(rows.astype(np.int64), codes, messages)
    return decided, found.sorted()  # stable: a row's image finding stays before its mask finding


def unvalidated_masks(batch: pa.RecordBatch, rows: np.ndarray | None = None) -> pa.RecordBatch:
    """`batch` with mask.validated False where a mask is referenced (what FileChecker sets on a
    mask it may not open), on the rows of the `rows` mask (all when None)."""
    column = batch.column("mask")
    index = column.type.get_field_index("validated")
    referenced = pc.is_valid(pc.struct_field(column, "uri"))
    if rows is not None:
        referenced = pc.and_(referenced, pa.array(rows))
    flags = pc.if_else(referenced, pa.scalar(False), column.field(index))
    children = [flags if i == index else column.field(i) for i in range(column.type.num_fields)]
    rebuilt = pa.StructArray.from_arrays(children, fields=list(column.type), mask=column.is_null())
    return batch.set_column(batch.schema.get_field_index("mask"), batch.schema.field("mask"), rebuilt)


# -- one batch -----------------------------------------------------------------------------
# The columns the checks read, and the ones they fill in: only these become Python values.
_READ_COLUMNS = ("source", "image", "labels", "objects", "mask", "issues")
_FILLED_COLUMNS = ("image", "mask", "objects")


@dataclasses.dataclass
class BatchOutcome:
    """What checking one batch gave: kept batches, dead letters, and counts by finding code
    (plus `masks_validated`), for the caller to report (Beam counters belong to its thread)."""

    batches: list[pa.RecordBatch]
    letters: list[dict]
    counts: dict[str, int]


class BatchFileChecker:
    """Checks the files of one batch's rows: rows that reference nothing pass through as they
    are, rows that open nothing are decided in Arrow, the rest go through the thread pool."""

    def __init__(self, config: FileCheckConfig, store: storage.Storage, stage: str = errors.CHECK_FILES):
        self.config = config
        self.stage = stage
        self.checker = FileChecker(config, store)
        self.runner = BoundedRunner(config.settings.io_concurrency, config.settings.mask.timeout_seconds)
        # Local files: nothing to wait for but the decoder, so one thread per core. More threads
        # only fight for the GIL between decodes (5,000 local 1024x768 masks in one process:
        # 16 threads 14.7 s, 2 threads 10.9 s on 2 cores).
        self.local_threads = usable_cpus()
        # INTERNAL_ERROR (a check that failed unexpectedly) is an error under every profile.
        self.strict = judging.with_errors(config.profile, errors.INTERNAL_ERROR)

    def check(self, batch: pa.RecordBatch) -> BatchOutcome:
        """Rows in their input order: rows without files as they are, rows decided in Arrow
        with their findings (no row copied, no tuple per finding), the rest opened by the pool
        and put back in their places."""
        work = rows_with_files(batch, self.config).to_numpy(zero_copy_only=False)
        if not work.any():
            return BatchOutcome([batch], [], {})
        decided, found = decided_without_opening(batch, self.config)
        found = judging.Findings.of(found)
        opened = np.flatnonzero(work & ~decided)
        checked, validated = batch, 0
        if len(opened):
            pooled, more, validated = self._open(batch.take(pa.array(opened)))
            found = (found + judging.Findings.of([(int(opened[i]), code, message) for i, code, message in more])).sorted()
            checked = _placed(batch, work & ~decided, pooled)
        if self.config.settings.masks and (work & decided).any():
            checked = unvalidated_masks(checked, work & decided)
        counts = found.counts()
        if validated:
            counts["masks_validated"] = validated
        kept, letters = judging.judge(checked, self.strict, found, self.stage)
        return BatchOutcome([kept] if kept.num_rows else [], letters, counts)

    def _open(self, taken: pa.RecordBatch) -> tuple[pa.RecordBatch, list[tuple[int, str, str]], int]:
        """The pool's part: rows as dicts (only the columns read), checked concurrently."""
        rows = schema.batch_rows(taken.select(_READ_COLUMNS))
        threads = self.local_threads if all(files_are_local(row, self.config) for row in rows) else None
        outcomes = self.runner.run([Task(row) for row in rows], self.checker.check, timeout_outcome, threads)
        checked = _with_columns(taken, _FILLED_COLUMNS, [row for row, _, _ in outcomes])
        found = [(index, code, message) for index, (_, findings, _) in enumerate(outcomes) for code, message in findings]
        validated = sum(1 for row, _, _ in outcomes if (row.get("mask") or {}).get("validated"))
        probed = [i for i, (_, _, was_probed) in enumerate(outcomes) if was_probed]
        if probed:  # the profile's size rules, on the sizes just probed
            sized = profiles.record_findings(checked.take(pa.array(probed, pa.int64())), self.checker.profile)
            found.extend((probed[r], code, message) for r, code, message in sized)
        return checked, found, validated


def _placed(batch: pa.RecordBatch, where: np.ndarray, rows: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` with its rows at `where` (a row mask) replaced by `rows`, in order."""
    order = np.concatenate([np.flatnonzero(~where), np.flatnonzero(where)])
    merged = pa.Table.from_batches([batch.filter(pa.array(~where)), rows.select(batch.schema.names)], batch.schema).combine_chunks()
    return merged.take(pa.array(np.argsort(order, kind="stable"))).to_batches()[0] if batch.num_rows else batch


def _with_columns(batch: pa.RecordBatch, names, rows: list[dict]) -> pa.RecordBatch:
    """`batch` with the named columns rebuilt from the checked rows (same order)."""
    for name in names:
        column = pa.array([row.get(name) for row in rows], type=schema.SCHEMA.field(name).type)
        batch = batch.set_column(batch.schema.get_field_index(name), name, column)
    return batch
