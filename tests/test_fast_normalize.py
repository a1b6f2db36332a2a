"""Fast paths change nothing: same RecordBatches, record ids, dead letters and counters.

Every format that declares fast paths (ManifestFormat.fast_paths) is run here: each of its fast
paths alone, and all together, against the reference path (the format's parse), on generated
lines of every shape the path claims (`FastPath.shapes`), clean and with type-preserving
mutations (escapes, nulls, absent keys, reordered and repeated keys, numbers as ints or floats,
unicode), and on the samples, the real third-party files and a randomly retyped corpus. The
results must be equal exactly (Arrow equality of the batches, dictionaries included).
"""

from __future__ import annotations

import copy
import json
import random
import re
import zlib
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from benchmarks.label_studio_convert import LABEL_STUDIO_SHAPES
from benchmarks.synthetic import GROUND_TRUTH_SHAPES, lookout_line
from tests.conftest import need_shared_data, shared_data
from transforms.errors import LINE_TOO_LONG
from transforms.formats.base import ParseContext, format_names, get_format
from transforms.normalizer import RecordNormalizer
from transforms.schema import SCHEMA, RawBatch

ROOT = Path(__file__).resolve().parents[1]
REALDATA = shared_data("realdata")


def _joins_documents(sample: Path) -> bool:
    """A sample of a format whose files are documents joined by key before they parse (COCO's:
    tests/test_coco_*.py), not lines or array elements."""
    return getattr(get_format(sample.relative_to(ROOT / "samples").parts[0]), "joins_documents", False)


# The samples of the formats whose records are lines or array elements.
SAMPLES = sorted(p for p in (ROOT / "samples").rglob("*") if p.suffix in {".manifest", ".jsonl", ".json"} and not _joins_documents(p))

#: line generators of every format that declares fast paths: shape name -> (i, rng) -> object
GENERATORS = {"sagemaker": GROUND_TRUTH_SHAPES, "label_studio": LABEL_STUDIO_SHAPES}
WITH_FAST_PATHS = [name for name in format_names() if get_format(name).fast_paths()]
CASES = [(name, path.name, shape) for name in WITH_FAST_PATHS for path in get_format(name).fast_paths() for shape in path.shapes]


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


def assert_same(batches: list[RawBatch], relative_to: str | None = None, fast=True) -> dict[str, int]:
    """The fast paths (`fast`) and the reference path over `batches`; returns the lines each
    fast path built rows for."""
    fast, slow = RecordNormalizer(relative_to=relative_to, fast=fast), RecordNormalizer(relative_to=relative_to, fast=False)
    for batch in batches:
        got, got_dead, got_counts = fast.normalize(batch)
        want, want_dead, want_counts = slow.normalize(batch)
        assert got.schema == want.schema
        assert got.column("record_id").to_pylist() == want.column("record_id").to_pylist()
        assert got.to_pylist() == want.to_pylist()
        assert got.equals(want)
        assert got_dead == want_dead
        assert got_counts == want_counts
    return fast.fast_lines


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
    assert sum(assert_same(_batches(str(path), "sagemaker", _lines(path))).values()) > 0


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
    """Lines of every generated shape, and every sample line that is an object."""
    objs = [GROUND_TRUTH_SHAPES[shape](i, rng) for i in range(1, 120) for shape in sorted(GROUND_TRUTH_SHAPES)]
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
        assert sum(assert_same(_batches(uri, "sagemaker", lines, batch_lines=97)).values()) > 1000


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


# -- the whole-batch Arrow reader (transforms/formats/sagemaker/fast_arrow.py) -----------------------

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
    assert fast.fast_lines.get("arrow", 0) > 8 * 55  # most batches stay on the Arrow path
    assert sum(assert_same(batches).values()) > 0


def test_arrow_path_reads_real_lookout_lines():
    path = need_shared_data("realdata", "lookout-for-vision-getting-started", "manifests", "template.manifest")
    lines = [line for line in _lines(path) if line.strip()] * 3
    for relative_to in (None, "s3://bucket/project"):
        batches = _batches(str(path), "sagemaker", lines, batch_lines=len(lines))
        fast = RecordNormalizer(relative_to=relative_to)
        fast.normalize(batches[0])
        assert fast.fast_lines.get("arrow", 0) == len(lines)
        assert_same(batches, relative_to=relative_to)


def test_a_batch_with_an_integer_beyond_64_bits_keeps_its_warning():
    rng = random.Random(1)
    lines = [orjson.dumps(lookout_line(i, rng)) for i in range(40)]
    lines[5] = re.sub(rb'"confidence":[0-9.]+', b'"confidence":123456789012345678901234567', lines[5], count=1)
    assert_same(_batches("/x.manifest", "sagemaker", lines, batch_lines=100))



