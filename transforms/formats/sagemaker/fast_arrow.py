"""Ground Truth classification and Lookout for Vision lines from bytes to Arrow, a batch at a time.

A clean batch (no reader failures, no byte order mark) is parsed in one call by Arrow's C++
JSON reader; one whose numbers orjson would read otherwise (NaN, Infinity, an integer beyond 64
bits: Arrow gives a non-finite or huge double) is left to the per-line path. Its classification
and semantic-segmentation attributes are read column by column with pyarrow.compute: no Python
object per line except the record id's hash, dates in Ground Truth's own spelling cast by Arrow
(a Python call per distinct date of any other spelling) and a Python call per distinct relative
image reference.

Arrow cannot see everything a line says: whether a key was absent or null, whether a key was
written twice in the line, in which order the keys came, or how a string was escaped. Those are
checked on the raw bytes (counts and positions of each `"key":`), and a line where any of them
could matter is declined: it goes through the per-line path (fast_lines.py, then the plugin),
so every row is exactly what parse.py makes of the line.
None (the whole batch to the per-line path) when the batch holds anything else: another label
type, a plain field, a value type whose JSON spelling Arrow does not keep.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from transforms import schema
from transforms.dates import cached_timestamp
from transforms.formats.base import FastPart, FastPath, ParseContext
from transforms.formats.fast_columns import source_column
from transforms.formats.sagemaker import parse as gt

MIN_LINES = 16  # below this the per-line path is as fast
_TYPES = {"groundtruth/image-classification": gt.CLASSIFICATION, "groundtruth/semantic-segmentation": gt.MASK}
_READ_TYPES = [orjson.dumps(t) for t in _TYPES]  # the types above as a line spells them plainly
_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'  # what orjson escapes in a string; anything else it writes as is
_PLAIN_KEY = set(map(chr, range(0x20, 0x7F))) - {'"', "\\"}
_INT32 = 2**31
_INT64_LIMIT = 2.0**63  # a double this large came from an integer orjson may read otherwise
_BOM = b"\xef\xbb\xbf"
_DATE_CACHE_SIZE = 1 << 16
_JSON_SCALARS = (pa.types.is_string, pa.types.is_int64, pa.types.is_boolean)
_TASKS = ("semantic_segmentation", "multilabel_classification", "classification", "unlabeled")


class _Refused(Exception):
    """The batch holds something this path does not read: the per-line path takes it all."""


class ArrowBlockPath(FastPath):
    """The format's first fast path: a whole batch through Arrow's JSON reader."""

    name = "arrow"
    shapes = ("classification", "lookout", "lookout_masks", "segmentation")

    def __init__(self):
        self._dates: dict = {}  # creation-date text -> datetime, across batches

    def read(self, batch, ctx: ParseContext) -> FastPart | None:
        return normalize_block(batch, ctx, self._dates)


def normalize_block(batch, ctx: ParseContext, dates: dict) -> FastPart | None:
    """The lines of `batch` this path reads exactly, as canonical rows; None for the whole batch."""
    raws = batch.raws
    if len(raws) < MIN_LINES or batch.failures:
        return None
    block = b"\n".join(raws)
    if _names_another_type(raws[0]) or _names_another_type(raws[-1]):
        return None  # another label type (detection, multi-label): parsing would be wasted
    if not block.isascii() and _BOM in block:
        return None
    try:
        lines = read_block(block, len(raws))
        if lines is None or _has_numbers_orjson_reads_otherwise(lines):
            return None
        return _Block(batch, ctx, dates, lines, block).build()
    except (_Refused, pa.ArrowException, UnicodeDecodeError):
        return None


def _names_another_type(raw: bytes) -> bool:
    """Whether a line names a label type this path does not read (a line in the middle of the
    batch that does is refused by _Block._kind, after the parse)."""
    return raw.count(b'"groundtruth/') > sum(raw.count(t) for t in _READ_TYPES)


def _has_numbers_orjson_reads_otherwise(table: pa.RecordBatch) -> bool:
    """Whether a number column holds NaN or an infinity, or a float of 2**63 or more.

    Arrow reads the literals NaN and Infinity, which orjson refuses (the line is INVALID_JSON),
    and an integer beyond the 64-bit range as a double (always at least 2**63 in magnitude),
    where the plugin warns INTEGER_TOO_LARGE: the batch goes to the per-line path. Checked on
    the parsed columns, not by scanning the bytes: a string that spells NaN changes nothing."""
    return any(_unsafe_floats(column) for column in table.columns)


def _unsafe_floats(values: pa.Array) -> bool:
    type_ = values.type
    if pa.types.is_floating(type_):
        if values.null_count == len(values):
            return False
        finite = pc.is_finite(values)
        if not pc.all(pc.fill_null(finite, True)).as_py():
            return True
        low, high = pc.min_max(values).values()
        return max(abs(low.as_py()), abs(high.as_py())) >= _INT64_LIMIT
    if pa.types.is_struct(type_):
        return any(_unsafe_floats(values.field(i)) for i in range(type_.num_fields))
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return _unsafe_floats(values.flatten())
    return False


def read_block(block: bytes, lines: int) -> pa.RecordBatch | None:
    """JSON lines joined by newlines -> one RecordBatch, parsed in one call by Arrow's C++
    reader (one block, no threads: the batch is small); None when Arrow sees another number of
    rows than `lines`. Raises what Arrow raises on text it cannot read."""
    table = pj.read_json(
        io.BytesIO(block),
        read_options=pj.ReadOptions(use_threads=False, block_size=len(block) + 1),
        parse_options=pj.ParseOptions(newlines_in_values=False),
    )
    return table.combine_chunks().to_batches()[0] if table.num_rows == lines else None


@dataclasses.dataclass
class _Attribute:
    name: str
    kind: str
    value: pa.Array
    metadata: pa.StructArray
    present: np.ndarray  # bool per line


class _Block:
    """One parsed batch: the per-line checks, then the canonical columns of the lines taken."""

    def __init__(self, batch, ctx: ParseContext, dates: dict, table: pa.RecordBatch, block: bytes):
        self.batch, self.ctx, self.dates, self.table = batch, ctx, dates, table
        self.n = table.num_rows
        lengths = np.fromiter(map(len, batch.raws), np.int64, self.n) + 1
        offsets = np.zeros(self.n + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        offsets[-1] = len(block)
        # the raw lines as one Arrow column over the same bytes (no copy), for the key checks
        self.lines = pa.Array.from_buffers(pa.large_binary(), self.n, [None, pa.py_buffer(offsets), pa.py_buffer(block)])
        self.block = block
        # Without a backslash no string holds a quote, a backslash or a control character, and
        # every key is spelled as Arrow reports it: the key checks can count over the whole block.
        self.plain = b"\\" not in block
        # JSON spells null only as `null`: without it, a null in Arrow is a key the line lacks
        self.no_nulls = b"null" not in block
        self._null_lines: np.ndarray | None = None  # per line: its bytes spell `null` (see _valid_or_absent)
        self.ok = np.ones(self.n, bool)

    # -- checks ---------------------------------------------------------------------------

    def _key_count(self, key: str) -> np.ndarray:
        return _numpy(pc.count_substring(self.lines, f'"{key}":'))

    def _spelled_once_where_valid(self, key: str, valid: np.ndarray) -> bool:
        """Whether `"key":` occurs exactly once in each line where Arrow has a value for it and
        nowhere else (so no line wrote it as null), counted over the whole block at once.

        A line with a value spells the key at least once, and without backslashes only as
        `"key"` followed by optional whitespace and a colon; with no whitespace variant in the
        block, a total equal to the number of such lines leaves each exactly one occurrence."""
        quoted = f'"{key}"'.encode()
        if any(quoted + space in self.block for space in (b" ", b"\t", b"\r")):
            return False
        return self.block.count(quoted + b":") == int(valid.sum())

    def _valid_or_absent(self, valid, present: np.ndarray) -> np.ndarray:
        """Lines where a value has no null to hide: it is valid, or the line never spells
        `null` (so Arrow's null is a key the line lacks, which the plugin reads the same way)."""
        if self._null_lines is None:
            self._null_lines = _numpy(pc.match_substring(self.lines, "null"))
        return ~present | _numpy(valid) | ~self._null_lines

    def _require(self, condition) -> None:
        """Lines where `condition` is false are declined."""
        self.ok &= _numpy(condition) if not isinstance(condition, np.ndarray) else condition

    def _attributes(self) -> list[_Attribute]:
        names = self.table.schema.names
        if gt.SOURCE_REF not in names or self.table.schema.field(gt.SOURCE_REF).type != pa.string():
            raise _Refused
        found = []
        for name in names:
            if not set(name) <= _PLAIN_KEY:
                raise _Refused  # a key Arrow decoded from escapes: its raw spelling is unknown
            if name == gt.SOURCE_REF or (name.endswith(gt.METADATA_SUFFIX) and name[: -len(gt.METADATA_SUFFIX)] in names):
                continue
            meta_name = name + gt.METADATA_SUFFIX
            if meta_name not in names or not pa.types.is_struct(self.table.schema.field(meta_name).type):
                raise _Refused  # a plain field, an orphan, a mask reference without metadata
            value, metadata = self.table.column(name), self.table.column(meta_name)
            value_valid, meta_valid = _numpy(value.is_valid()), _numpy(metadata.is_valid())
            present = value_valid & meta_valid
            if self.no_nulls:
                self._require(value_valid == meta_valid)  # a key alone: a plain field or an orphan
            elif self.plain and self._spelled_once_where_valid(name, value_valid) and self._spelled_once_where_valid(meta_name, meta_valid):
                self._require(value_valid == meta_valid)  # a key alone: a plain field or an orphan
            else:
                value_count, meta_count = self._key_count(name), self._key_count(meta_name)
                present &= (value_count == 1) & (meta_count == 1)
                self._require(present | ((value_count == 0) & (meta_count == 0)))
            kind = self._kind(metadata, present)
            found.append(_Attribute(name, kind, value, metadata, present & self.ok))
        return found

    def _kind(self, metadata: pa.StructArray, present: np.ndarray) -> str:
        if "type" not in _field_names(metadata) or metadata.type.field("type").type != pa.string():
            raise _Refused
        # lines without a type are declined (their `type` is null where the rest needs a value)
        types = pc.unique(pc.filter(metadata.field("type"), pa.array(present))).drop_null().to_pylist()
        kinds = {_TYPES.get(t) for t in types}
        if len(kinds) > 1 or None in kinds:
            raise _Refused
        return kinds.pop() if kinds else gt.CLASSIFICATION

    def _check_attribute(self, attribute: _Attribute) -> None:
        meta, present = attribute.metadata, attribute.present
        children = _field_names(meta)
        for name in ("confidence",):
            if name in children and not _is_number_or_null(meta.type.field(name).type):
                raise _Refused
        if "creation-date" in children and meta.type.field("creation-date").type not in (pa.string(), pa.null()):
            raise _Refused
        if attribute.kind == gt.CLASSIFICATION:
            if "class-name" not in children or meta.type.field("class-name").type != pa.string():
                raise _Refused
            self._require(~present | _numpy(meta.field("class-name").is_valid()))
            self._check_json_scalar(attribute.value, present)
        else:
            if attribute.value.type != pa.string():
                raise _Refused
            if "internal-color-map" in children:
                self._check_color_map(meta.field("internal-color-map"), present)
        for name in _rest_names(attribute):
            self._check_json_scalar(meta.field(name), present)

    def _check_json_scalar(self, values: pa.Array, present: np.ndarray) -> None:
        """A value written back into `extra`: a type whose JSON spelling is known, never null."""
        if not any(is_type(values.type) for is_type in _JSON_SCALARS):
            raise _Refused
        if not self.no_nulls:  # null or absent: the line decides, and the bytes would have to tell
            self._require(self._valid_or_absent(values.is_valid(), present))
        if values.type == pa.string() and not self.plain:
            self._require(~present | ~_numpy(pc.fill_null(pc.match_substring_regex(values, _NEEDS_ESCAPE), False)))

    def _check_color_map(self, colors: pa.Array, present: np.ndarray) -> None:
        if not pa.types.is_struct(colors.type):
            raise _Refused
        if not self.no_nulls:
            self._require(self._valid_or_absent(colors.is_valid(), present))
        indices = set()
        for entry in colors.type:
            if not entry.name.isdigit() or not pa.types.is_struct(entry.type) or int(entry.name) >= _INT32:
                raise _Refused
            indices.add(int(entry.name))
            if not self.no_nulls:
                self._require(self._valid_or_absent(colors.field(entry.name).is_valid(), present))
            for field, accepts in (("class-name", _is_string_or_null), ("hex-color", _is_string_or_null),
                                   ("confidence", _is_number_or_null)):
                if entry.type.get_field_index(field) >= 0 and not accepts(entry.type.field(field).type):
                    raise _Refused
        if len(indices) != colors.type.num_fields:
            raise _Refused  # "1" and "01": the plugin keeps both, in the line's own order

    def _check_order(self, attributes: list[_Attribute]) -> None:
        """Attributes in every taken line in the order of the columns (the line order counts)."""
        raws = self.batch.raws
        for i in range(len(attributes)):
            first = f'"{attributes[i].name}":'.encode()
            for j in range(i + 1, len(attributes)):
                second = f'"{attributes[j].name}":'.encode()
                both = np.flatnonzero(attributes[i].present & attributes[j].present)
                self.ok[[k for k in both.tolist() if not _in_order(raws[k], first, second)]] = False

    def _check_source_ref(self) -> None:
        ref = self.table.column(gt.SOURCE_REF)
        # a first character that is printable ASCII and not a space: valid and not blank
        offsets, data = _string_buffers(ref)
        lengths = np.diff(offsets)
        first = data[np.minimum(offsets[:-1], max(len(data) - 1, 0))] if len(data) else np.zeros(len(ref), np.uint8)
        self._require(_numpy(ref.is_valid()) & (lengths > 0) & (first >= 0x21) & (first <= 0x7E))

    # -- build ------------------------------------------------------------------------------

    def build(self) -> FastPart | None:
        attributes = self._attributes()
        for attribute in attributes:
            self._check_attribute(attribute)
        self._check_source_ref()
        self._check_order(attributes)
        masks = sum((a.present.astype(np.int8) for a in attributes if a.kind == gt.MASK), np.zeros(self.n, np.int8))
        self._require(masks <= 1)  # MULTIPLE_MASKS: an issue, the plugin's to write
        created = self._created_at(attributes)  # declines lines with an unreadable date
        taken = np.flatnonzero(self.ok)
        if not taken.size:
            return None
        declined = np.flatnonzero(~self.ok).tolist()
        table = self.table
        if declined:
            keep = pa.array(taken)
            table = table.take(keep)
            for attribute in attributes:
                attribute.present = attribute.present[taken]
                attribute.value = attribute.value.take(keep)
                attribute.metadata = attribute.metadata.take(keep)
            created = created.take(keep)
        rows = _Rows(self.batch, self.ctx, table, attributes, created, taken)
        return FastPart(rows.record_batch(), taken.tolist(), declined)

    def _created_at(self, attributes: list[_Attribute]) -> pa.Array:
        """creation-date of each line's first attribute; declines lines with an unreadable one."""
        texts = pa.nulls(self.n, pa.string())
        for attribute in reversed(attributes):
            if "creation-date" in _field_names(attribute.metadata):
                values = attribute.metadata.field("creation-date").cast(pa.string())
            else:
                values = pa.nulls(self.n, pa.string())
            texts = pc.if_else(pa.array(attribute.present), values, texts)
        stamps = parse_dates(texts, self.dates)
        self._require(~_numpy(pc.and_(texts.is_valid(), stamps.is_null())))
        return stamps


# creation-date as Ground Truth writes it: ISO 8601, milliseconds, no offset (naive means UTC):
# YYYY-MM-DDTHH:MM:SS.mmm, its separators at these positions and digits everywhere else
_ISO_MILLIS_SEPARATORS = {4: "-", 7: "-", 10: "T", 13: ":", 16: ":", 19: "."}
_ISO_MILLIS_LENGTH = 23
_ISO_MILLIS_DIGITS = [i for i in range(_ISO_MILLIS_LENGTH) if i not in _ISO_MILLIS_SEPARATORS]
_STAMP = pa.timestamp("ms", tz="UTC")


def parse_dates(texts: pa.Array, cache: dict) -> pa.Array:
    """dates.parse_timestamp of each text as timestamp[ms, UTC]; null where the text is null or
    no date (INVALID_DATE: the plugin's to write).

    Texts spelled as Ground Truth writes them (YYYY-MM-DDTHH:MM:SS.mmm, found with numpy on the
    column's bytes) are cast by Arrow in one call: its ISO parser refuses what fromisoformat
    refuses in that spelling (month 13, 30 February, hour 24, second 60) and gives the same
    instant; year 0, which Arrow reads and Python does not, is left out. Any other spelling, or
    a batch Arrow refuses, is parsed in Python once per distinct text, through `cache`."""
    quick = _iso_millis(texts)
    parsed = None
    if quick.all():
        try:
            return pc.cast(texts, pa.timestamp("ms")).cast(_STAMP)
        except pa.ArrowInvalid:  # a date that does not exist: every text the slow way
            quick[:] = False
    elif quick.any():
        try:
            cast = pc.cast(pc.filter(texts, quick), pa.timestamp("ms")).cast(_STAMP)
        except pa.ArrowInvalid:
            quick[:] = False
        else:
            parsed = pc.replace_with_mask(pa.nulls(len(texts), _STAMP), pa.array(quick), cast)
    slow = _numpy(texts.is_valid()) & ~quick
    if not slow.any():
        return parsed if parsed is not None else pa.nulls(len(texts), _STAMP)
    rest = pc.filter(texts, pa.array(slow))
    distinct = pc.unique(rest)
    found = pa.array([cached_timestamp(cache, text, _DATE_CACHE_SIZE) for text in distinct.to_pylist()], _STAMP)
    stamps = pc.take(found, pc.index_in(rest, distinct))
    return pc.replace_with_mask(parsed if parsed is not None else pa.nulls(len(texts), _STAMP), pa.array(slow), stamps)


def _iso_millis(texts: pa.Array) -> np.ndarray:
    """Per row: the text is YYYY-MM-DDTHH:MM:SS.mmm with a year other than 0000."""
    n = len(texts)
    offsets, data = _string_buffers(texts)
    candidates = np.flatnonzero((np.diff(offsets) == _ISO_MILLIS_LENGTH) & _numpy(texts.is_valid()))
    quick = np.zeros(n, bool)
    if not len(candidates):
        return quick
    chars = data[offsets[candidates, None] + np.arange(_ISO_MILLIS_LENGTH)]
    digits = chars[:, _ISO_MILLIS_DIGITS]
    ok = ((digits >= ord("0")) & (digits <= ord("9"))).all(axis=1)
    for position, separator in _ISO_MILLIS_SEPARATORS.items():
        ok &= chars[:, position] == ord(separator)
    ok &= (chars[:, :4] != ord("0")).any(axis=1)
    quick[candidates] = ok
    return quick


class _Rows:
    """The canonical columns of the lines taken."""

    def __init__(self, batch, ctx, table: pa.RecordBatch, attributes: list[_Attribute], created: pa.Array, taken):
        self.batch, self.ctx, self.table, self.attributes, self.created = batch, ctx, table, attributes, created
        self.n = table.num_rows
        self.taken = taken
        self.classes = [a for a in attributes if a.kind == gt.CLASSIFICATION]
        self.masks = [a for a in attributes if a.kind == gt.MASK]
        self.any_present = np.zeros(self.n, bool)
        for attribute in attributes:
            self.any_present |= attribute.present

    def record_batch(self) -> pa.RecordBatch:
        s, n, batch = schema, self.n, self.batch
        offsets = _picked(batch.offsets, self.taken)
        lines = _picked(batch.lines, self.taken)
        labels, label_counts = self._labels()
        has_mask = np.zeros(n, bool)
        for attribute in self.masks:
            has_mask |= attribute.present
        source = source_column(batch.uri, batch.format, lines, offsets, self._attribute_names())
        image = pa.StructArray.from_arrays(
            [resolved(self.ctx, self.table.column(gt.SOURCE_REF)), pa.nulls(n, pa.int32()), pa.nulls(n, pa.int32()),
             pa.nulls(n, pa.string())],
            fields=list(s.IMAGE),
        )
        task = np.select([has_mask, label_counts > 1, label_counts == 1], [0, 1, 2], 3)
        objects = s.empty_lists(n, "objects")
        issues = s.empty_lists(n, "issues")
        arrays = [
            schema.record_ids(batch.uri, offsets.tolist()),
            source,
            image,
            _dictionary_in_first_seen_order(task, _TASKS),
            s.constant_dictionary(n, "ground_truth"),
            labels,
            objects,
            self._mask(has_mask),
            self._annotation(),
            s.constant_dictionary(n, None),
            issues,
            self._extra(),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=s.SCHEMA)

    def _attribute_names(self) -> pa.Array:
        """source.attribute: the line's attributes joined by ',' (null when it has none)."""
        if not self.attributes:
            return pa.nulls(self.n, pa.string())
        parts = [pc.if_else(pa.array(a.present), pa.scalar(a.name), pa.scalar(None, pa.string())) for a in self.attributes]
        joined = _join_skipping_nulls(parts, ",")
        return pc.if_else(pa.array(self.any_present), joined, pa.scalar(None, pa.string()))

    def _labels(self) -> tuple[pa.Array, np.ndarray]:
        """labels: one (class-name, confidence) per classification attribute, in line order."""
        s, n = schema, self.n
        if not self.classes:
            empty = s.empty_lists(n, "labels")
            return empty, np.zeros(n, np.int64)
        present = np.stack([a.present for a in self.classes])
        names = pa.concat_arrays([a.metadata.field("class-name") for a in self.classes])
        scores = pa.concat_arrays([_float32(a.metadata, "confidence", n) for a in self.classes])
        rows, which = np.nonzero(present.T)  # row by row, attributes in order
        flat = pa.array(which * n + rows)
        counts = present.sum(axis=0)
        label = pa.StructArray.from_arrays([pc.take(names, flat), pc.take(scores, flat)], fields=list(s.LABEL))
        offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
        return pa.ListArray.from_arrays(offsets, label, type=s.SCHEMA.field("labels").type), counts

    def _mask(self, has_mask: np.ndarray) -> pa.StructArray:
        s, n = schema, self.n
        uri = pa.nulls(n, pa.string())
        columns: list[list[pa.Array]] = [[], [], [], []]  # index, class name, hex colour, confidence
        included = []  # per (attribute, colour entry): the rows that list it
        for attribute in self.masks:
            uri = pc.if_else(pa.array(attribute.present), attribute.value, uri)
            meta = attribute.metadata
            if "internal-color-map" not in _field_names(meta):
                continue
            colors = meta.field("internal-color-map")
            listed = attribute.present & _numpy(colors.is_valid())
            for index, entry in sorted((int(e.name), colors.field(e.name)) for e in colors.type):
                included.append(listed & _numpy(entry.is_valid()))
                columns[0].append(pa.array(np.full(n, index, np.int32)))
                columns[1].append(_child(entry, "class-name", pa.string(), n))
                columns[2].append(_child(entry, "hex-color", pa.string(), n))
                columns[3].append(_float32(entry, "confidence", n))
        types = (pa.int32(), pa.string(), pa.string(), pa.float32())
        if included:
            matrix = np.stack(included)
            rows, which = np.nonzero(matrix.T)  # row by row, entries in index order
            take = pa.array(which * n + rows)
            counts = matrix.sum(axis=0)
            color_columns = [pc.take(pa.concat_arrays(c), take) for c in columns]
        else:
            counts = np.zeros(n, np.int64)
            color_columns = [pa.array([], t) for t in types]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        color_map = pa.StructArray.from_arrays(color_columns, fields=list(s.COLOR))
        return pa.StructArray.from_arrays(
            [resolved(self.ctx, uri), pa.ListArray.from_arrays(pa.array(offsets), color_map, type=pa.list_(s.COLOR)),
             pa.nulls(n, pa.int32()), pa.nulls(n, pa.int32()), pa.nulls(n, pa.list_(s.CLASS_PIXELS)),
             pa.nulls(n, s.BBOX), pa.nulls(n, pa.bool_())],
            fields=list(s.MASK), mask=pa.array(~has_mask),
        )

    def _annotation(self) -> pa.StructArray:
        """Provenance from the metadata of each line's first attribute."""
        s, n = schema, self.n
        job, human, confidence = pa.nulls(n, pa.string()), pa.nulls(n, pa.bool_()), pa.nulls(n, pa.float32())
        for attribute in reversed(self.attributes):
            meta, chosen = attribute.metadata, pa.array(attribute.present)
            job = pc.if_else(chosen, _child(meta, "job-name", pa.string(), n, only_type=True), job)
            human = pc.if_else(chosen, _human(meta, n), human)
            confidence = pc.if_else(chosen, _float32(meta, "confidence", n), confidence)
        return pa.StructArray.from_arrays(
            [pa.nulls(n, pa.string()), job, pa.nulls(n, pa.string()), human, self.created, confidence,
             pa.nulls(n, pa.string())],
            fields=list(s.ANNOTATION), mask=pa.array(~self.any_present),
        )

    def _extra(self) -> pa.Array:
        """dumps_extra({"sagemaker": {"attributes": [...]}}), spelled out column by column.

        The text is written in one pass (one binary_join_element_wise of constants and
        columns); an attribute only some lines have is spelled first on its own, null where a
        line lacks it, then joined in with a separator where an entry comes before it."""
        n = self.n
        if not self.attributes:
            return pa.nulls(n, pa.string())
        label_index = np.zeros(n, np.int64)
        earlier = np.zeros(n, bool)  # lines with an entry written before this attribute's
        pieces: list = ['{"sagemaker":{"attributes":[']
        for attribute in self.attributes:
            present = attribute.present
            name = orjson.dumps(attribute.name).decode()
            if attribute.kind == gt.CLASSIFICATION:
                entry = ['{"kind":"classification","labels":[', pa.array(label_index).cast(pa.string()), '],"metadata":',
                         *_rest_pieces(attribute), ',"name":' + name + ',"objects":[],"value":', *_json_pieces(attribute.value), "}"]
                label_index = label_index + present
            else:
                entry = ['{"kind":"mask","labels":[],"metadata":', *_rest_pieces(attribute), ',"name":' + name + ',"objects":[]}']
            if present.all():
                pieces += ([","] if earlier.all() else [_gated(",", earlier)]) if earlier.any() else []
                pieces += entry
            elif present.any():
                pieces += [_gated(",", earlier & present), _join([_gated("", present), *entry], n)]
            earlier |= present
        extra = _join([*pieces, "]}}"], n, null_handling="replace", null_replacement="")
        if self.any_present.all():
            return extra
        return pc.if_else(pa.array(self.any_present), extra, pa.scalar(None, pa.string()))


def resolved(ctx: ParseContext, refs: pa.Array) -> pa.Array:
    """ctx.resolve of each reference; URLs and absolute paths (most) stay as written."""
    as_written = pc.or_(pc.or_(pc.match_substring(refs, "://"), pc.starts_with(refs, "/")), pc.equal(refs, ""))
    if not ctx.base_uri or pc.all(pc.fill_null(as_written, True)).as_py():
        return refs
    resolve, flags = ctx.resolve, _numpy(pc.fill_null(as_written, True))
    values = refs.to_pylist()
    return pa.array([r if flag else resolve(r) for r, flag in zip(values, flags)], pa.string())


def _dictionary_in_first_seen_order(codes: np.ndarray, names: tuple[str, ...]) -> pa.DictionaryArray:
    """names[code] of each row, dictionary-encoded as pc.dictionary_encode does it (the
    dictionary in the order values first occur), from integer codes."""
    seen, first = np.unique(codes, return_index=True)
    order = seen[np.argsort(first)]
    position = np.zeros(len(names), np.int32)
    position[order] = np.arange(len(order), dtype=np.int32)
    return pa.DictionaryArray.from_arrays(pa.array(position[codes]), pa.array([names[i] for i in order], pa.string()))


def _string_buffers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, bytes) of a string column as numpy views: offsets[i]:offsets[i + 1] is row
    i's text in the bytes (empty for a null row)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    buffers = values.buffers()
    offsets = np.frombuffer(buffers[1], np.int32, len(values) + 1, values.offset * 4).astype(np.int64)
    data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    return offsets, data


