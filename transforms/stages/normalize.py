"""NormalizeRecords: batches of raw records -> canonical RecordBatches and dead-letter rows.

Per-record Python work (JSON decoding, the format plugin) happens inside one DoFn call per
batch; what leaves is one Arrow RecordBatch per input batch. Every raw record ends as rows, a
dead letter, or (for a record a format skips on purpose) a counted skip; the per-file line
counts go to the ledger (transforms/stages/accounting.py).
"""

from __future__ import annotations

import logging

import apache_beam as beam
import orjson
import pyarrow as pa

from transforms import errors, schema, storage
from transforms.checks import numbers
from transforms.errors import CATALOGUE, Provenance, RecordError
from transforms.fast.normalize import FastNormalizer
from transforms.formats.base import ParseContext, get_format
from transforms.logs import CauseLog
from transforms.schema import RawBatch
from transforms.stages.accounting import LEDGER
from transforms.stages.coders import of_record_batches

RECORDS = "records"
STAGE = errors.NORMALIZE

_LOG = logging.getLogger(__name__)
_BOM = b"\xef\xbb\xbf"


def decode(raw: bytes):
    """Raw bytes -> a JSON object, or RecordError with the code that says why not."""
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise RecordError(errors.INVALID_UTF8, f"not UTF-8 at byte {bad.start}") from None
        raise RecordError(errors.INVALID_JSON, str(exc)) from None
    if not isinstance(obj, dict):
        raise RecordError(errors.NOT_AN_OBJECT, f"a record must be a JSON object, got {type(obj).__name__}")
    return obj


class RecordNormalizer:
    """Pure-Python core of NormalizeRecords: one RawBatch -> (rows, dead letters, counters)."""

    def __init__(self, format_options: dict | None = None, relative_to: str | None = None, fast: bool = True):
        self._options = dict(format_options or {})  # format name -> that format's Options
        self._relative_to = relative_to
        self._contexts: dict[tuple[str, str | None], ParseContext] = {}
        # columnar fast path (transforms/fast/) for the lines it fully understands
        self._fast = FastNormalizer(self._context, self.normalize_with_plugin) if fast else None
        self.failures = CauseLog(_LOG)  # one traceback per cause, then counts

    def _context(self, uri: str, format_name: str | None) -> ParseContext:
        ctx = self._contexts.get((uri, format_name))
        if ctx is None:
            # Userinfo (user:pw@) is never copied into references, which land in outputs.
            base = storage.strip_userinfo(self._relative_to or storage.parent(uri)).rstrip("/")
            ctx = ParseContext(uri=uri, base_uri=base, options=self._options.get(format_name))
            self._contexts[(uri, format_name)] = ctx
        return ctx

    def normalize(self, batch: RawBatch) -> tuple[pa.RecordBatch, list[dict], dict]:
        """One RawBatch -> (RecordBatch, dead letters, counters); the fast path when there is one."""
        result = self._fast.normalize(batch) if self._fast is not None else None
        return result if result is not None else self.normalize_with_plugin(batch)

    def normalize_with_plugin(self, batch: RawBatch) -> tuple[pa.RecordBatch, list[dict], dict]:
        """The reference path: every line decoded and parsed by the format plugin."""
        rows: list[dict] = []
        dead: list[dict] = []
        counts = {"ok": 0, "dead_letters": 0, "blank": batch.blank, "records": 0, "skipped": {}}
        failures = {index: (code, message) for index, code, message in batch.failures}
        fmt = get_format(batch.format) if batch.format else None
        ctx = self._context(batch.uri, batch.format)
        long_digits = numbers.any_might_be_inexact(batch.raws)  # once per batch: a regex per line cost 40 us on 3 KB lines
        for index, raw in enumerate(batch.raws):
            where = Provenance(batch.uri, batch.lines[index], batch.offsets[index], batch.format)
            try:
                if index in failures:
                    raise RecordError(*failures[index])
                if fmt is None:
                    raise RecordError(errors.UNKNOWN_FORMAT, "no registered format recognises this file; pass --format")
                parsed = fmt.parse(decode(raw), ctx)
            except RecordError as exc:
                stage = errors.READ if CATALOGUE[exc.code].stage == errors.READ else STAGE
                dead.append(errors.dead_letter(where, stage, exc.code, exc.message, raw))
                continue
            except Exception as exc:  # a plugin bug must not stop the job: keep the evidence
                self.failures.failed(f"format {batch.format} failed on {where.uri}:{where.line}", exc)
                dead.append(errors.dead_letter(where, STAGE, errors.INTERNAL_ERROR, repr(exc), raw))
                continue
            counts["ok"] += 1
            if long_digits and numbers.has_inexact_integer(raw):
                for row in parsed.rows:
                    row["issues"] = [*(row.get("issues") or []), numbers.inexact_integer_issue()]
            for reason, n in parsed.skipped.items():
                counts["skipped"][reason] = counts["skipped"].get(reason, 0) + n
            for position, row in enumerate(parsed.rows):
                source = row.get("source") or {}
                row["record_id"] = schema.record_id(where.uri, where.offset, position)
                row["source"] = {
                    "uri": storage.redact_url(where.uri),  # userinfo never reaches an output
                    "line": where.line,
                    "offset": where.offset,
                    "format": batch.format,
                    "attribute": source.get("attribute"),
                }
                rows.append((row, where, raw))
        built, rejected = _rows_to_batch(rows)
        for where, raw, message in rejected:
            dead.append(errors.dead_letter(where, STAGE, errors.INVALID_FIELD_TYPE, message, raw))
        counts["ok"] -= len(rejected)
        counts["dead_letters"] = len(dead)
        counts["records"] = built.num_rows
        codes: dict[str, dict[str, int]] = {}
        for letter in dead:
            by_stage = codes.setdefault(letter["stage"], {})
            by_stage[letter["code"]] = by_stage.get(letter["code"], 0) + 1
        counts["dead_letter_codes"] = codes
        return built, dead, counts


