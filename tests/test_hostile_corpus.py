"""A hostile corpus, kept: generated malformed files and a seeded, bounded fuzzer.

Every line of every file ends as a record, a dead letter with a stable code (never
INTERNAL_ERROR), or a counted blank line; and the fast paths give exactly what the format
plugins give. The reader and the normalizer are driven directly (no Beam), so this stays fast.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
from pathlib import Path

import orjson
import pytest

from benchmarks.synthetic import lookout_line
from tests.test_fast_normalize import ROOT, SAMPLES, _batches, _lines, _mutations, _same_types_mutation, assert_same
from transforms import errors, storage
from transforms.normalizer import RecordNormalizer
from transforms.read_layout import JSONL_CR
from transforms.schema import RawBatch
from transforms.shards import Shard
from transforms.stages.accounting import LEDGER
from transforms.stages.read import _PlanShardsFn, _ReadShardFn

MAX_LINE = 4096
GT_META = {"class-name": "cat", "type": "groundtruth/image-classification", "job-name": "j", "human-annotated": "yes", "confidence": 1}


def _gt(i: int, **fields) -> dict:
    return {"source-ref": f"images/{i}.jpg", "label": 1, "label-metadata": dict(GT_META), **fields}


def _line(obj) -> bytes:
    return json.dumps(obj).encode()


def _detection(**meta) -> dict:
    return {
        "source-ref": "images/d.jpg",
        "bb": {"image_size": [{"width": 100, "height": 50, "depth": 3}], "annotations": [{"class_id": 0, "left": 1, "top": 2, "width": 3, "height": 4}]},
        "bb-metadata": {"objects": [{"confidence": 1}], "class-map": {"0": "cat"}, "type": "groundtruth/object-detection", "job-name": "j", **meta},
    }


def _corpus() -> dict[str, tuple[bytes, int]]:
    """name -> (file bytes, input lines it holds)."""
    good = [_line(_gt(i)) for i in range(6)]
    wrong_types = [
        _line(_detection(type=[])),  # "type": [] in Ground Truth metadata
        _line(_detection(objects=True)),
        _line(_detection(objects={"0": 1})),
        _line({**_gt(1), "label-metadata": {**GT_META, "type": {"a": 1}}}),
        b'{"source-ref": "images/deep.jpg", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}",  # nested 1,000 deep
        b'{"source-ref": "images/deep.jpg", "x": ' + b'{"a":' * 300 + b"1" + b"}" * 300 + b"}",
        _line({"source-ref": "images/nul.jpg", "m-ref": "masks/a\x00.png", "m-ref-metadata": {"type": "groundtruth/semantic-segmentation"}}),
        _line({"source-ref": ["images/x.jpg"]}),
        _line({"source-ref": "images/x.jpg", "label": 1, "label-metadata": []}),
        _line({"source-ref": "images/x.jpg", "label": 1, "label-metadata": {**GT_META, "class-name": 7}}),
    ]
    cr_then_lf = b"\r".join(good[:4] * 500) + b"\r" + b"\n".join(good[:3]) + b"\n"
    corpus = {
        "cr_then_lf.manifest": (cr_then_lf, 2003),
        "crlf.manifest": (b"\r\n".join(good) + b"\r\n", 6),
        "cr_crlf_lf.manifest": (good[0] + b"\r" + good[1] + b"\r\n" + good[2] + b"\n\n" + good[3] + b"\r\r", 6),
        "no_final_newline.manifest": (b"\n".join(good), 6),
        "bom.manifest": (b"\xef\xbb\xbf" + b"\n".join(good) + b"\n", 6),
        "blank_only.manifest": (b"\n  \n\t\n", 3),
        "nul_bytes.manifest": (good[0] + b"\n\x00\x00\x00\n" + good[1] + b"\n", 3),
        "invalid_utf8.manifest": (good[0] + b'\n{"source-ref": "\xff\xfe.jpg"}\n', 2),
        "truncated_record.manifest": (b"\n".join(good) + b'\n{"source-ref": "images/cut.jp', 7),
        "too_long.manifest": (good[0] + b"\n" + b'{"source-ref": "' + b"a" * (2 * MAX_LINE) + b'"}\n' + good[1] + b"\n", 3),
        "not_objects.manifest": (good[0] + b"\n[1]\n\"text\"\n42\nnull\ntrue\n", 6),
        "wrong_types.manifest": (b"\n".join(wrong_types) + b"\n", len(wrong_types)),
        "array.json": (b"[" + b",".join(good) + b"]", 6),
        "array_truncated.json": (b"[" + b",".join(good) + b',{"source-ref": "x', 7),
        "array_of_garbage.json": (b"[1, \"a\", null, [], " + good[0] + b"]", 5),
        "gzip_truncated.manifest.gz": (gzip.compress(b"\n".join(good * 50) + b"\n")[:-40], None),
    }
    return corpus


def _read(path: Path) -> tuple[list[RawBatch], int]:
    """The reader's batches of one file and the lines its ledger counted."""
    store = storage.Storage()
    planned = list(_PlanShardsFn("sagemaker", 64 << 20, store, MAX_LINE).process((str(path), path.stat().st_size)))
    shards = [item for item in planned if isinstance(item, Shard)]
    assert len(shards) == 1, planned
    batches, lines = [], 0
    for item in _ReadShardFn(store, 64, MAX_LINE).process(shards[0]):
        if isinstance(item, RawBatch):
            batches.append(item)
        else:
            assert item.tag == LEDGER
            lines += item.value[1]["lines"]
    return batches, lines