def _picked(values: list[int], taken: np.ndarray) -> np.ndarray:
    """values[i] for each i in `taken` (all of them, in order, most of the time)."""
    values = np.asarray(values, np.int64)
    return values if len(taken) == len(values) else values[taken]


def _in_order(raw: bytes, first: bytes, second: bytes) -> bool:
    """Whether the line spells each key once, plainly, `first` before `second` (a key written
    with escapes, or also inside a nested object, leaves the order unknown: False)."""
    a, b = raw.find(first), raw.find(second)
    return 0 <= a < b and raw.rfind(first) == a and raw.rfind(second) == b


def _rest_names(attribute: _Attribute) -> list[str]:
    """Metadata fields without a column (kept in extra), sorted as dumps_extra sorts them."""
    kept = gt.COLUMN_METADATA[attribute.kind]
    return sorted(name for name in _field_names(attribute.metadata) if name not in kept)


def _rest_pieces(attribute: _Attribute) -> list:
    """The JSON object of the fields without a column, as pieces for _join (constants and
    columns); a field a line lacks is left out.

    A field with one value in every line that has the attribute (a job name, a type) is
    spelled once, by orjson, instead of once per line."""
    names = _rest_names(attribute)
    if not names:
        return ["{}"]
    present = pa.array(attribute.present)
    fields, nullable = [], False
    for name in names:
        key = orjson.dumps(name).decode() + ":"
        column = attribute.metadata.field(name)
        values = pc.filter(column, present)
        if values.null_count == 0 and len(values) and pc.all(pc.equal(values, values[0])).as_py():
            fields.append([key + orjson.dumps(values[0].as_py()).decode()])
        else:
            nullable = nullable or values.null_count > 0
            fields.append([key, *_json_pieces(column)])
    if not nullable:
        pieces = ["{"]
        for i, field in enumerate(fields):
            pieces += ([","] if i else []) + field
        return pieces + ["}"]
    n = len(attribute.metadata)
    arrays = [_join(field, n) for field in fields]
    return [_concat(["{", _join_skipping_nulls(arrays, ","), "}"])]