_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)


def _rows_to_batch(entries: list[tuple[dict, Provenance, bytes]]):
    """Rows -> RecordBatch. A row Arrow refuses (a plugin's type slip) rejects its whole line."""
    try:
        return schema.rows_to_batch(row for row, _, _ in entries), []
    except _ARROW_ERRORS:
        pass
    bad: dict[int, tuple[Provenance, bytes, str]] = {}
    for row, where, raw in entries:
        try:
            schema.rows_to_batch([row])
        except _ARROW_ERRORS as exc:
            bad.setdefault(where.offset, (where, raw, f"a value does not fit the schema: {exc}"[:500]))
    kept = [row for row, where, _ in entries if where.offset not in bad]
    return schema.rows_to_batch(kept), list(bad.values())


class _NormalizeFn(beam.DoFn):
    def __init__(self, format_options, relative_to):
        self._format_options = format_options
        self._relative_to = relative_to

    def setup(self):
        self._normalizer = RecordNormalizer(self._format_options, self._relative_to)

    def finish_bundle(self):
        self._normalizer.failures.flush()

    def process(self, batch: RawBatch):
        built, dead, counts = self._normalizer.normalize(batch)
        if built.num_rows:
            yield built
        for letter in dead:
            yield beam.pvalue.TaggedOutput(errors.DEAD_LETTERS, letter)
        yield beam.pvalue.TaggedOutput(LEDGER, (batch.uri, counts))


@beam.typehints.with_input_types(RawBatch)
class NormalizeRecords(beam.PTransform):
    """RawBatch -> {records: RecordBatch, dead_letters: dict, ledger: (uri, counts)}."""

    def __init__(self, format_options: dict | None = None, relative_to: str | None = None):
        super().__init__()
        self._format_options = format_options
        self._relative_to = relative_to

    def expand(self, batches):
        outputs = batches | "Normalize" >> beam.ParDo(
            _NormalizeFn(self._format_options, self._relative_to)
        ).with_outputs(errors.DEAD_LETTERS, LEDGER, main=RECORDS)
        of_record_batches(outputs[RECORDS])
        return outputs
