"""CheckFiles: the checks that open files (mask PNGs, image headers, brush RLEs), per batch.

Where it sits: ... -> ValidateRecords -> CheckFiles -> AssignSplit -> writers, in the same fused
stage as the reader: there is no shuffle before it, so on a local runner no stage ever holds
the whole dataset. Work spreads over the workers through the shards instead: a manifest whose
records reference files is cut into shards of about FILE_CHECKS_PER_SHARD such records
(transforms/stages/read.py), and within a batch the files are fetched and decoded concurrently
(transforms/checks/pool.py), each bounded in time.

Only the rows that reference a file to check become Python dicts, and of those only the columns
the checks read (the rest of a batch passes through as it is). What is found goes through the
same judgement as ValidateRecords: an error under the profile refuses the record (stage
`check_files`), anything else is a warning issue.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from transforms import errors, schema, storage
from transforms.checks import images, masks, profiles, rle
from transforms.checks.pool import BoundedRunner, PixelBudget, Task, usable_cpus
from transforms.logs import CauseLog
from transforms.stages.accounting import Accounted
from transforms.stages.validate import judge

_LOG = logging.getLogger(__name__)
STAGE = errors.CHECK_FILES
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
class FileCheckConfig:
    """What CheckFiles checks and how hard it tries (docs/validation.md).

    alpha_threshold: a pixel is labelled when alpha >= this (0..255). color_tolerance: largest
    per-channel difference that still matches a declared colour. max_pixels: width*height a mask
    may declare in its header; larger ones are refused before decoding. timeout_seconds: time
    allowed per file. concurrency: files fetched and decoded at once per worker.
    decode_budget_pixels: declared mask pixels decoded at once per worker process, across its
    threads (bounds memory). allowed_roots: where referenced files may be opened, besides each
    manifest's own root (storage.default_root); None opens anything (library callers only: the
    job always passes a tuple).
    """

    validate_masks: bool = True
    probe_images: bool = False
    validation_profile: str = "none"
    alpha_threshold: int = 128
    color_tolerance: int = 8
    max_pixels: int = 25_000_000
    timeout_seconds: float = 30.0
    concurrency: int = 16
    decode_budget_pixels: int = 50_000_000
    allowed_roots: tuple[str, ...] | None = None

    @property
    def enabled(self) -> bool:
        return self.validate_masks or self.probe_images


def rows_with_files(batch: pa.RecordBatch, config: FileCheckConfig) -> pa.Array:
    """Per row (columnar): is there a mask, a brush RLE to measure, or an image to probe?"""
    work = np.zeros(batch.num_rows, bool)
    if config.probe_images:
        work |= pc.is_valid(pc.struct_field(batch.column("image"), "uri")).to_numpy(zero_copy_only=False)
    if config.validate_masks:
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
        self.profile = profiles.get_profile(config.validation_profile)
        self.policy = masks.MaskPolicy(
            alpha_threshold=config.alpha_threshold,
            color_tolerance=config.color_tolerance,
            max_pixels=config.max_pixels,
            require_white_background=self.profile.mask_background_white,
        )
        self.budget = decode_budget(config.decode_budget_pixels)
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
        if self.config.probe_images and image.get("uri") and self._allowed(row, image["uri"], findings):
            task.stage = "image"
            probed = self._probe_image(image, findings)
            row["image"] = image
        if self.config.validate_masks and (row.get("mask") or {}).get("uri"):
            task.stage = "mask"
            if self._allowed(row, row["mask"]["uri"], findings):
                row["mask"] = self._check_mask(row, image, findings, task)
            else:
                row["mask"] = dict(row["mask"], validated=False)
        if self.config.validate_masks and any(o.get("mask_rle") and o.get("area") is None for o in row.get("objects") or []):
            task.stage = "rle"
            row["objects"] = self._measure_rles(row, image, findings)
        return row, findings, probed

    def _allowed(self, row: dict, uri: str, findings: list) -> bool:
        """Whether `uri` may be opened; a finding (and no I/O at all) when not."""
        problem = storage.reference_problem(uri)
        if problem is not None:
            shown = storage.redact_url(uri).encode("unicode_escape").decode("ascii")[:300]
            findings.append((errors.REFERENCE_INVALID, f"{shown}: {problem}; not opened"))
            return False
        roots = self.config.allowed_roots
        if roots is None:
            return True
        manifest = (row.get("source") or {}).get("uri") or ""
        own = storage.default_root(manifest)
        if storage.within_roots(uri, (*roots, own) if own else roots):
            return True
        findings.append((errors.REFERENCE_OUTSIDE_ROOTS, f"{storage.redact_url(uri)}: outside the allowed roots, not opened (widen with validate.allowed_roots / --allowed_roots)"))
        return False

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


def _declared_pixels(data: bytes) -> int:
    """Pixels the PNG header declares (0 when it has none: nothing will be decoded)."""
    try:
        width, height = masks.png_size(data[: masks.HEADER_BYTES])
    except masks.MaskRejected:
        return 0
    return width * height


def _files_are_local(row: dict, config: FileCheckConfig) -> bool:
    """Whether every file this row's checks open is on local disk (no scheme, or file://)."""
    uris = [(row.get("mask") or {}).get("uri") if config.validate_masks else None]
    uris.append((row.get("image") or {}).get("uri") if config.probe_images else None)
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