def _json_pieces(values: pa.Array) -> list:
    """The JSON text of strings (known to need no escape), 64-bit integers and booleans, as
    pieces for _join: a string column between two quotes."""
    return ['"', values, '"'] if values.type == pa.string() else [_json_scalar(values)]


def _join(pieces: list, n: int, **options) -> pa.Array:
    """Element-wise concatenation of `pieces` (constant strings and string columns of `n`
    rows), adjacent constants merged first; null where a column is (unless `options` say)."""
    merged: list = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    if not any(isinstance(piece, (pa.Array, pa.ChunkedArray)) for piece in merged):
        merged.append(_gated("", np.ones(n, bool)))
    return pc.binary_join_element_wise(*[pa.scalar(p) if isinstance(p, str) else p for p in merged], "", **options)


def _gated(text: str, where: np.ndarray) -> pa.Array:
    """`text` where `where` is true, null elsewhere."""
    valid = None if where.all() else pa.py_buffer(np.packbits(where, bitorder="little"))
    n = len(where)
    if not text:
        return pa.Array.from_buffers(pa.string(), n, [valid, pa.py_buffer(np.zeros(n + 1, np.int32)), pa.py_buffer(b"")])
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32), mask=~where), pa.array([text])).cast(pa.string())


def _json_scalar(values: pa.Array) -> pa.Array:
    """The JSON text of strings (known to need no escape), 64-bit integers and booleans."""
    if values.type == pa.string():
        return pc.binary_join_element_wise('"', values, '"', "")
    if values.type == pa.bool_():
        return pc.if_else(values, "true", "false")
    return values.cast(pa.string())