def _account(batches: list[RawBatch]) -> dict:
    """Normalizes on both paths (equal), returns totals; no INTERNAL_ERROR anywhere."""
    assert_same(batches)
    totals = {"ok": 0, "dead": 0, "blank": 0, "codes": set()}
    normalizer = RecordNormalizer(fast=False)
    for batch in batches:
        _, dead, counts = normalizer.normalize(batch)
        assert counts["ok"] + counts["dead_letters"] == len(batch.raws)
        totals["ok"] += counts["ok"]
        totals["dead"] += counts["dead_letters"]
        totals["blank"] += batch.blank
        totals["codes"] |= {letter["code"] for letter in dead}
    assert errors.INTERNAL_ERROR not in totals["codes"], totals["codes"]
    assert totals["codes"] <= set(errors.CATALOGUE)
    return totals


@pytest.mark.parametrize("name", sorted(_corpus()))
def test_every_line_of_a_malformed_file_is_a_record_a_coded_dead_letter_or_a_blank(tmp_path, name):
    data, expected_lines = _corpus()[name]
    path = tmp_path / name
    path.write_bytes(data)
    batches, lines = _read(path)
    totals = _account(batches)
    assert totals["ok"] + totals["dead"] + totals["blank"] == lines
    if expected_lines is not None:
        assert lines == expected_lines


def test_cr_then_lf_keeps_every_record(tmp_path):
    path = tmp_path / "mixed.manifest"
    data, _ = _corpus()["cr_then_lf.manifest"]
    path.write_bytes(data)
    planned = [s for s in _PlanShardsFn("sagemaker", 64 << 20, storage.Storage(), MAX_LINE).process((str(path), len(data))) if isinstance(s, Shard)]
    assert planned[0].layout == JSONL_CR
    batches, lines = _read(path)
    totals = _account(batches)
    assert lines == 2003 and totals == {"ok": 2003, "dead": 0, "blank": 0, "codes": set()}
    offsets = [o for b in batches for o in b.offsets]
    assert all(data[o : o + 1] == b"{" for o in offsets)  # every offset is where its record starts


