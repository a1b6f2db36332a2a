"""The columnar fast path changes nothing: same RecordBatches, dead letters and counters.

Every sample, every real third-party file and a generated, randomly mutated corpus go through
RecordNormalizer with and without the fast path; the results must be equal exactly (Arrow
equality of the batches, dictionaries included).
"""

from __future__ import annotations

import copy
import random
import re
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from tests.conftest import need_shared_data, shared_data

from benchmarks.synthetic import lookout_line
from transforms.errors import LINE_TOO_LONG
from transforms.formats.base import format_names
from transforms.schema import RawBatch
from transforms.stages.normalize import RecordNormalizer

ROOT = Path(__file__).resolve().parents[1]
REALDATA = shared_data("realdata")
SAMPLES = sorted(p for p in (ROOT / "samples").rglob("*") if p.suffix in {".manifest", ".jsonl", ".json"})


def _batches(uri: str, fmt: str | None, lines: list[bytes], batch_lines: int = 64) -> list[RawBatch]:
    """RawBatches as the reader cuts them: blank lines counted, offsets and 1-based lines."""
    batches, batch, offset = [], RawBatch(uri, fmt, 0), 0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            batch.blank += 1
        else:
            batch.lines.append(number)
            batch.offsets.append(offset)
            batch.raws.append(raw)
        offset += len(raw) + 1
        if len(batch.raws) >= batch_lines:
            batches.append(batch)
            batch = RawBatch(uri, fmt, 0)
    if batch.raws or batch.blank:
        batches.append(batch)
    return batches


def assert_same(batches: list[RawBatch], relative_to: str | None = None) -> int:
    """Both paths over `batches`; returns how many rows the fast path itself built."""
    fast, slow = RecordNormalizer(relative_to=relative_to), RecordNormalizer(relative_to=relative_to, fast=False)
    for batch in batches:
        got, got_dead, got_counts = fast.normalize(batch)
        want, want_dead, want_counts = slow.normalize(batch)
        assert got.schema == want.schema
        assert got.to_pylist() == want.to_pylist()
        assert got.equals(want)
        assert got_dead == want_dead
        assert got_counts == want_counts
    return fast._fast.fast_lines


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: str(p.relative_to(ROOT / "samples")))
def test_samples_as_their_format_and_as_sagemaker(path):
    own = {"sagemaker": "sagemaker", "azure_automl": "azure_automl", "label_studio": "label_studio"}[path.relative_to(ROOT / "samples").parts[0]]
    lines = _lines(path)
    assert_same(_batches(str(path), own, lines))
    assert_same(_batches(str(path), "sagemaker", lines))  # foreign lines: fallback everywhere
    assert_same(_batches(str(path), None, lines))  # no format: every line a dead letter


def test_lookout_sample_goes_through_the_fast_path():
    path = ROOT / "samples" / "sagemaker" / "lookout-for-vision.manifest"
    assert assert_same(_batches(str(path), "sagemaker", _lines(path))) > 0


def test_real_files():
    need_shared_data("realdata")
    files = [p for p in REALDATA.rglob("*") if p.suffix in {".manifest", ".json", ".jsonl"}]
    assert files
    for path in files:
        for fmt in ("sagemaker", *format_names()):
            assert_same(_batches(str(path), fmt, _lines(path)), relative_to=None)


def _mutations(obj, rng: random.Random):
    """A copy of `obj` with one value somewhere replaced, deleted or retyped."""
    obj = copy.deepcopy(obj)
    containers = []

    def walk(node):
        if isinstance(node, dict) and node:
            containers.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list) and node:
            containers.append(node)
            for v in node:
                walk(v)

    walk(obj)
    node = rng.choice(containers)
    key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
    choice = rng.random()
    replacements = [None, True, 0, -3, 1.5, 2**40, 1e300, "", "  ", "x", "yes", "No", [], {}, [1], {"a": 1},
                    "2024-13-01T00:00:00", "Mon Aug 22 2022 13:52:52 GMT-0700", "1", "0"]
    if choice < 0.25 and isinstance(node, dict):
        del node[key]
    elif choice < 0.35 and isinstance(node, dict):
        node[str(key) + "-metadata"] = rng.choice([{}, {"type": "groundtruth/object-detection"}, node[key]])
    elif choice < 0.45 and isinstance(node, dict):
        node[str(key) + "-ref"] = "masks/m.png"
    else:
        node[key] = rng.choice(replacements)
    return obj


