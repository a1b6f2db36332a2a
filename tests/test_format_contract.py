"""One contract for every registered format (Datumaro's TestDataFormatBase, for labelbeam).

Each test is parametrized over the registry (`format_names()`), not over a list of its own: a
format registered without an entry in CONTRACT, or able to read (`input_format_names()`)
without samples under samples/<name>/, fails here. What a format must do:

- a format that reads: detect its bundled samples (and no other format claim them), read them
  (every object a row, or a refusal whose code the catalogue defines and the contract entry
  names for that very file), write the rows in its own layout, count back what landed as
  run.json does, and read the files back to equal rows;
- a format that only writes: never be detected or offered by --format, and refuse to be read
  with UNKNOWN_FORMAT (its documented refusal);
- every format: take the rows of every readable format's samples, write them or refuse them
  row by row / object by object with the codes its entry documents, and land exactly what it
  did not refuse (rows and objects counted back from the files).

Whether a format reads is asked of the format, never written here: when a format starts to
read (COCO input), it moves from the write-only checks to the full round trip by itself, and
needs only its samples/<name>/ folder. A reader whose files are not one element a line (a
document joined by image id: `joins_documents`) is read back through the job
(test_job_round_trip, e2e), which runs for every readable format whatever its layout.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.format_contract import (
    ELEMENT_LAYOUTS,
    SAMPLES,
    assert_detects,
    comparable,
    decode_file,
    read_back,
    read_documents,
    read_file,
    sample_files,
    sorted_rows,
    write_files,
)
from transforms import errors
from transforms.errors import RecordError
from transforms.formats.base import ParseContext, format_names, get_format, input_format_names
from transforms.label_jobs import select_label_jobs


@dataclasses.dataclass(frozen=True)
class Contract:
    """What one format is documented to refuse (docs/formats.md, docs/errors.md)."""

    #: sample file (relative to samples/<name>/) -> the codes its parse refuses objects of it
    #: with; every other sample file reads whole. Lines that are not JSON are allowed there too.
    read_refusals: dict = dataclasses.field(default_factory=dict)
    #: codes the writer refuses a row (ctx.reject) or an object (ctx.reject_object) with, on
    #: the samples of every readable format
    write_refusals: frozenset = frozenset()
    #: sample file -> (columns or object fields a round trip does not keep, and why)
    partial_round_trip: dict = dataclasses.field(default_factory=dict)

    def left_out(self) -> tuple[str, ...]:
        """Every column some sample leaves out of its round trip (the job compares them all at once)."""
        return tuple(sorted({name for columns, _ in self.partial_round_trip.values() for name in columns}))


CONTRACT = {
    "sagemaker": Contract(
        read_refusals={"broken.manifest": {errors.NOT_AN_OBJECT, errors.MISSING_SOURCE_REF, errors.MISSING_LABEL_METADATA, errors.INVALID_FIELD_TYPE}},
        write_refusals=frozenset({errors.OUTPUT_UNREPRESENTABLE, errors.OBJECT_UNREPRESENTABLE, errors.MASK_NOT_WRITTEN}),
    ),
    "azure_automl": Contract(
        read_refusals={"malformed.jsonl": {errors.MISSING_IMAGE_URL, errors.INVALID_FIELD_TYPE, errors.GEOMETRY_MISSING}},
        # values the reader could not read ("width": "wide", "isCrowd": "maybe") stay in records/
        # and are not written: AutoML would fail on them (docs/formats.md "azure_automl")
        partial_round_trip={"malformed.jsonl": (("extra", "objects.attributes"), "unreadable values are not written back")},
        write_refusals=frozenset({errors.OUTPUT_UNREPRESENTABLE, errors.OBJECT_UNREPRESENTABLE, errors.MASK_NOT_WRITTEN}),
    ),
    "label_studio": Contract(
        write_refusals=frozenset({errors.OUTPUT_UNREPRESENTABLE, errors.OBJECT_UNREPRESENTABLE, errors.MASK_NOT_WRITTEN}),
    ),
    "coco": Contract(
        # ids are the writer's own (stable, from the image's URI and size); an image's other
        # fields (license, date_captured) are not written
        partial_round_trip={name: (("extra",), "image ids are the writer's") for name in ("instances_train.json", "results_train.json")},
        write_refusals=frozenset({errors.IMAGE_SIZE_REQUIRED, errors.OBJECT_UNREPRESENTABLE, errors.MASK_NOT_WRITTEN}),
    ),
    "yolo": Contract(
        write_refusals=frozenset({errors.YOLO_IMAGE_LABELS_ONLY, errors.YOLO_TASK_MISMATCH, errors.OBJECT_UNREPRESENTABLE, errors.MASK_NOT_WRITTEN}),
    ),
    "jsonl": Contract(),
}

FORMATS = format_names()
READABLE = input_format_names()


def _relative(name: str, path: Path) -> str:
    return path.relative_to(SAMPLES / name).as_posix()


def _reads_in_process(name: str) -> bool:
    """A reader whose written files hold, one a line, the objects its parse reads."""
    fmt = get_format(name)
    return fmt.readable and fmt.file_layout in ELEMENT_LAYOUTS and not getattr(fmt, "joins_documents", False)


def _sample_rows(name: str) -> list[dict]:
    fmt = get_format(name)
    if getattr(fmt, "joins_documents", False):  # its files are read together, joined by key
        rows, dead, *_ = read_documents(fmt, sample_files(name))
        assert rows and not dead, dead
        return rows
    return [row for path in sample_files(name) for row in read_file(fmt, path).rows]


def contract_gaps(registered: list[str], readable: list[str]) -> list[str]:
    """What the registry holds that the contract does not: formats without an entry, entries
    without a format, readable formats without samples."""
    gaps = [f"{name}: no entry in CONTRACT" for name in registered if name not in CONTRACT]
    gaps += [f"{name}: in CONTRACT, not registered" for name in CONTRACT if name not in registered]
    return gaps + [f"{name}: reads, and samples/{name}/ holds no manifest" for name in readable if not sample_files(name)]


def test_every_registered_format_has_a_contract_entry_and_every_reader_samples():
    """A new format is added here with what it documents it refuses; a removed one leaves."""
    assert contract_gaps(format_names(), input_format_names()) == []


def test_a_format_registered_without_entry_or_samples_fails_the_contract():
    """The check above is not vacuous: a format the contract has never heard of, reading and
    without samples, is named twice."""
    gaps = contract_gaps([*FORMATS, "cvat"], [*input_format_names(), "cvat"])
    assert [gap for gap in gaps if gap.startswith("cvat")] == [
        "cvat: no entry in CONTRACT", "cvat: reads, and samples/cvat/ holds no manifest",
    ]


@pytest.mark.parametrize("name", FORMATS)
def test_a_format_that_reads_bundles_samples_and_one_that_writes_refuses_to_be_read(name):
    fmt = get_format(name)
    contract = CONTRACT[name]
    if name in input_format_names():
        assert fmt.readable
        files = {_relative(name, p) for p in sample_files(name)}
        assert files, f"{name} reads, so samples/{name}/ holds at least one manifest it reads"
        assert set(contract.read_refusals) <= files and set(contract.partial_round_trip) <= files
        return
    assert not fmt.readable and not contract.read_refusals
    every_sample = [obj for other in input_format_names() for path in sample_files(other) for obj in decode_file(path)[0]]
    assert every_sample and fmt.detect(every_sample) == 0.0
    with pytest.raises(RecordError) as refused:
        fmt.parse(every_sample[0], ParseContext(uri="x", base_uri=""))
    assert refused.value.code == errors.UNKNOWN_FORMAT


@pytest.mark.parametrize("name", READABLE)
def test_detects_its_own_samples(name):
    for path in sample_files(name):
        objs, _ = decode_file(path)
        assert_detects(get_format(name), objs)


@pytest.mark.parametrize("name", READABLE)
def test_reads_its_samples_or_refuses_what_its_contract_names(name):
    fmt, contract, rows = get_format(name), CONTRACT[name], 0
    if not _reads_in_process(name):  # documents read together, joined by key (no broken samples)
        rows_read, dead, _, parsed, elements = read_documents(fmt, sample_files(name))
        assert rows_read and not dead and parsed <= elements, dead
        return
    for path in sample_files(name):
        read = read_file(fmt, path)
        allowed = contract.read_refusals.get(_relative(name, path))
        rows += len(read.rows)
        if allowed is None:
            assert not read.refused and not read.undecodable, (path.name, dict(read.refused))
            assert read.rows, path.name
            continue
        assert read.refused, f"{path.name} is a broken sample: it refuses objects"
        assert set(read.refused) <= allowed, (path.name, dict(read.refused))
        assert all(errors.CATALOGUE[code].stage == errors.NORMALIZE for code in read.refused)
    assert rows


@pytest.mark.parametrize("name", READABLE)
def test_writes_and_reads_back_equal_rows(name, tmp_path):
    """parse -> write (the format's layout, as the write stage) -> parse: equal rows."""
    fmt, contract = get_format(name), CONTRACT[name]
    if not _reads_in_process(name):  # documents: written whole, read back together and joined
        written = write_files(fmt, _sample_rows(name), tmp_path / "written")
        assert not written.rejected and not written.rejected_objects
        paths = []
        for file_name, data in written.files.items():
            paths.append(tmp_path / "back" / file_name)
            paths[-1].parent.mkdir(parents=True, exist_ok=True)
            paths[-1].write_bytes(data)
        again, dead, *_ = read_documents(fmt, sorted(paths))
        columns = contract.left_out()
        assert not dead and len(again) == len(written.given)
        assert sorted_rows(comparable(again, columns)) == sorted_rows(comparable(written.given, columns))
        return
    partial, sample_of = {}, {}
    for path in sample_files(name):
        columns = contract.partial_round_trip.get(_relative(name, path), ((), ""))[0]
        for row in read_file(fmt, path).rows:
            partial[row["record_id"]], sample_of[row["record_id"]] = columns, _relative(name, path)
    written = write_files(fmt, _sample_rows(name), tmp_path)
    # its own samples write whole, but for what a broken sample holds (an AutoML line without a
    # label is read, as `unlabeled`, and has no AutoML form)
    refused = [(row, code) for row, code, _ in written.rejected] + [(row, code) for row, _, code, _ in written.rejected_objects]
    assert {code for _, code in refused} <= contract.write_refusals
    assert {sample_of[row["record_id"]] for row, _ in refused} <= set(contract.read_refusals), refused
    pairs = read_back(fmt, written, tmp_path)
    assert len(pairs) == len(written.given) - len(written.rejected) > 0
    for again, row in pairs:
        columns = partial[row["record_id"]]
        assert comparable([again], columns) == comparable([row], columns), row["record_id"]


@pytest.mark.parametrize("source", input_format_names())
@pytest.mark.parametrize("name", FORMATS)
def test_takes_every_readable_format(name, source, tmp_path):
    """Every readable format's samples, written as `name`: refused only with the codes its entry
    documents, and what was not refused lands, rows and objects counted back from the files."""
    written = write_files(get_format(name), _sample_rows(source), tmp_path)
    codes = {code for _, code, _ in written.rejected} | {code for _, _, code, _ in written.rejected_objects}
    assert codes <= CONTRACT[name].write_refusals, codes - CONTRACT[name].write_refusals
    assert all(errors.CATALOGUE[code].stage == errors.WRITE for code in codes)
    assert written.landed == len(written.given) - len(written.rejected) > 0
    if written.objects_landed is not None:
        assert written.objects_landed == written.objects_written


# ---- through the job: the read and write stages themselves -----------------------------------


def _job(args: list[str], out: Path) -> dict:
    from pipelines.normalize_manifests import run

    assert run([*args, "--output", str(out), "--runner=FnApiRunner"]) == 0
    return json.loads((out / "run.json").read_text())


def _records(out: Path) -> list[dict]:
    import pyarrow.dataset as ds

    return ds.dataset(out / "records", format="parquet", partitioning="hive").to_table().to_pylist()


@pytest.mark.e2e
@pytest.mark.parametrize("name", input_format_names())
def test_job_round_trip(name, tmp_path):
    """The job reads the format's samples and writes them as the format; a second run reads
    those manifests back (`--format name`): equal records, whatever the format's layout."""
    fmt, contract = get_format(name), CONTRACT[name]
    first = _job(["--input", *map(str, sample_files(name)), "--format", name, "--output_format", name], tmp_path / "first")
    assert first["totals"]["reconciled"]
    written = sorted(p for p in (tmp_path / "first" / "manifests" / name).rglob(f"*{fmt.extension}") if p.is_file())
    assert written
    # the written manifests reference the samples' images and masks: read from there as before
    second = _job(["--input", *map(str, written), "--format", name, "--allowed_roots", str(SAMPLES / name)], tmp_path / "second")
    assert second["totals"]["reconciled"] and second["totals"]["dead_letters"] == 0
    refused = {letter["record_id"] for p in (tmp_path / "first" / "refused" / name).rglob("*.jsonl") for letter in map(json.loads, p.read_text().splitlines()) if letter.get("object_index") is None}
    want = [row for row in _records(tmp_path / "first") if row["record_id"] not in refused]
    if fmt.one_label_job:  # records/ keep every label job of a line; the manifests one
        want = [select_label_jobs(row)[0] for row in want]
    got = _records(tmp_path / "second")
    columns = contract.left_out()
    assert len(got) == len(want)
    assert sorted_rows(comparable(got, columns)) == sorted_rows(comparable(want, columns))