@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"18446744073709551616", b"-9223372036854775809",
                                    b"9223372036854775808", b"123456789012345678901234567", b"1e19"])
@pytest.mark.parametrize("where", [rb'"confidence":[0-9.]+', rb'"anomaly-label":[01]', rb'"confidence":0\.0\}'])
def test_numbers_orjson_reads_otherwise_leave_the_arrow_path_equal(number, where):
    """NaN / Infinity literals and integers beyond 64 bits, in a value, a metadata field or a
    colour map: the batch the Arrow reader parsed anyway ends up as the plugin's."""
    rng = random.Random(3)
    lines = [orjson.dumps(lookout_line(i, rng)) for i in range(1, 41)]
    with_mask = [i for i, line in enumerate(lines) if b"internal-color-map" in line]
    target = with_mask[1] if b"0\\." in where else 7
    lines[target] = re.sub(where, lambda m: m.group().split(b":")[0] + b":" + number + (b"}" if m.group().endswith(b"}") else b""), lines[target], count=1)
    assert assert_same(_batches("/x.manifest", "sagemaker", lines, batch_lines=100)).get("arrow", 0) == 0


def test_strings_that_spell_nan_or_long_digits_stay_on_the_arrow_path():
    rng = random.Random(4)
    lines = [orjson.dumps(lookout_line(i, rng)) for i in range(1, 41)]
    lines[3] = lines[3].replace(b'"labeling-job/synthetic"', b'"NaN Infinity 123456789012345678901234567"')
    assert assert_same(_batches("/x.manifest", "sagemaker", lines, batch_lines=100)).get("arrow", 0) == 40


@pytest.mark.parametrize("dates", [
    ["2023-02-11T10:01:00.001", "2024-02-29T23:59:59.999", "0001-01-01T00:00:00.000", "9999-12-31T23:59:59.999"],
    ["2023-02-11T10:01:00.001", "2023-02-30T10:01:00.001"],  # a day that does not exist: INVALID_DATE
    ["2023-02-11T10:01:00.001", "2023-02-11T24:00:00.000", "2023-12-31T23:59:60.000", "0000-01-01T00:00:00.000"],
    ["2023-02-11T10:01:00.001", "Mon Aug 22 2022 13:52:52 GMT-0700 (Pacific Daylight Time)", "2023-02-11T10:01:00",
     "2023-02-11 10:01:00.001", "2023-02-11T10:01:00.001500", "2023-02-11T10:01:00.001Z", "2023-02-11T10:01:00.001+02:00"],
])
def test_creation_dates_cast_by_arrow_equal_the_plugin(dates):
    rng = random.Random(5)
    lines = []
    for i in range(1, 41):
        line = lookout_line(i, rng)
        line["anomaly-label-metadata"]["creation-date"] = dates[i % len(dates)]
        lines.append(orjson.dumps(line))
    assert assert_same(_batches("/x.manifest", "sagemaker", lines, batch_lines=100)).get("arrow", 0) > 0


def test_an_attribute_every_line_has_after_one_only_some_have():
    """extra's separators: the mask attribute first where a line has it, the label in every line."""
    rng = random.Random(6)
    lines = []
    for i in range(1, 41):
        line = lookout_line(i, rng)
        first = {k: v for k, v in line.items() if "mask" in k}
        rest = {k: v for k, v in line.items() if "mask" not in k and k != "source-ref"}
        lines.append(orjson.dumps({"source-ref": line["source-ref"], **first, **rest}))
    lines.sort(key=lambda raw: b"mask" not in raw)  # Arrow's columns in the order they first appear
    assert b"mask" in lines[0] and b"mask" not in lines[-1]
    assert assert_same(_batches("/x.manifest", "sagemaker", lines, batch_lines=100)).get("arrow", 0) == 40

# -- every fast path, every shape it claims ----------------------------------------------------

_ESCAPED = ['quote " inside', "back\\slash", "new\nline", "tab\there", "\u0000", "a\u001fb", "\u2028", "slash/ed"]
_ODD = ["YES", "Yes", "no", "", " ", "not a date", "2024-13-01T00:00:00", "Mon Aug 22 2022 13:52:52 GMT-0700 (PDT)", "0", "1"]
_UNICODE = ["caf\u00e9", "\u732b", "\U0001f600 emoji", "\u00c5ngstr\u00f6m"]