def _corpus(rng: random.Random) -> list[dict]:
    """Lookout lines, every sample line that is an object, and Ground Truth shapes with masks."""
    objs = [lookout_line(i, rng) for i in range(1, 400)]
    for path in SAMPLES:
        if path.parent.name == "sagemaker":
            for raw in _lines(path):
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(obj, dict):
                    objs.append(obj)
    return objs


def test_generated_and_mutated_corpus():
    rng = random.Random(10)
    base = _corpus(rng)
    lines = [orjson.dumps(obj) for obj in base]
    for _ in range(3000):
        lines.append(orjson.dumps(_mutations(rng.choice(base), rng)))
    lines += [b"", b"   ", b"\xef\xbb\xbf" + lines[0], b"[1]", b'{"source-ref": "a.jpg"', b"\xff\xfe", b"null"]
    rng.shuffle(lines)
    for uri in ("s3://bucket/data/train.manifest", "/data/train.manifest"):
        assert assert_same(_batches(uri, "sagemaker", lines, batch_lines=97)) > 1000


def test_reader_failures_and_a_batch_arrow_refuses():
    good = orjson.dumps(lookout_line(1, random.Random(1)))
    huge = orjson.loads(good)
    huge["bounding-box"] = {"image_size": [{"width": 2**40, "height": 10}], "annotations": []}
    huge["bounding-box-metadata"] = {"type": "groundtruth/object-detection", "class-map": {}}
    batch = RawBatch("/m.manifest", "sagemaker", 0, lines=[1, 2, 3, 4], offsets=[0, 10, 20, 30],
                     raws=[good, b"", orjson.dumps(huge), good], failures=[(1, LINE_TOO_LONG, "too long")], blank=2)
    assert_same([batch])
    dup = RawBatch("/m.manifest", "sagemaker", 0, lines=[1, 2], offsets=[0, 0], raws=[good, b"{"])
    assert_same([dup])


def test_empty_and_all_fast_batches_keep_the_schema():
    rng = random.Random(3)
    lines = [orjson.dumps(lookout_line(i, rng)) for i in range(1, 50)]
    assert_same(_batches("/x.manifest", "sagemaker", lines))
    assert_same([RawBatch("/x.manifest", "sagemaker", 0, blank=3)])
    got, _, _ = RecordNormalizer().normalize(_batches("/x.manifest", "sagemaker", lines)[0])
    assert isinstance(got, pa.RecordBatch) and got.num_rows == 49


# -- the whole-batch Arrow reader (transforms/fast/sagemaker_arrow.py) -----------------------