def test_a_cr_cut_by_a_chunk_is_still_one_crlf(tmp_path, monkeypatch):
    from transforms import shard_reader

    monkeypatch.setattr(shard_reader, "_CHUNK", 7)
    good = [_line(_gt(i)) for i in range(5)]
    data = b"\r".join(good[:2]) + b"\r" + b"\r\n".join(good[2:]) + b"\r\n"
    path = tmp_path / "cut.manifest"
    path.write_bytes(data)
    batches, lines = _read(path)
    assert lines == 5 and _account(batches)["ok"] == 5


def test_the_wrong_types_of_the_report_are_invalid_field_type(tmp_path):
    path = tmp_path / "types.manifest"
    path.write_bytes(_corpus()["wrong_types.manifest"][0])
    batches, _ = _read(path)
    for fast in (True, False):
        dead = [d for b in batches for d in RecordNormalizer(fast=fast).normalize(b)[1]]
        by_line = {d["line"]: d["code"] for d in dead}
        for line in (1, 2, 3, 4, 5, 6, 8, 9, 10):
            assert by_line.get(line) == errors.INVALID_FIELD_TYPE, (line, by_line)


# -- the fuzzer --------------------------------------------------------------------------------
HOSTILE_VALUES = [None, True, False, 0, -1, 2**63, -(2**63) - 1, 1e308, -0.0, "", "x\x00y", "s3://u:pw@b/k.png",
                  "../../etc/passwd", [], {}, [[]], [{}], {"a": []}, "[]", "\u2028"]


def _retyped(obj, rng: random.Random):
    """A copy of `obj` with one to three values anywhere replaced by a value of another type."""
    obj = copy.deepcopy(obj)
    slots = []

    def walk(node):
        if isinstance(node, dict):
            for key in node:
                slots.append((node, key))
                walk(node[key])
        elif isinstance(node, list):
            for index in range(len(node)):
                slots.append((node, index))
                walk(node[index])

    walk(obj)
    for _ in range(rng.choice((1, 1, 2, 3))):
        if slots:
            node, key = rng.choice(slots)
            node[key] = copy.deepcopy(rng.choice(HOSTILE_VALUES))
    return obj


def _objects_of(path: Path) -> list[dict]:
    found = []
    for raw in _lines(path):
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            found.append(obj)
    return found


FUZZ_SOURCES = [p for p in SAMPLES if _objects_of(p)]


def _format_of(path) -> str:
    """A sample's format: the top folder under samples/ (samples/sagemaker/chained/... is sagemaker)."""
    return path.relative_to(ROOT / "samples").parts[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("path", FUZZ_SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fuzzed_lines_are_coded_and_the_fast_path_equals_the_plugin(path, seed):
    rng = random.Random(seed)
    objs = _objects_of(path)
    lines = [json.dumps(_retyped(rng.choice(objs), rng)).encode() for _ in range(150)]
    lines += [json.dumps(_mutations(rng.choice(objs), rng)).encode() for _ in range(50)]
    lines += [b"", b"  "]
    rng.shuffle(lines)
    for fmt in (_format_of(path), None):
        batches = _batches(str(path), fmt, lines, batch_lines=41)
        totals = _account(batches)
        assert totals["ok"] + totals["dead"] + totals["blank"] == len(lines)


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzzed_lookout_batches_stay_equal_on_the_arrow_path(seed):
    rng = random.Random(seed)
    base = [lookout_line(i, rng) for i in range(1, 200)]
    lines = [_same_types_mutation(rng.choice(base), rng) if rng.random() < 0.3 else orjson.dumps(rng.choice(base)) for _ in range(300)]
    lines += [json.dumps(_retyped(rng.choice(base), rng)).encode() for _ in range(30)]
    totals = _account(_batches("s3://bucket/data/train.manifest", "sagemaker", lines, batch_lines=128))
    assert totals["ok"] + totals["dead"] == len(lines)
    totals = _account(_batches("https://user:pw-9x@host/data/train.manifest", "sagemaker", lines, batch_lines=128))  # userinfo: redacted alike
    assert totals["ok"] + totals["dead"] == len(lines)
