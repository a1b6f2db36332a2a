"""iter_json_array: elements and offsets equal a whole-file json.loads, at any chunk size."""

from __future__ import annotations

import io
import json

import pytest

from transforms.json_array import JsonArrayError, iter_json_array

TRICKY = [
    b"[]",
    b"  \n[ \t\r\n ]  \n",
    b'[{"a": 1}]',
    b'[{"a": "]}[{,"}, {"b": "\\"quoted\\" ] and \\\\"}, {"c": "\\\\\\""}]',
    b'[\n  {"x": [1, 2, [3, {"y": "}"}]]},\n\n  [ ], {} , "str]ing", 12.5e3, -7, true, false, null\n]\n',
    b'\xef\xbb\xbf[{"bom": "ok"}]',
    b'[{"unicode": "\xc3\xa9\xe2\x82\xac \\u00e9"}, {"nested": {"deep": {"deeper": [[[]]]}}}]',
    b'["a\\\\", "b\\\\\\"c", "{[", 0]',
    json.dumps(
        [{"t": "\\" * k + '"]}' + "\\" * j, "u": ['"' * j]} for k in range(6) for j in range(4)]
    ).encode(),
    json.dumps([json.dumps({"nested json": ['"[{', "\\"]}) for _ in range(3)]).encode(),
    b'[{"big": "'
    + b"x" * 5000
    + b'"}, {"list": ['
    + b",".join(b"%d" % i for i in range(2000))
    + b"]}]",
]


def _expected(raw: bytes) -> list[tuple[int, object]]:
    """Elements by json.loads of the whole file, offsets by decoding the array step by step."""
    text = raw.decode("utf-8-sig")
    prefix = len(raw) - len(text.encode())
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    out = []
    while True:
        while text[pos] in " \t\r\n,":
            pos += 1
        if text[pos] == "]":
            break
        value, end = decoder.raw_decode(text, pos)
        out.append((prefix + len(text[:pos].encode()), value))
        pos = end
    assert [v for _, v in out] == json.loads(text)
    return out


@pytest.mark.parametrize("raw", TRICKY, ids=range(len(TRICKY)))
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 64, 1 << 20])
def test_elements_and_offsets_match_json_loads(raw, chunk_size):
    got = list(iter_json_array(io.BytesIO(raw), chunk_size=chunk_size))
    expected = _expected(raw)
    assert [offset for offset, _ in got] == [offset for offset, _ in expected]
    assert [json.loads(element) for _, element in got] == [value for _, value in expected]
    for offset, element in got:  # raw bytes are exactly the file's bytes at that offset
        assert raw[offset : offset + len(element)] == element


@pytest.mark.parametrize(
    "raw, offset",
    [
        (b"", 0),
        (b'{"a": 1}', 0),
        (b'[{"a": 1}', 9),
        (b'[{"a": "unterminated}]', 1),
        (b'[{"a": 1} {"b": 2}]', 10),
        (b'[{"a": 1},]', 10),
        (b'[{"a": 1]]', 8),
        (b'[{"a": 1}] x', 11),
        (b"[1, 2", 4),
        (b"[,1]", 1),
        (b'[{"a": 1},\n', 11),
    ],
)
@pytest.mark.parametrize("chunk_size", [1, 4, 1 << 20])
def test_malformed_arrays_raise_with_offset(raw, offset, chunk_size):
    with pytest.raises(JsonArrayError) as info:
        list(iter_json_array(io.BytesIO(raw), chunk_size=chunk_size))
    assert info.value.offset == offset
    assert isinstance(info.value, ValueError)


def test_elements_before_a_truncation_are_yielded():
    raw = b'[{"a": 1}, {"b": 2}, {"c": '
    stream = iter_json_array(io.BytesIO(raw), chunk_size=5)
    assert next(stream) == (1, b'{"a": 1}')
    assert next(stream) == (11, b'{"b": 2}')
    with pytest.raises(JsonArrayError):
        next(stream)


class _CountingReader(io.BytesIO):
    """Records the largest single read, to show the scanner never slurps the file."""

    largest = 0

    def read(self, size=-1):
        assert size is not None and size > 0, "the scanner must never read the whole file"
        data = super().read(size)
        self.largest = max(self.largest, len(data))
        return data


def test_reads_are_bounded_by_the_chunk_and_the_element():
    element = b'{"id": 1, "data": {"image": "s3://b/k.jpg"}, "pad": "' + b"p" * 1000 + b'"}'
    raw = b"[" + b",\n".join([element] * 500) + b"]"
    reader = _CountingReader(raw)
    count = sum(1 for _ in iter_json_array(reader, chunk_size=256))
    assert count == 500
    assert reader.largest <= 2 * len(element) + 256


def test_reads_an_fsspec_file_object():
    import fsspec

    raw = _samples_export()
    fs = fsspec.filesystem("memory")
    with fs.open("/ls/export.json", "wb") as out:
        out.write(raw)
    with fs.open("/ls/export.json", "rb") as handle:
        got = [
            (offset, json.loads(element))
            for offset, element in iter_json_array(handle, chunk_size=4096)
        ]
    assert got == _expected(raw)
    fs.rm("/ls/export.json")


def _samples_export() -> bytes:
    from pathlib import Path

    return (
        Path(__file__).resolve().parents[1] / "samples" / "label_studio" / "export.json"
    ).read_bytes()


@pytest.mark.parametrize("raw", TRICKY, ids=range(len(TRICKY)))
@pytest.mark.parametrize("part_bytes", [1, 10, 100, 1 << 20])
def test_parts_read_alone_give_the_whole_arrays_elements_and_offsets(raw, part_bytes):
    """plan_parts + ArrayPart: every part read as an array of its own, offsets shifted back to
    the file's, yields exactly the elements of reading the file whole, none twice."""
    from transforms.json_array import ArrayPart, plan_parts

    whole = list(iter_json_array(io.BytesIO(raw)))
    parts = plan_parts(io.BytesIO(raw), part_bytes)
    assert sum(count for *_, count in parts) == len(whole)
    got = []
    for start, end, before, count in parts:
        assert before == len(got)
        elements = [(start - 1 + offset, element) for offset, element in iter_json_array(ArrayPart(io.BytesIO(raw), start, end), chunk_size=7)]
        assert len(elements) == count
        got.extend(elements)
    assert got == whole
    if part_bytes == 1:
        assert len(parts) == len(whole)  # one element per part


def test_planning_a_malformed_array_raises_with_the_offset():
    from transforms.json_array import plan_parts

    with pytest.raises(JsonArrayError) as caught:
        plan_parts(io.BytesIO(b'[{"a": 1}, {"b": 2} {"c": 3}]'), 1)
    assert caught.value.offset == 20


@pytest.mark.parametrize("seed", range(6))
def test_random_strings_of_quotes_backslashes_and_brackets(seed):
    """Strings made of the bytes the bracket scan counts (quotes, backslash runs, brackets),
    cut into chunks of every small size: the elements json.loads finds, at their offsets."""
    import random

    rng = random.Random(seed)
    alphabet = ['"', "\\", "[", "]", "{", "}", "a", " ", ","]
    values = []
    for _ in range(60):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        values.append(rng.choice([text, [text, {"k" + text: text}], {"x": [[text]]}, 1.5, None]))
    raw = json.dumps(values, indent=rng.choice([None, 1])).encode()
    for chunk_size in (1, 2, 3, 5, 8, 13, 4096):
        got = list(iter_json_array(io.BytesIO(raw), chunk_size=chunk_size))
        assert [(offset, json.loads(element)) for offset, element in got] == _expected(raw)
