"""ValidateMasks: mask PNG and image-header checks, spread over all workers.

Batches of canonical rows in, batches out with the mask columns filled, image size probed where
the manifest lacks it, and findings in `issues`. Within a batch, files are fetched and decoded
concurrently in a thread pool, each one bounded in time: a file that hangs the decoder marks its
own record (MASK_CORRUPT / IMAGE_CORRUPT) and every other record is validated as usual.
Findings that the validation profile makes errors send the record to the dead letters.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import queue
import threading
import time
from typing import Any, Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from transforms import errors, image_probe, mask_checks, profiles, rle, schema, storage

_LOG = logging.getLogger(__name__)
STAGE = "validate"
# Seconds between looks at running files while waiting for a batch.
_POLL_SECONDS = 0.05
# Compressed bytes a mask may have per declared pixel before it is refused unread (PNG worst case
# is about 4 bytes of RGBA per pixel plus small overheads).
_MAX_BYTES_PER_PIXEL = 5
_MIN_BYTE_BOUND = 1024 * 1024


@dataclasses.dataclass
class MaskValidationConfig:
    """What ValidateMasks checks and how hard it tries.

    alpha_threshold: a pixel is labelled when alpha >= this (0..255); anti-aliased edges below it
    are not. color_tolerance: largest per-channel difference to still match a declared hex colour.
    max_pixels: width*height a mask may declare in its PNG header; larger ones are refused before
    decoding (MASK_TOO_LARGE). timeout_seconds: time allowed per file (fetch + decode).
    concurrency: files fetched and decoded at once per worker.
    """

    validate_masks: bool = True
    probe_images: bool = False
    validation_profile: str = "none"
    alpha_threshold: int = 128
    color_tolerance: int = 8
    max_pixels: int = 25_000_000
    timeout_seconds: float = 30.0
    concurrency: int = 16

    def __post_init__(self):
        profiles.get_profile(self.validation_profile)  # fail at launch on a wrong name
        if not 0 <= self.alpha_threshold <= 255:
            raise ValueError(f"alpha_threshold must be 0..255, got {self.alpha_threshold}")
        if self.color_tolerance < 0 or self.max_pixels <= 0 or self.timeout_seconds <= 0:
            raise ValueError("color_tolerance >= 0, max_pixels > 0 and timeout_seconds > 0 required")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")


class ValidateMasks(beam.PTransform):
    """RecordBatches -> {"records": RecordBatches, errors.DEAD_LETTERS: dead-letter dicts}."""

    def __init__(self, config: MaskValidationConfig, storage_options: dict | None = None):
        super().__init__()
        self._config = config
        self._storage_options = storage_options

    def expand(self, batches):
        # Only rows with files to check cross the Reshuffle: on a local runner a shuffle holds
        # everything it carries, and rows without masks have nothing to spread.
        routed = batches | "RouteByWork" >> beam.ParDo(_RouteByWorkFn(self._config)).with_outputs(
            _WORK, main=_PASS
        )
        validated = (
            routed[_WORK]
            | "Reshuffle" >> beam.Reshuffle()
            | "Validate"
            >> beam.ParDo(_ValidateMasksFn(self._config, self._storage_options)).with_outputs(
                errors.DEAD_LETTERS, main="records"
            )
        )
        records = (routed[_PASS], validated["records"]) | "AllRecords" >> beam.Flatten()
        return {"records": records, errors.DEAD_LETTERS: validated[errors.DEAD_LETTERS]}


_WORK, _PASS = "work", "pass"


def rows_with_work(batch: pa.RecordBatch, config: MaskValidationConfig, profile) -> pa.Array:
    """Per row: is there a mask, brush RLE or image to check, or a profile to apply?"""
    if profile.errors or profile.checks_records:
        return pa.array([True] * batch.num_rows)
    work = pa.array([False] * batch.num_rows)
    if config.probe_images:
        work = pc.or_(work, pc.is_valid(_field(batch, "image", "uri")))
    if config.validate_masks:
        work = pc.or_(work, pc.is_valid(_field(batch, "mask", "uri")))
        objects = batch.column("objects")
        has_rle = pc.is_valid(pc.struct_field(pc.list_flatten(objects), "mask_rle"))
        rle_rows = pc.filter(pc.list_parent_indices(objects), has_rle)
        work = pc.or_(work, pc.is_in(pa.array(range(batch.num_rows), pa.int64()), value_set=rle_rows.cast(pa.int64())))
    return work


class _RouteByWorkFn(beam.DoFn):
    def __init__(self, config: MaskValidationConfig):
        self._config = config

    def setup(self):
        self._profile = profiles.get_profile(self._config.validation_profile)

    def process(self, batch: pa.RecordBatch):
        work = rows_with_work(batch, self._config, self._profile)
        busy = pc.sum(work.cast(pa.int64())).as_py() or 0
        if busy == 0:
            yield batch
        elif busy == batch.num_rows:
            yield beam.pvalue.TaggedOutput(_WORK, batch)
        else:
            yield beam.pvalue.TaggedOutput(_WORK, batch.filter(work))
            yield batch.filter(pc.invert(work))


class _DaemonPool:
    """A fixed set of daemon threads running submitted calls, returning Futures.

    Unlike ThreadPoolExecutor, whose threads the interpreter joins at exit, a thread stuck in a
    hostile file here can never keep a worker process (or the CLI) from exiting.
    """

    def __init__(self, workers: int):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(max(1, workers)):
            threading.Thread(target=self._work, name="validate-masks", daemon=True).start()
        self._workers = max(1, workers)

    def submit(self, fn, *args) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((future, fn, args))
        return future

    def shutdown(self, wait: bool = False, cancel_futures: bool = False) -> None:
        for _ in range(self._workers):
            self._queue.put(None)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                future.set_exception(exc)


@dataclasses.dataclass
class _RowTask:
    """One row's files, checked in a pool thread; the waiting thread reads started/stage."""

    row: dict
    started: float | None = None
    stage: str = "image"