def _leaves(node, found: list, top: bool = True) -> list:
    """(container, key) of every scalar under `node` (top-level keys left out: they decide the layout)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if isinstance(value, (dict, list)):
            _leaves(value, found, False)
        elif not top:
            found.append((node, key))
    return found


def _containers(node) -> list:
    """Every dict and list under `node`."""
    found = []
    if isinstance(node, (dict, list)):
        found.append(node)
        for value in node.values() if isinstance(node, dict) else node:
            found += _containers(value)
    return found


def _shuffled(node, rng: random.Random):
    if isinstance(node, dict):
        items = list(node.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(node, list):
        return [_shuffled(v, rng) for v in node]
    return node


def type_preserving_mutation(obj: dict, rng: random.Random, new_keys: bool = True, plain: bool = False) -> bytes:
    """`obj` changed without changing any value's JSON type (null aside): a fast path must
    take the line or decline it, never read it differently from the reference. A key written
    twice or a new key name (`new_keys`) makes a columnar reader refuse the whole batch; so may
    a null or an escape (not with `plain`)."""
    obj = copy.deepcopy(obj)
    leaves = _leaves(obj, [])
    strings = [(node, key) for node, key in leaves if isinstance(node[key], str)]
    numbers = [(node, key) for node, key in leaves if type(node[key]) in (int, float)]
    choice = rng.randrange(12)
    if choice in (6, 9) and not new_keys or choice == 2 and plain:
        choice = 0
    if choice == 0 and strings:  # escapes, another case, odd spellings in a string value
        node, key = rng.choice(strings)
        node[key] = rng.choice(([] if plain else _ESCAPED) + _ODD + [node[key].upper(), node[key].title()])
    elif choice == 1 and strings:  # unicode, written as is or as \u escapes
        node, key = rng.choice(strings)
        node[key] = rng.choice(_UNICODE)
        if rng.random() < 0.5 and not plain:
            return json.dumps(obj).encode()
    elif choice == 2 and leaves:  # a null
        node, key = rng.choice(leaves)
        node[key] = None
    elif choice == 3 and leaves:  # an absent key
        node, key = rng.choice(leaves)
        if isinstance(node, dict):
            del node[key]
    elif choice == 4:  # the line's keys in another order
        items = list(obj.items())
        rng.shuffle(items)
        obj = dict(items)
    elif choice == 5:  # every object's keys in another order
        obj = _shuffled(obj, rng)
    elif choice == 6:  # a key written twice: the last value counts, the first position stays
        key = rng.choice(list(obj))
        return b'{"' + key.encode() + b'":' + rng.choice([b"null", b"0", b'"x"', orjson.dumps(obj[key])]) + b"," + orjson.dumps(obj)[1:]
    elif choice == 7 and numbers:  # numbers as integers or floats
        for node, key in rng.sample(numbers, max(1, len(numbers) // 2)):
            value = node[key]
            node[key] = float(value) if type(value) is int else int(value) if value == int(value) else value
    elif choice == 8:  # Python's spelling: spaces after ':' and ','
        return json.dumps(obj, ensure_ascii=False).encode()
    elif choice == 9 and strings:  # a string in a nested key's name
        node, key = rng.choice(strings)
        if isinstance(node, dict):
            node[rng.choice(["source-ref", "x\"y", "caf\u00e9"])] = node.pop(key)
    elif choice == 11:  # a list one item shorter (boxes and their confidences no longer pair up)
        lists = [node for node in _containers(obj) if isinstance(node, list) and node]
        if lists:
            rng.choice(lists).pop()
    else:  # whitespace around the line
        return b"  " + orjson.dumps(obj) + b"\t"
    return orjson.dumps(obj)


def _shape_groups(fmt: str, shape: str, rng: random.Random) -> list[list[bytes]]:
    """Eight batches of one shape, in four kinds twice: clean; with a few type-preserving
    mutations without a null or an escape; with many, nulls and escapes too (no new key: a
    columnar reader still takes these); with many, new keys and a retyped line."""
    make = GENERATORS[fmt][shape]
    groups = []
    for b in range(8):
        kind = b % 4
        lines = [orjson.dumps(make(b * 1000 + i, rng)) for i in range(56)]
        if kind:
            for _ in range(rng.randrange(1, 4) if kind == 1 else rng.randrange(8, 20)):
                mutated = type_preserving_mutation(make(rng.randrange(10**6), rng), rng, new_keys=kind == 3, plain=kind == 1)
                lines.insert(rng.randrange(len(lines)), mutated)
        if kind == 3:
            lines.insert(rng.randrange(len(lines)), orjson.dumps(_mutations(make(rng.randrange(10**6), rng), rng)))
        groups.append(lines)
    return groups


def _group_batches(uri: str, fmt: str, groups: list[list[bytes]]) -> list[RawBatch]:
    """One RawBatch per group, offsets and line numbers running on across groups."""
    batches = _batches(uri, fmt, [line for group in groups for line in group], batch_lines=10**9)
    whole, out, start = batches[0], [], 0
    for group in groups:
        end = start + len(group)
        out.append(RawBatch(uri, fmt, 0, lines=whole.lines[start:end], offsets=whole.offsets[start:end], raws=whole.raws[start:end]))
        start = end
    return out


def test_every_fast_path_claims_shapes_the_test_generates():
    assert WITH_FAST_PATHS, "no format declares a fast path"
    for name in WITH_FAST_PATHS:
        paths = get_format(name).fast_paths()
        assert len({p.name for p in paths}) == len(paths)
        for path in paths:
            assert path.name and path.shapes
            assert set(path.shapes) <= set(GENERATORS[name]), f"{name}/{path.name}: no generator for a claimed shape"


@pytest.mark.parametrize("fmt,path,shape", CASES, ids=["/".join(case) for case in CASES])
def test_each_fast_path_equals_the_reference_on_each_shape_it_claims(fmt, path, shape):
    rng = random.Random(zlib.crc32(f"{fmt}/{path}/{shape}".encode()))
    groups = _shape_groups(fmt, shape, rng)
    for uri, relative_to in (("s3://bucket/data/train.manifest", None), ("/data/x.manifest", "s3://other/root")):
        batches = _group_batches(uri, fmt, groups)
        clean = [batches[0], batches[4]]
        taken = assert_same(clean, relative_to=relative_to, fast=[path])
        assert taken == {path: 112}, f"{path} should take every clean {shape} line"
        taken = assert_same(batches, relative_to=relative_to, fast=[path])
        assert taken[path] > 112 + 50, "a path should also take a batch with a few plain mutations"
        assert_same(batches, relative_to=relative_to)  # every path of the format, in its order


def test_all_shapes_mixed_in_one_batch():
    rng = random.Random(24)
    lines = []
    for i in range(600):
        obj = GROUND_TRUTH_SHAPES[rng.choice(sorted(GROUND_TRUTH_SHAPES))](i, rng)
        lines.append(type_preserving_mutation(obj, rng) if rng.random() < 0.2 else orjson.dumps(obj))
    taken = assert_same(_batches("s3://bucket/m.manifest", "sagemaker", lines, batch_lines=100))
    assert taken.get("lines", 0) > 300


@pytest.mark.parametrize("fmt", WITH_FAST_PATHS)
def test_fast_paths_keep_their_contract_on_hostile_lines(fmt):
    """Every line taken or declined once, rows of SCHEMA in input order, never an exception."""
    rng = random.Random(7)
    shapes = GENERATORS[fmt]
    objs = [shapes[s](i, rng) for i in range(40) for s in sorted(shapes)]
    lines = [orjson.dumps(_mutations(rng.choice(objs), rng)) if rng.random() < 0.5 else type_preserving_mutation(rng.choice(objs), rng)
             for _ in range(800)]
    lines += [b"[1]", b"null", b"\xff\xfe", b'{"source-ref": "a.jpg"', b"\xef\xbb\xbf" + lines[0]]
    for path in get_format(fmt).fast_paths():
        for batch in _batches("/x.manifest", fmt, lines, batch_lines=80):
            part = path.read(batch, ParseContext(batch.uri, "/"))
            if part is None:
                continue
            assert sorted(part.taken + part.declined) == list(range(len(batch.raws)))
            assert part.taken == sorted(part.taken) and part.batch.num_rows == len(part.taken)
            assert part.batch.schema == SCHEMA
            assert part.batch.column("source").field("offset").to_pylist() == [batch.offsets[i] for i in part.taken]


def test_detection_lines_the_reference_refuses_are_declined_in_a_batch_of_good_ones():
    """A box whose class the class-map lacks, a line without a class-map, one without its
    image size, one whose box has no width: dead letters, however good the rest of the batch."""
    from benchmarks.synthetic import detection_line

    rng = random.Random(3)
    objs = [detection_line(i, rng) for i in range(40)]
    del objs[5]["bounding-box-metadata"]["class-map"][str(objs[5]["bounding-box"]["annotations"][0]["class_id"])]
    del objs[7]["bounding-box-metadata"]["class-map"]
    del objs[9]["bounding-box"]["image_size"]
    del objs[11]["bounding-box"]["annotations"][1]["width"]
    objs[13]["bounding-box"]["image_size"][0]["width"] = 0
    batches = _batches("/x.manifest", "sagemaker", [orjson.dumps(o) for o in objs], batch_lines=100)
    taken = assert_same(batches, fast=["arrow_detection"])
    assert taken == {"arrow_detection": 35}
    _, dead, _ = RecordNormalizer().normalize(batches[0])
    assert len(dead) == 5