def _join_skipping_nulls(pieces: list[pa.Array], separator: str) -> pa.Array:
    """The non-null pieces of each row joined by `separator` ("" when all are null).

    Not binary_join_element_wise(..., null_handling="skip"): with arrays only, Arrow 25 returns
    fewer rows than it was given. Each piece is prefixed with the separator instead, nulls are
    joined as "", and the first separator is cut off."""
    prefixed = [pc.binary_join_element_wise(pa.scalar(separator), piece, "") for piece in pieces]
    joined = pc.binary_join_element_wise(*prefixed, "", null_handling="replace", null_replacement="")
    return pc.utf8_slice_codeunits(joined, len(separator))


def _concat(parts: list) -> pa.Array:
    """Element-wise concatenation of string arrays and constant strings."""
    return pc.binary_join_element_wise(*[p if isinstance(p, (pa.Array, pa.ChunkedArray, pa.Scalar)) else pa.scalar(p) for p in parts], "")


def _human(meta: pa.StructArray, n: int) -> pa.Array:
    """human_annotated: str(value).lower() == 'yes'; a value that is not a string is never 'yes'."""
    if "human-annotated" not in _field_names(meta):
        return pa.nulls(n, pa.bool_())
    values = meta.field("human-annotated")
    if values.type == pa.string():
        return pc.equal(pc.utf8_lower(values), "yes")
    if values.type == pa.null():
        return pa.nulls(n, pa.bool_())
    return pc.if_else(values.is_valid(), False, pa.scalar(None, pa.bool_()))


def _child(struct: pa.StructArray, name: str, type_: pa.DataType, n: int, only_type: bool = False) -> pa.Array:
    """A field of `struct` (null where it is missing); with only_type, null unless of `type_`."""
    if name not in _field_names(struct):
        return pa.nulls(n, type_)
    values = struct.field(name)
    if values.type == type_:
        return values
    if only_type or values.type != pa.null():
        return pa.nulls(n, type_)
    return values.cast(type_)


def _float32(struct: pa.StructArray, name: str, n: int) -> pa.Array:
    """A number field as the plugin stores it: float(value), then float32."""
    if name not in _field_names(struct):
        return pa.nulls(n, pa.float32())
    return struct.field(name).cast(pa.float64()).cast(pa.float32(), safe=False)


def _field_names(struct) -> set[str]:
    return {field.name for field in struct.type}


def _is_number_or_null(type_: pa.DataType) -> bool:
    return pa.types.is_int64(type_) or pa.types.is_float64(type_) or pa.types.is_null(type_)


def _is_string_or_null(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_null(type_)


def _numpy(values) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_boolean(values.type):
        return values.fill_null(False).to_numpy(zero_copy_only=False)
    return values.fill_null(-1).to_numpy(zero_copy_only=False)