class _CheckFilesFn(beam.DoFn):
    def __init__(self, config: FileCheckConfig, store: storage.Storage):
        self._config = config
        self._storage = store

    def setup(self):
        self._checker = FileChecker(self._config, self._storage)
        self._runner = BoundedRunner(self._config.concurrency, self._config.timeout_seconds)
        # Local files: nothing to wait for but the decoder, so one thread per core. More threads
        # only fight for the GIL between decodes (5,000 local 1024x768 masks in one process:
        # 16 threads 14.7 s, 2 threads 10.9 s on 2 cores).
        self._local_threads = usable_cpus()
        self._counters: dict[str, object] = {}
        self._validated = Metrics.counter("check_files", "masks_validated")

    def finish_bundle(self):
        self._checker.failures.flush()

    def process(self, batch: pa.RecordBatch):
        for piece in self._checked(batch):
            yield piece if isinstance(piece, beam.pvalue.TaggedOutput) else redact_uris(piece)

    def _checked(self, batch: pa.RecordBatch):
        work = rows_with_files(batch, self._config)
        busy = pc.indices_nonzero(work)
        if len(busy) == 0:
            yield batch
            return
        taken = batch.take(busy)
        rows = schema.batch_rows(taken.select(_READ_COLUMNS))
        threads = self._local_threads if all(_files_are_local(row, self._config) for row in rows) else None
        outcomes = self._runner.run([Task(row) for row in rows], self._checker.check, timeout_outcome, threads)
        checked = _with_columns(taken, _FILLED_COLUMNS, [row for row, _, _ in outcomes])
        found = []
        for index, (row, findings, _) in enumerate(outcomes):
            if (row.get("mask") or {}).get("validated"):
                self._validated.inc()  # here, in the bundle's thread: Beam drops pool-thread increments
            found.extend((index, code, message) for code, message in findings)
        probed = [i for i, (_, _, was_probed) in enumerate(outcomes) if was_probed]
        if probed:  # the profile's size rules, on the sizes just probed
            found.extend((probed[r], code, message) for r, code, message in profiles.record_findings(checked.take(pa.array(probed, pa.int64())), self._checker.profile))
        for _, code, _ in found:
            self._count(code)
        kept, letters = _judge_with_internal_errors(checked, self._checker.profile, found)
        for letter in letters:
            yield beam.pvalue.TaggedOutput(errors.DEAD_LETTERS, letter)
        passed = batch.filter(pc.invert(work))
        out = pa.Table.from_batches([passed, kept], schema.SCHEMA).combine_chunks().to_batches()
        for piece in out:
            if piece.num_rows:
                yield piece

    def _count(self, code: str) -> None:
        counter = self._counters.get(code)
        if counter is None:
            counter = self._counters[code] = Metrics.counter("check_files", code)
        counter.inc()


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


# The columns the checks read, and the ones they fill in: only these become Python values.
_READ_COLUMNS = ("source", "image", "labels", "objects", "mask", "issues")
_FILLED_COLUMNS = ("image", "mask", "objects")


def _with_columns(batch: pa.RecordBatch, names, rows: list[dict]) -> pa.RecordBatch:
    """`batch` with the named columns rebuilt from the checked rows (same order)."""
    for name in names:
        column = pa.array([row.get(name) for row in rows], type=schema.SCHEMA.field(name).type)
        batch = batch.set_column(batch.schema.get_field_index(name), name, column)
    return batch


def _judge_with_internal_errors(batch, profile, found):
    """judge(), with INTERNAL_ERROR an error under every profile."""
    strict = dataclasses.replace(profile, errors=profile.errors | {errors.INTERNAL_ERROR})
    return judge(batch, strict, found, STAGE)


@beam.typehints.with_input_types(pa.RecordBatch)
class CheckFiles(beam.PTransform):
    """RecordBatches -> {main: RecordBatches with mask / image columns filled, dead_letters, ledger}."""

    def __init__(self, config: FileCheckConfig, store: storage.Storage | None = None):
        super().__init__()
        profiles.get_profile(config.validation_profile)  # a wrong name fails at construction
        self._config = config
        self._storage = store or storage.Storage()

    def expand(self, batches):
        return batches | Accounted(STAGE, _CheckFilesFn(self._config, self._storage))
