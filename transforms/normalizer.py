"""RawBatch -> canonical rows, dead letters and counters: the Beam-free core of NormalizeRecords.

The reference path decodes every line and hands it to its format's `parse`. A format may declare
fast paths (`ManifestFormat.fast_paths`): each is given the lines the one before declined, and
`parse` decides whatever is left. Rows are merged back in input order, so the result is the
reference path's whatever took each line: fast rows carry no dead letters, issues or skips.
"""

from __future__ import annotations

import logging
from typing import Collection

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from transforms import errors, schema, storage
from transforms.checks import numbers
from transforms.errors import CATALOGUE, Provenance, RecordError
from transforms.formats.base import FastPath, ParseContext, get_format
from transforms.logs import CauseLog
from transforms.schema import SCHEMA, RawBatch

STAGE = errors.NORMALIZE

_LOG = logging.getLogger(__name__)
_BOM = b"\xef\xbb\xbf"
_DICTIONARY_COLUMNS = [name for name in SCHEMA.names if pa.types.is_dictionary(SCHEMA.field(name).type)]
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)


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
    """One RawBatch -> (rows, dead letters, counters), through the format's fast paths first.

    `fast`: True for every fast path the format declares, False for none (the reference path
    alone), or the names of the paths to use (the differential test runs each alone)."""

    def __init__(self, format_options: dict | None = None, relative_to: str | None = None,
                 fast: bool | Collection[str] = True):
        self._options = dict(format_options or {})  # format name -> that format's Options
        self._relative_to = relative_to
        self._fast = fast
        self._contexts: dict[tuple[str, str | None], ParseContext] = {}
        self._paths: dict[str, list[FastPath]] = {}  # format name -> its fast paths (their caches)
        self.fast_lines: dict[str, int] = {}  # fast path name -> lines it built rows for
        self.failures = CauseLog(_LOG)  # one traceback per cause, then counts

    def _context(self, uri: str, format_name: str | None) -> ParseContext:
        ctx = self._contexts.get((uri, format_name))
        if ctx is None:
            # Userinfo (user:pw@) is never copied into references, which land in outputs.
            base = storage.strip_userinfo(self._relative_to or storage.parent(uri)).rstrip("/")
            ctx = ParseContext(uri=uri, base_uri=base, options=self._options.get(format_name))
            self._contexts[(uri, format_name)] = ctx
        return ctx

    def fast_paths(self, format_name: str | None) -> list[FastPath]:
        """The fast paths this normalizer runs for a format, made once (they keep caches)."""
        if not format_name or self._fast is False:
            return []
        paths = self._paths.get(format_name)
        if paths is None:
            declared = get_format(format_name).fast_paths()
            paths = self._paths[format_name] = [p for p in declared if self._fast is True or p.name in self._fast]
        return paths

    def normalize(self, batch: RawBatch) -> tuple[pa.RecordBatch, list[dict], dict]:
        """One RawBatch -> (RecordBatch, dead letters, counters), exactly as the reference path."""
        paths = self.fast_paths(batch.format) if batch.raws else []
        if not paths:
            return self.normalize_with_plugin(batch)
        ctx = self._context(batch.uri, batch.format)
        parts: list[pa.RecordBatch] = []
        rest = list(range(len(batch.raws)))  # positions in `batch` no path has taken yet
        for path in paths:
            subset = batch if len(rest) == len(batch.raws) else _subset(batch, rest)
            part = path.read(subset, ctx)
            if part is None or not part.taken:
                continue
            parts.append(part.batch)
            self.fast_lines[path.name] = self.fast_lines.get(path.name, 0) + len(part.taken)
            rest = [rest[i] for i in part.declined]
            if not rest:
                break
        if not parts:
            return self.normalize_with_plugin(batch)
        taken = sum(part.num_rows for part in parts)
        if rest:
            plugin, dead, counts = self.normalize_with_plugin(_subset(batch, rest))
            parts.append(plugin)
        else:
            dead, counts = [], {"ok": 0, "dead_letters": 0, "records": 0, "skipped": {}, "dead_letter_codes": {}}
        merged = _merge(batch, parts)
        if merged is None:
            return self.normalize_with_plugin(batch)
        counts = dict(counts, ok=counts["ok"] + taken, blank=batch.blank, records=merged.num_rows)
        return merged, dead, counts

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


def _subset(batch: RawBatch, indices: list[int]) -> RawBatch:
    """The RawBatch of just `indices` (reader failures re-indexed), blank lines left out."""
    position = {old: new for new, old in enumerate(indices)}
    return RawBatch(
        uri=batch.uri,
        format=batch.format,
        shard=batch.shard,
        lines=[batch.lines[i] for i in indices],
        offsets=[batch.offsets[i] for i in indices],
        raws=[batch.raws[i] for i in indices],
        failures=[(position[i], code, message) for i, code, message in batch.failures if i in position],
        blank=0,
    )


def _merge(batch: RawBatch, parts: list[pa.RecordBatch]) -> pa.RecordBatch | None:
    """The parts' rows in input order (found by source offset; a line's several rows keep their
    order), dictionaries re-encoded in first-seen order; None when offsets are not unique."""
    parts = [part for part in parts if part.num_rows]
    if len(parts) == 1:
        return parts[0]
    by_offset = {offset: index for index, offset in enumerate(batch.offsets)}
    if len(by_offset) != len(batch.offsets):
        return None  # offsets do not identify records: let the plugin do the whole batch
    offsets = pa.chunked_array([pc.struct_field(part.column("source"), "offset") for part in parts]).to_pylist()
    positions = pa.array([by_offset[o] for o in offsets], pa.int64())
    table = pa.Table.from_batches(parts, schema=SCHEMA)
    table = table.take(pc.sort_indices(positions)).combine_chunks()
    for name in _DICTIONARY_COLUMNS:
        i = table.schema.get_field_index(name)
        column = pc.dictionary_encode(pc.cast(table.column(name), pa.string()))
        table = table.set_column(i, SCHEMA.field(i), column)
    return table.combine_chunks().to_batches()[0]