@dataclasses.dataclass
class _RowOutcome:
    row: dict
    findings: list[tuple[str, str]]  # (code, message)
    changed: bool


class _ValidateMasksFn(beam.DoFn):
    def __init__(self, config: MaskValidationConfig, storage_options: dict | None):
        self._config = config
        self._storage_options = storage_options

    def setup(self):
        config = self._config
        self._profile = profiles.get_profile(config.validation_profile)
        self._policy = mask_checks.MaskPolicy(
            alpha_threshold=config.alpha_threshold,
            color_tolerance=config.color_tolerance,
            max_pixels=config.max_pixels,
            require_white_background=self._profile.mask_background_white,
        )
        self._pool = self._new_pool()
        self._counters: dict[str, Any] = {}
        self._validated = Metrics.counter("validate_masks", "masks_validated")

    def teardown(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _new_pool(self):
        return _DaemonPool(self._config.concurrency)

    def process(self, batch: pa.RecordBatch) -> Iterator:
        batch, rejected = self._reject_earlier_findings(batch)
        yield from rejected
        if batch.num_rows == 0 or not self._needs_work(batch):
            if batch.num_rows:
                yield batch
            return
        rows = batch.to_pylist()
        outcomes = self._run(rows)
        if not any(o.changed or o.findings for o in outcomes):
            yield batch
            return
        kept = []
        for outcome in outcomes:
            # Counters here, in the bundle's thread: Beam drops increments made in pool threads.
            if (outcome.row.get("mask") or {}).get("validated"):
                self._validated.inc()
            dead = self._apply_findings(outcome)
            if dead is not None:
                yield beam.pvalue.TaggedOutput(errors.DEAD_LETTERS, dead)
            else:
                kept.append(outcome.row)
        if kept:
            yield schema.rows_to_batch(kept)

    # -- which rows have work -------------------------------------------------------------

    def _reject_earlier_findings(self, batch: pa.RecordBatch):
        """Warnings found while parsing that this profile rejects -> dead letters (columnar)."""
        if not self._profile.errors or batch.num_rows == 0:
            return batch, []
        issues = batch.column("issues")
        codes = pc.struct_field(pc.list_flatten(issues), "code")
        hits = pc.is_in(codes, value_set=pa.array(sorted(self._profile.errors), pa.string()))
        if not pc.any(hits).as_py():
            return batch, []
        rejected_rows = sorted(set(pc.filter(pc.list_parent_indices(issues), hits).to_pylist()))
        letters = []
        for row in batch.take(pa.array(rejected_rows, pa.int64())).to_pylist():
            found = [i for i in row["issues"] if i["code"] in self._profile.errors]
            self._count(found[0]["code"])
            message = f"the {self._profile.name} profile rejects {found[0]['code']}: {found[0]['message']}"
            letters.append(beam.pvalue.TaggedOutput(errors.DEAD_LETTERS, errors.row_dead_letter(row, STAGE, found[0]["code"], message)))
        keep = pc.invert(pc.is_in(pa.array(range(batch.num_rows), pa.int64()), value_set=pa.array(rejected_rows, pa.int64())))
        return batch.filter(keep), letters

    def _needs_work(self, batch: pa.RecordBatch) -> bool:
        """Cheap, columnar: is there any mask to check, image to probe, or limit to apply?"""
        return bool(pc.any(rows_with_work(batch, self._config, self._profile)).as_py())

    # -- running the files of a batch concurrently, each bounded in time -----------------

    def _run(self, rows: list[dict]) -> list[_RowOutcome]:
        tasks = [_RowTask(row) for row in rows]
        futures = {self._pool.submit(self._check_row, task): i for i, task in enumerate(tasks)}
        outcomes: list[_RowOutcome | None] = [None] * len(rows)
        pending = set(futures)
        timed_out = False
        limit = self._config.timeout_seconds
        while pending:
            done, pending = concurrent.futures.wait(
                pending, timeout=_POLL_SECONDS, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                outcomes[futures[future]] = future.result()
            now = time.monotonic()
            for future in list(pending):
                task = tasks[futures[future]]
                if task.started is not None and now - task.started > limit:
                    pending.discard(future)
                    future.cancel()
                    timed_out = True
                    outcomes[futures[future]] = _timeout_outcome(task, limit)
            if timed_out and pending:
                pending = self._move_queued_to_fresh_pool(pending, futures, tasks)
        if timed_out:
            # Threads stuck in a decoder cannot be killed: leave them (daemon threads never
            # hold the process at exit), and give later batches a fresh pool.
            self._pool.shutdown()
            self._pool = self._new_pool()
        return outcomes

    def _move_queued_to_fresh_pool(self, pending, futures, tasks):
        """Files queued behind stuck threads would never start: run them on a new pool."""
        queued = [f for f in pending if tasks[futures[f]].started is None and f.cancel()]
        if not queued:
            return pending
        self._pool.shutdown()
        self._pool = self._new_pool()
        pending = set(pending) - set(queued)
        for future in queued:
            index = futures.pop(future)
            again = self._pool.submit(self._check_row, tasks[index])
            futures[again] = index
            pending.add(again)
        return pending

    def _check_row(self, task: _RowTask) -> _RowOutcome:
        task.started = time.monotonic()
        try:
            return self._check_row_files(task)
        except Exception as exc:  # noqa: BLE001 - one record's surprise never stops the batch
            _LOG.exception("validation failed for %s", (task.row.get("source") or {}).get("uri"))
            return _RowOutcome(task.row, [(errors.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")], True)

    def _check_row_files(self, task: _RowTask) -> _RowOutcome:
        row = dict(task.row)
        findings: list[tuple[str, str]] = []
        changed = False
        image = dict(row.get("image") or {})
        if self._config.probe_images and image.get("uri"):
            task.stage = "image"
            changed |= self._probe_image(image, findings)
            row["image"] = image
        mask = row.get("mask") or {}
        if self._config.validate_masks and mask.get("uri"):
            task.stage = "mask"
            row["mask"] = self._check_mask(row, image, findings)
            changed = True
        if self._config.validate_masks and any(o.get("mask_rle") for o in row.get("objects") or []):
            task.stage = "rle"
            row["objects"] = self._check_rles(row, image, findings)
            changed = True
        task.stage = "record"
        findings.extend(profiles.record_findings(row, self._profile))
        return _RowOutcome(row, findings, changed)

    def _probe_image(self, image: dict, findings: list) -> bool:
        """Probe the header; fill width/height/format the manifest lacks. True if filled."""
        uri = image["uri"]
        try:
            fs, path = storage.filesystem(uri, self._storage_options)
            header = image_probe.probe(fs, path, want_file_bytes=self._profile.max_image_bytes is not None)
        except image_probe.ImageProbeError as exc:
            findings.append((exc.code, f"{uri}: {exc.message}"))
            return False
        except (OSError, ValueError) as exc:
            findings.append((image_probe.IMAGE_NOT_FOUND, f"{uri}: {exc}"))
            return False
        findings.extend(profiles.file_size_findings(header.file_bytes, self._profile))
        filled = False
        for key in ("width", "height", "format"):
            if image.get(key) in (None, ""):
                image[key] = getattr(header, key)
                filled = True
        return filled

    def _check_mask(self, row: dict, image: dict, findings: list) -> dict:
        mask = dict(row["mask"])
        mask["validated"] = False
        uri = mask["uri"]
        try:
            data = self._fetch_mask(uri)
            report = mask_checks.check_mask(
                data,
                mask.get("color_map"),
                self._policy,
                image_size=(image.get("width"), image.get("height")),
                image_class=mask_checks.image_class_of(row.get("labels")),
            )
        except mask_checks.MaskRejected as exc:
            findings.append((exc.finding.code, f"{uri}: {exc.finding.message}"))
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

    def _check_rles(self, row: dict, image: dict, findings: list) -> list[dict]:
        """Brush RLEs not measured at parse time (image size unknown then, probed now):
        decode against the image size; fill area and bbox."""
        width, height = image.get("width"), image.get("height")
        objects = [dict(o) for o in row["objects"]]
        if not (width and height):
            return objects  # the RLE's size is the image's: nothing to check it against
        reported = any(i.get("code") == mask_checks.RLE_INVALID for i in row.get("issues") or [])
        for i, obj in enumerate(objects):
            if not obj.get("mask_rle") or obj.get("area") is not None:
                continue
            try:
                area, box = rle.mask_stats(obj["mask_rle"], width, height, self._policy.alpha_threshold)
            except ValueError as exc:
                if not reported:  # the format flagged it at parse time already: once is enough
                    findings.append((mask_checks.RLE_INVALID, f"object {i} ({obj.get('label')}): {exc}"))
                continue
            if area == 0:
                findings.append((mask_checks.RLE_EMPTY, f"object {i} ({obj.get('label')}): no pixel at alpha >= "
                                 f"{self._policy.alpha_threshold}"))
            obj["area"] = float(area)
            if obj.get("bbox") is None and box is not None:
                obj["bbox"] = dict(zip(("x_min", "y_min", "x_max", "y_max"), box))
        return objects

    def _fetch_mask(self, uri: str) -> bytes:
        """The mask's bytes; the header is read and bounded before the rest is downloaded."""
        try:
            fs, path = storage.filesystem(uri, self._storage_options)
            with fs.open(path, "rb") as f:
                head = f.read(mask_checks.HEADER_BYTES)
                width, height = mask_checks.png_size(head) if len(head) == mask_checks.HEADER_BYTES else (0, 0)
                if width:
                    mask_checks.check_size_bound(width, height, self._policy.max_pixels)
                    bound = max(_MIN_BYTE_BOUND, width * height * _MAX_BYTES_PER_PIXEL)
                    rest = f.read(bound + 1)
                    if len(rest) > bound:
                        raise mask_checks.MaskRejected(
                            mask_checks.MASK_TOO_LARGE, f"more than {bound} bytes for {width}x{height}"
                        )
                    return head + rest
                return head
        except mask_checks.MaskRejected:
            raise
        except (FileNotFoundError, IsADirectoryError):
            raise mask_checks.MaskRejected(mask_checks.MASK_NOT_FOUND, "does not exist (relative refs resolve against the manifest folder, or --relative_to)") from None
        except (OSError, ValueError) as exc:
            raise mask_checks.MaskRejected(mask_checks.MASK_NOT_FOUND, f"cannot read: {exc}") from None

    # -- findings -> issues or a dead letter ----------------------------------------------

    def _apply_findings(self, outcome: _RowOutcome) -> dict | None:
        """Appends warnings to the row's issues; returns a dead letter when one is an error."""
        row = outcome.row
        severe = []
        issues = list(row.get("issues") or [])
        for code, message in outcome.findings:
            severity = errors.ERROR if code == errors.INTERNAL_ERROR else self._profile.severity(code)
            self._count(code)
            if severity == errors.ERROR:
                severe.append((code, message))
            issues.append(schema.issue(code, message, severity))
        row["issues"] = issues
        if not severe:
            return None
        code, message = severe[0]
        if len(severe) > 1:
            message += "; also " + ", ".join(c for c, _ in severe[1:])
        return errors.row_dead_letter(row, STAGE, code, message)

    def _count(self, code: str) -> None:
        counter = self._counters.get(code)
        if counter is None:
            counter = self._counters[code] = Metrics.counter("validate_masks", code)
        counter.inc()


def _timeout_outcome(task: _RowTask, limit: float) -> _RowOutcome:
    code = {"image": image_probe.IMAGE_CORRUPT, "rle": mask_checks.RLE_INVALID}.get(
        task.stage, mask_checks.MASK_CORRUPT
    )
    row = dict(task.row)
    if task.stage == "mask" and row.get("mask"):
        row["mask"] = dict(row["mask"], validated=False)
    return _RowOutcome(row, [(code, f"no result within {limit:g} s ({task.stage} stage)")], True)


def _field(batch: pa.RecordBatch, column: str, field: str) -> pa.Array:
    return pc.struct_field(batch.column(column), field)