def _same_types_mutation(obj: dict, rng: random.Random) -> bytes:
    """A Lookout line changed in a way that keeps Arrow's column types, so the batch stays on
    the Arrow path and only this line's own checks decide; returns the raw line."""
    obj = copy.deepcopy(obj)
    meta = obj["anomaly-label-metadata"]
    choice = rng.randrange(24)
    if choice == 0:
        del meta["job-name"]
    elif choice == 1:
        meta["job-name"] = None
    elif choice == 2:
        meta["job-name"] = rng.choice(['quote " inside', "back\\slash", "new\nline", "tab\there", "caf\u00e9", "\u2028"])
    elif choice == 3:
        meta["creation-date"] = rng.choice(["not a date", "2024-13-01T00:00:00", "Mon Aug 22 2022 13:52:52 GMT-0700 (PDT)", "2023-01-01"])
    elif choice == 4:
        meta["human-annotated"] = rng.choice(["YES", "no", "Yes", ""])
    elif choice == 5:
        obj["source-ref"] = rng.choice(["", " ", " s3://b/x.jpg", "relative/x.jpg", "./x.jpg", "s3://b/\u00e9.jpg"])
    elif choice == 6:
        del meta["class-name"]
    elif choice == 7:
        obj = {"source-ref": obj["source-ref"]}
    elif choice == 8:
        obj["anomaly-label"] = None
    elif choice == 9:
        del obj["anomaly-label-metadata"]
    elif choice == 10:
        meta["confidence"] = rng.choice([None, 1, 0])
    elif choice == 11:
        meta["anomaly-label"] = "nested key with an attribute's name"
    elif choice == 12 and "anomaly-mask-ref" in obj:  # mask first, label second
        obj = {"source-ref": obj["source-ref"], "anomaly-mask-ref": obj["anomaly-mask-ref"],
               "anomaly-mask-ref-metadata": obj["anomaly-mask-ref-metadata"],
               "anomaly-label": obj["anomaly-label"], "anomaly-label-metadata": meta}
    elif choice == 13 and "anomaly-mask-ref" in obj:
        del obj["anomaly-mask-ref-metadata"]["internal-color-map"]["1"]
    elif choice == 14 and "anomaly-mask-ref" in obj:
        obj["anomaly-mask-ref-metadata"]["internal-color-map"]["1"]["class-name"] = None
    elif choice == 15 and "anomaly-mask-ref" in obj:
        obj["anomaly-mask-ref"] = None
    elif choice == 16:
        return orjson.dumps(obj).replace(b'"anomaly-label":', b'"anomaly-label" :', 1)
    elif choice == 17:
        return orjson.dumps(obj).replace(b'"anomaly-label":', b'"anomaly\\u002dlabel":', 1)
    elif choice == 18:
        return orjson.dumps(obj).replace(b'"anomaly-label":0', b'"anomaly-label":null,"anomaly-label":0', 1)
    elif choice == 19:
        meta["type"] = None
    elif choice == 20:
        meta["job-name"] = rng.choice(["\u0000", "a\u001fb"])
    elif choice == 21 and "anomaly-mask-ref" in obj:  # the label's name inside an earlier object
        mask_meta = dict(obj["anomaly-mask-ref-metadata"], **{"anomaly-label": "x"})
        obj = {"source-ref": obj["source-ref"], "anomaly-mask-ref-metadata": mask_meta,
               "anomaly-mask-ref": obj["anomaly-mask-ref"], "anomaly-label": obj["anomaly-label"],
               "anomaly-label-metadata": meta}
    elif choice == 22 and "anomaly-mask-ref" in obj:  # mask first, its key spelled with an escape
        reordered = {"source-ref": obj["source-ref"], "anomaly-mask-ref": obj["anomaly-mask-ref"],
                     "anomaly-mask-ref-metadata": obj["anomaly-mask-ref-metadata"],
                     "anomaly-label": obj["anomaly-label"], "anomaly-label-metadata": meta}
        return orjson.dumps(reordered).replace(b'"anomaly-label":', b'"anomaly\\u002dlabel":', 1)
    else:
        return json_spaced(obj)
    return orjson.dumps(obj)


def json_spaced(obj) -> bytes:
    """The same object as Python's json module spells it (spaces after ':' and ',')."""
    import json

    return json.dumps(obj).encode()


@pytest.mark.parametrize("seed", range(12))
def test_arrow_batches_with_a_few_changed_lines_equal_the_plugin(seed):
    rng = random.Random(seed)
    batches = []
    for b in range(12):
        lines = [orjson.dumps(lookout_line(i, rng)) for i in range(b * 60, b * 60 + 57)]
        for _ in range(rng.randrange(1, 4)):
            lines.insert(rng.randrange(len(lines)), _same_types_mutation(lookout_line(rng.randrange(10**6), rng), rng))
        batches.extend(_batches(f"s3://bucket/m{b}/x.manifest", "sagemaker", lines, batch_lines=60))
    fast = RecordNormalizer()
    for batch in batches:
        fast.normalize(batch)
    assert fast._fast.block_lines > 8 * 55  # most batches stay on the Arrow path
    assert assert_same(batches) > 0


def test_arrow_path_reads_real_lookout_lines():
    path = need_shared_data("realdata", "lookout-for-vision-getting-started", "manifests", "template.manifest")
    lines = [line for line in _lines(path) if line.strip()] * 3
    for relative_to in (None, "s3://bucket/project"):
        batches = _batches(str(path), "sagemaker", lines, batch_lines=len(lines))
        fast = RecordNormalizer(relative_to=relative_to)
        fast.normalize(batches[0])
        assert fast._fast.block_lines == len(lines)
        assert_same(batches, relative_to=relative_to)


def test_a_batch_with_an_integer_beyond_64_bits_keeps_its_warning():
    rng = random.Random(1)
    lines = [orjson.dumps(lookout_line(i, rng)) for i in range(40)]
    lines[5] = re.sub(rb'"confidence":[0-9.]+', b'"confidence":123456789012345678901234567', lines[5], count=1)
    assert_same(_batches("/x.manifest", "sagemaker", lines, batch_lines=100))
