"""The contract every format plugin passes: detect, parse, write, read-back round trip.

A format's test module calls these helpers on its own examples (tests/test_format_*.py); the
registry-wide contract (tests/test_format_contract.py) runs them on every registered format's
bundled samples.
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import orjson

from transforms import errors, schema
from transforms.errors import RecordError
from transforms.formats.base import ManifestFormat, ParseContext, WriteContext
from transforms.json_array import ArrayPart, iter_json_array
from transforms.label_jobs import select_label_jobs
from transforms.output_files import class_names, count_elements, count_objects
from transforms.partitions import partition_batch
from transforms.schema import RawBatch

# Columns that say where a row came from, not what it is: they differ after a rewrite.
PROVENANCE_COLUMNS = ("record_id", "source", "split")


def canonical(rows: list[dict]) -> list[dict]:
    """Rows as they come out of a RecordBatch (types applied), without provenance."""
    batch = schema.rows_to_batch(rows)
    return [
        {k: v for k, v in row.items() if k not in PROVENANCE_COLUMNS}
        for row in batch.to_pylist()
    ]


def parse_all(fmt: ManifestFormat, objs: list, ctx: ParseContext) -> list[dict]:
    rows = []
    for obj in objs:
        rows.extend(fmt.parse(obj, ctx).rows)
    return rows


def assert_round_trip(fmt: ManifestFormat, objs: list, ctx: ParseContext, write_options=None):
    """parse -> canonical batch -> write -> decode -> parse gives equal canonical rows."""
    first = canonical(parse_all(fmt, objs, ctx))
    wctx = WriteContext(options=fmt.options(write_options) if write_options is not None else None)
    encoded = list(fmt.write(schema.rows_to_batch(parse_all(fmt, objs, ctx)).to_pylist(), wctx))
    assert not wctx.rejected, wctx.rejected
    again = canonical(parse_all(fmt, [orjson.loads(e) for e in encoded], ctx))
    assert again == first
    return first, encoded


def assert_detects(fmt: ManifestFormat, objs: list) -> None:
    """The format claims its own sample, and more of it than any other registered format."""
    from transforms.formats.base import detect_format

    assert fmt.detect(objs) > 0.5
    assert detect_format(objs) == fmt.name


# ---- the registry-wide contract (tests/test_format_contract.py) ------------------------------
#
# Datumaro's TestDataFormatBase, for labelbeam: every registered format runs the same steps on
# its bundled samples (samples/<name>/): detect them, read them, write the rows in the format's
# own layout the way the write stage does (its output view, one label job, partition folders,
# parts assembled at finalize for document and folder layouts), count what landed the way
# run.json does, and read the written files back.

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
# what a sample manifest may be named (images, masks and the scripts that make them are not)
MANIFEST_SUFFIXES = (".json", ".jsonl", ".manifest")
# layouts whose written elements are the very objects `parse` reads, one per line
ELEMENT_LAYOUTS = ("jsonl", "json_array")


def sample_files(name: str) -> list[Path]:
    """The manifests bundled for format `name` under samples/<name>/ (sub-folders too)."""
    folder = SAMPLES / name
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES) if folder.is_dir() else []


def decode_file(path: Path) -> tuple[list, int]:
    """A manifest -> (its decoded objects, lines that are not JSON): a JSON array gives its
    elements, one JSON object itself, anything else one object per non-blank line."""
    data = path.read_bytes()
    try:
        whole = orjson.loads(data)
    except orjson.JSONDecodeError:
        whole = None
    if isinstance(whole, list):
        return whole, 0
    if isinstance(whole, dict):
        return [whole], 0
    objs, bad = [], 0
    for line in data.splitlines():
        if line.strip():
            try:
                objs.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                bad += 1
    return objs, bad


@dataclass
class Read:
    """What the reference parse made of a sample file: rows, and the coded refusals."""

    rows: list[dict] = field(default_factory=list)
    refused: Counter = field(default_factory=Counter)  # error code -> objects refused
    undecodable: int = 0


def read_file(fmt: ManifestFormat, path: Path) -> Read:
    """A sample file through `fmt.parse`, relative references resolved against its folder."""
    objs, bad = decode_file(path)
    ctx = ParseContext(uri=str(path), base_uri=str(path.parent))
    read = Read(undecodable=bad)
    for index, obj in enumerate(objs):
        try:
            rows = fmt.parse(obj, ctx).rows
        except RecordError as exc:
            read.refused[exc.code] += 1
            continue
        for position, row in enumerate(rows):  # ids as the normalizer gives them (YOLO names files by them)
            row["record_id"] = schema.record_id(str(path), index, position)
        read.rows.extend(rows)
    return read


def read_documents(fmt: ManifestFormat, paths: list[Path], part_bytes: int = 64, base_uri: str | None = None) -> tuple[list[dict], list[dict], int, int, int]:
    """What the read and join stages do for a format that joins documents (COCO), in one
    process: plan each file in parts, read each part into a RawBatch, key its elements, resolve
    the side entries, group by key, join and parse. -> (rows, dead letters, elements counted
    `ok`, joined objects parsed, elements read)."""
    keyed: dict = {}
    side: dict = {}
    dead: list[dict] = []
    ok = elements = 0
    for path in paths:
        data = path.read_bytes()
        for member, start, end, before, count in fmt.plan_document(lambda data=data: io.BytesIO(data), part_bytes):
            batch = RawBatch(str(path), fmt.name, 0, member=member)
            for offset, raw in iter_json_array(ArrayPart(io.BytesIO(data), start, end)):
                batch.lines.append(before + len(batch.raws) + 1)
                batch.offsets.append(start - 1 + offset)
                batch.raws.append(raw)
            assert len(batch.raws) == count
            elements += count
            pairs, entries, letters, counts = fmt.key_elements(batch)
            dead += letters
            ok += sum(entry["ok"] for entry in counts.values())
            for key, element in pairs:
                keyed.setdefault(key, []).append(element)
            for key, element in entries:
                side.setdefault(key, []).append(element)
    table = {}
    for key, entries in side.items():
        value, letters, counts = fmt.resolve_side(key, entries)
        table[key] = value
        dead += letters
        ok += sum(entry["ok"] for entry in counts.values())
    rows: list[dict] = []
    parsed = 0
    base = base_uri if base_uri is not None else str(paths[0].parent) if paths else ""  # what relative references resolve against
    for key, entries in keyed.items():
        joined, letters, counts = fmt.join(key, entries, table)
        dead += letters
        ok += sum(entry["ok"] for entry in counts.values())
        for provenance, raw in joined:
            found = fmt.parse(orjson.loads(raw), ParseContext(uri=provenance.uri, base_uri=base)).rows
            for position, row in enumerate(found):
                row["record_id"] = schema.record_id(provenance.uri, provenance.line, position)
            rows += found
            parsed += 1
    return rows, dead, ok, parsed, elements


@dataclass
class Written:
    """The files a format wrote for some rows (name -> bytes, as published under manifests/<name>/),
    what it refused, and what landed counted back from the files as run.json counts it."""

    files: dict[str, bytes]
    given: list[dict]  # the rows as the writer took them (output view, one label job)
    rejected: list[tuple[dict, str, str]]
    rejected_objects: list[tuple[dict, int, str, str]]
    objects_written: int
    landed: int  # records counted back from the files
    objects_landed: int | None  # objects counted back (None: the format does not count them)
    #: element files (ELEMENT_LAYOUTS) -> the rows a reader should find in them, in order:
    #: the rows the writer took, refused rows left out and refused objects taken out
    element_rows: dict[str, list[dict]] = field(default_factory=dict)


def write_files(fmt: ManifestFormat, rows: list[dict], folder: Path, options=None) -> Written:
    """Rows -> the format's files in `folder`, as the write stage writes them: its output view,
    the one label job a writer takes, its partition folders, one file per partition (elements,
    or a part the format assembles at finalize) and its side files; then counted back."""
    options = fmt.options(options)
    batch = fmt.output_view(schema.rows_to_batch(rows), options)
    classes = sorted(class_names(batch)) if fmt.needs_class_names(options) else None
    ctx = WriteContext(options=options, classes=classes)
    given, files, parts, element_rows = [], {}, [], {}
    for partition, sub in partition_batch(batch, fmt.manifest_partitions(None)):
        taken = [select_label_jobs(row)[0] if fmt.one_label_job else row for row in sub.to_pylist()]
        given.extend(taken)
        name = f"{partition}/part-00000-of-00001{fmt.extension}".lstrip("/")
        if fmt.file_layout in ELEMENT_LAYOUTS:
            before = len(ctx.rejected), len(ctx.rejected_objects)
            elements = list(fmt.write(taken, ctx))
            element_rows[name] = without_refused(taken, ctx.rejected[before[0]:], ctx.rejected_objects[before[1]:])
            if fmt.file_layout == "json_array":  # '[' + one element per line + ']', as the write stage
                files[name] = b"[\n" + b",\n".join(elements) + b"\n]\n"
            else:
                files[name] = b"".join(e + b"\n" for e in elements)
        else:
            handle, summary = io.BytesIO(), {}
            document = fmt.open_document(handle, options, classes, summary)
            document.write(taken, ctx)
            ctx.objects_written += document.annotations_written
            summary = document.close() or summary
            # partitions whose documents share a name share it (ground truth with no origin)
            name = fmt.document_name(partition)
            first = next((p for p, _ in parts if fmt.document_name(p) == name), None)
            opener = (functools.partial(io.BytesIO, handle.getvalue()), summary)
            if first is None:
                parts.append((partition, [opener]))
            else:
                dict(parts)[first].append(opener)
    if parts:

        @contextlib.contextmanager
        def open_output(partition, name=None):
            out = io.BytesIO()
            yield out
            files[name or fmt.document_name(partition)] = out.getvalue()

        fmt.assemble_documents(parts, options, open_output)
    for name, content in fmt.side_files([ctx.summary], classes).items():
        files[name] = content
    fs = fsspec.filesystem("file")
    landed, objects = 0, None
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        if fmt.file_layout == "folder":
            rows_in, objects_in = fmt.file_counts(name, content.count(b"\n"))
        elif not name.endswith(fmt.extension):
            continue  # a side file (labeling_config.xml): no records
        else:
            rows_in = count_elements(fs, str(path), fmt.extension, fmt.file_layout, fmt.name)
            objects_in = count_objects(fs, str(path), fmt.file_layout, fmt.name)
        landed += rows_in
        if objects_in is not None:
            objects = (objects or 0) + objects_in
    return Written(files, given, ctx.rejected, ctx.rejected_objects, ctx.objects_written, landed, objects, element_rows)


def read_back(fmt: ManifestFormat, written: Written, folder: Path) -> list[tuple[dict, dict]]:
    """Each row `fmt.parse` reads from the element files it wrote (ELEMENT_LAYOUTS), paired
    with the row it was written from: (read back, written)."""
    pairs = []
    for name, expected in sorted(written.element_rows.items()):
        read = read_file(fmt, folder / name)
        assert not read.refused and not read.undecodable, (name, dict(read.refused))
        assert len(read.rows) == len(expected), name
        pairs.extend(zip(read.rows, expected))
    return pairs


def without_refused(rows: list[dict], rejected: list, rejected_objects: list) -> list[dict]:
    """`rows` as a reader of the files should find them: the rows refused (ctx.rejected) left
    out, the objects refused (ctx.rejected_objects) taken out of their rows."""
    refused_rows = {id(row) for row, _, _ in rejected}
    refused_objects: dict[int, set[int]] = {}
    for row, index, _, _ in rejected_objects:
        refused_objects.setdefault(id(row), set()).add(index)
    kept = []
    for row in rows:
        if id(row) in refused_rows:
            continue
        drop = refused_objects.get(id(row))
        if drop:
            row = {**row, "objects": [o for i, o in enumerate(row.get("objects") or []) if i not in drop]}
        kept.append(row)
    return kept


def catalogued(code: str) -> bool:
    """A code the error catalogue defines (transforms/errors.py, docs/errors.md)."""
    return code in errors.CATALOGUE


# A rewritten record describes itself again: the warnings of how its source was spelled (a
# number written as a string) are gone, so the contract compares rows without them.
SOURCE_ONLY_COLUMNS = ("issues",)


def comparable(rows: list[dict], left_out: tuple[str, ...] = ()) -> list[dict]:
    """Rows as canonical() gives them, without the source's own warnings, nor the columns
    `left_out` names ("extra", or "objects.attributes": a field of each object)."""
    out = []
    for row in canonical(rows):
        row = {k: v for k, v in row.items() if k not in SOURCE_ONLY_COLUMNS and k not in left_out}
        for name in left_out:
            column, _, key = name.partition(".")
            if key and isinstance(row.get(column), list):
                row[column] = [{k: v for k, v in item.items() if k != key} for item in row[column]]
            elif key and isinstance(row.get(column), dict):
                row[column] = {k: v for k, v in row[column].items() if k != key}
        out.append(row)
    return out


def sorted_rows(rows: list[dict]) -> list[dict]:
    """Rows in one order whatever order the files gave them in (a format partitions its files
    by task, a reader meets them folder by folder)."""
    return sorted(rows, key=lambda row: orjson.dumps(row, default=str, option=orjson.OPT_SORT_KEYS))
