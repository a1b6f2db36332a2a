"""Decoding and checking one mask PNG: policy, modes, hostile headers, real Lookout masks."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import need_shared_data
from transforms import errors
from transforms.checks import masks as mc

CRACKED = [{"index": 0, "class_name": "cracked", "hex_color": "#23A436"}]
TWO_CLASSES = [
    {"index": 0, "class_name": "BACKGROUND", "hex_color": "#ffffff"},
    {"index": 1, "class_name": "scratch", "hex_color": "#2ca02c"},
    {"index": 2, "class_name": "dent", "hex_color": "#1f77b4"},
]


def png_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


def crafted_png_header(width: int, height: int) -> bytes:
    """A signature and a valid IHDR (correct CRC) declaring width x height, and no pixel data."""
    body = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return mc.PNG_MAGIC + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body))


def rgba_canvas(width=40, height=30, fill=(255, 255, 255, 255)) -> np.ndarray:
    canvas = np.zeros((height, width, 4), np.uint8)
    canvas[:] = fill
    return canvas


def check(data: bytes, color_map=TWO_CLASSES, **kw) -> mc.MaskReport:
    policy_args = {k: kw.pop(k) for k in list(kw) if k in ("alpha_threshold", "color_tolerance", "max_pixels", "require_white_background")}
    return mc.check_mask(data, color_map, mc.MaskPolicy(**policy_args), **kw)


def codes(report: mc.MaskReport) -> list[str]:
    return [f.code for f in report.findings]


def test_hex_colours_parse_in_every_spelling():
    assert mc.parse_hex_color("#23A436") == (35, 164, 54)
    assert mc.parse_hex_color("23a436") == (35, 164, 54)
    assert mc.parse_hex_color("#fff") == (255, 255, 255)
    assert mc.parse_hex_color("#12345") is None
    assert mc.parse_hex_color("#gggggg") is None
    assert mc.parse_hex_color(None) is None


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", errors.MASK_NOT_PNG),  # zero bytes: no signature
        (mc.PNG_MAGIC[:5], errors.MASK_CORRUPT),  # cut inside the signature
        (b"\xff\xd8\xff\xe0" + bytes(40), errors.MASK_NOT_PNG),  # a JPEG
        (b"class,pixels\nscratch,12\n", errors.MASK_NOT_PNG),  # a text file named .png
        (mc.PNG_MAGIC + bytes(10), errors.MASK_CORRUPT),  # cut inside IHDR
    ],
)
def test_header_problems_have_one_code_each(data, code):
    with pytest.raises(mc.MaskRejected) as caught:
        check(data)
    assert caught.value.finding.code == code


def _idat_offset(data: bytes) -> int:
    position = 8
    while True:
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        if kind == b"IDAT":
            return position
        position += 12 + length


def test_a_wrong_idat_crc_is_corrupt_although_pillow_decodes_it():
    good = png_bytes(Image.fromarray(rgba_canvas(), "RGBA"))
    bad = bytearray(good)
    at = _idat_offset(good)
    length = struct.unpack(">I", good[at : at + 4])[0]
    bad[at + 8 + length] ^= 0xFF  # the IDAT CRC's first byte; the pixels are untouched
    with Image.open(io.BytesIO(bytes(bad))) as image:
        image.load()  # Pillow itself accepts it: the check must be ours
    assert codes(check(good)) == []
    with pytest.raises(mc.MaskRejected) as caught:
        check(bytes(bad))
    assert caught.value.finding.code == errors.MASK_CORRUPT and "IDAT" in caught.value.finding.message


def test_a_file_without_iend_is_corrupt():
    good = png_bytes(Image.fromarray(rgba_canvas(), "RGBA"))
    with pytest.raises(mc.MaskRejected) as caught:
        check(good[:-12])
    assert caught.value.finding.code == errors.MASK_CORRUPT


@pytest.mark.parametrize("content", [b"root:x:0:0:root:/root:/bin/bash\n", b"SHELL=/bin/bash\x00HOME=/root", b""])
def test_not_png_messages_never_quote_the_file(content):
    with pytest.raises(mc.MaskRejected) as caught:
        check(content)
    finding = caught.value.finding
    assert finding.code == errors.MASK_NOT_PNG
    for piece in (content[:4], content[:8]):
        if piece:
            assert piece.decode(errors="replace") not in finding.message and repr(piece)[2:-1] not in finding.message


def test_ihdr_checksum_is_verified():
    header = bytearray(crafted_png_header(10, 10))
    header[20] ^= 0xFF  # flip a byte of the height: the CRC no longer matches
    with pytest.raises(mc.MaskRejected) as caught:
        mc.png_size(bytes(header))
    assert caught.value.finding.code == errors.MASK_CORRUPT


def test_huge_declared_size_is_refused_before_decoding(monkeypatch):
    def must_not_decode(data):
        raise AssertionError("decoded a mask whose header is over the limit")

    monkeypatch.setattr(mc, "decode", must_not_decode)
    started = time.perf_counter()
    with pytest.raises(mc.MaskRejected) as caught:
        check(crafted_png_header(200_000, 200_000), max_pixels=25_000_000)
    assert caught.value.finding.code == errors.MASK_TOO_LARGE
    assert "40000000000" in caught.value.finding.message
    assert time.perf_counter() - started < 5  # refused from the header: no 40-gigapixel decode


def test_truncated_pixel_data_is_corrupt():
    data = png_bytes(Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)))
    with pytest.raises(mc.MaskRejected) as caught:
        check(data[: len(data) // 2])
    assert caught.value.finding.code == errors.MASK_CORRUPT


def test_alpha_threshold_decides_which_anti_aliased_pixels_count():
    canvas = rgba_canvas(fill=(0, 0, 0, 0))
    canvas[0, :10] = (44, 160, 44, 255)  # opaque scratch
    canvas[1, :10] = (44, 160, 44, 128)  # exactly at the threshold: counts
    canvas[2, :10] = (44, 160, 44, 127)  # just below: edge, does not count
    data = png_bytes(Image.fromarray(canvas, "RGBA"))
    report = check(data, alpha_threshold=128)
    assert report.class_pixels[0] == {"class_name": "scratch", "pixels": 20}
    assert check(data, alpha_threshold=1).class_pixels[0]["pixels"] == 30
    assert check(data, alpha_threshold=255).class_pixels[0]["pixels"] == 10
    assert report.findings == []


def test_colour_tolerance_matches_near_colours_and_reports_far_ones():
    canvas = rgba_canvas()
    canvas[5:10, 5:10] = (44 + 5, 160 - 5, 44, 255)  # 5 away from scratch #2ca02c
    data = png_bytes(Image.fromarray(canvas, "RGBA"))
    assert check(data, color_tolerance=8).class_pixels[0]["pixels"] == 25
    strict = check(data, color_tolerance=2)
    assert strict.class_pixels[0]["pixels"] == 0
    assert codes(strict) == [errors.MASK_UNDECLARED_COLOR]
    assert "#319b2c (25 px)" in strict.findings[0].message


def test_undeclared_colours_exclude_background_and_are_counted_as_foreground():
    canvas = rgba_canvas()  # white background, declared as BACKGROUND
    canvas[0:3, 0:4] = (31, 119, 180, 255)  # dent
    canvas[10:12, 20:25] = (200, 0, 200, 255)  # magenta: not declared
    report = check(png_bytes(Image.fromarray(canvas, "RGBA")))
    assert codes(report) == [errors.MASK_UNDECLARED_COLOR]
    assert {c["class_name"]: c["pixels"] for c in report.class_pixels} == {"scratch": 0, "dent": 12}
    assert report.foreground_pixels == 12 + 10


def test_declared_background_makes_other_opaque_colours_undeclared():
    canvas = rgba_canvas(fill=(0, 0, 0, 255))  # opaque black, but BACKGROUND is declared white
    report = check(png_bytes(Image.fromarray(canvas, "RGBA")))
    assert codes(report) == [errors.MASK_UNDECLARED_COLOR]
    # Without a BACKGROUND entry, black and white are background (Lookout and Ground Truth masks).
    assert check(png_bytes(Image.fromarray(canvas, "RGBA")), color_map=CRACKED).findings == []


def test_foreground_bbox_is_normalized_with_exclusive_max():
    canvas = rgba_canvas(width=40, height=20)
    canvas[5:10, 8:12] = (44, 160, 44, 255)
    report = check(png_bytes(Image.fromarray(canvas, "RGBA")))
    assert report.foreground_bbox == {"x_min": 8 / 40, "y_min": 5 / 20, "x_max": 12 / 40, "y_max": 10 / 20}
    assert (report.width, report.height) == (40, 20)
    empty = check(png_bytes(Image.fromarray(rgba_canvas(), "RGBA")))
    assert empty.foreground_bbox is None and empty.foreground_pixels == 0


@pytest.mark.parametrize("mode", ["P", "RGB", "RGBA", "L"])
def test_every_colour_type_gives_the_same_counts(mode):
    colours = {"RGB": (44, 160, 44), "L": (128, 128, 128)}
    colour = colours.get(mode, (44, 160, 44))
    color_map = TWO_CLASSES + [{"index": 3, "class_name": "grey", "hex_color": "#808080"}]
    canvas = np.full((30, 40, 3), 255, np.uint8)
    canvas[2:7, 3:9] = colour
    image = Image.fromarray(canvas, "RGB")
    if mode == "P":
        image = image.quantize(colors=4)
    elif mode == "RGBA":
        image = image.convert("RGBA")
    elif mode == "L":
        image = image.convert("L")
    data = png_bytes(image)
    assert Image.open(io.BytesIO(data)).mode == mode
    report = check(data, color_map=color_map)
    pixels = {c["class_name"]: c["pixels"] for c in report.class_pixels}
    expected_class = "grey" if mode == "L" else "scratch"
    assert pixels[expected_class] == 30
    assert report.findings == []


def test_palette_with_trns_alpha_ramp():
    palette_image = Image.new("P", (16, 1))
    palette_image.putpalette([0, 0, 0] + [35, 164, 54] * 255)
    palette_image.putdata(list(range(16)))
    alphas = bytes([0] + [i * 17 for i in range(1, 16)])  # 17, 34, ..., 255
    data = png_bytes(palette_image, transparency=alphas)
    report = check(data, color_map=CRACKED, alpha_threshold=128)
    # alpha >= 128 for i*17 >= 128 -> i >= 8: entries 8..15
    assert report.class_pixels == [{"class_name": "cracked", "pixels": 8}]


def test_sixteen_bit_grey_is_scaled_to_eight_bits():
    grey = np.zeros((4, 4), np.uint16)
    grey[0, 0] = 0x8080  # scales to 128
    data = png_bytes(Image.fromarray(grey))
    report = check(data, color_map=[{"index": 1, "class_name": "g", "hex_color": "#808080"}])
    assert report.class_pixels == [{"class_name": "g", "pixels": 1}]


def test_size_mismatch_only_when_image_size_known():
    data = png_bytes(Image.new("RGB", (40, 30), "white"))
    assert codes(check(data, image_size=(40, 31))) == [errors.MASK_SIZE_MISMATCH]
    assert check(data, image_size=(40, 30)).findings == []
    assert check(data, image_size=(None, None)).findings == []


def test_background_rule_of_lookout_for_vision():
    data = png_bytes(Image.new("RGB", (8, 8), "white"))
    assert check(data, require_white_background=True).findings == []
    report = check(data, color_map=CRACKED, require_white_background=True)
    assert codes(report) == [errors.MASK_BACKGROUND_INVALID]
    assert "'cracked'" in report.findings[0].message
    no_zero = [e for e in TWO_CLASSES if e["index"] != 0]
    assert codes(check(data, color_map=no_zero, require_white_background=True)) == [errors.MASK_BACKGROUND_INVALID]


def test_label_mismatch_both_ways():
    empty = png_bytes(Image.new("RGB", (8, 8), "white"))
    marked = np.full((8, 8, 3), 255, np.uint8)
    marked[0, 0] = (44, 160, 44)
    marked = png_bytes(Image.fromarray(marked))
    assert codes(check(empty, image_class="anomaly")) == [errors.MASK_LABEL_MISMATCH]
    assert codes(check(marked, image_class="normal")) == [errors.MASK_LABEL_MISMATCH]
    assert check(marked, image_class="anomaly").findings == []
    assert check(empty, image_class="normal").findings == []


def test_image_class_from_labels_is_case_insensitive():
    assert mc.image_class_of([{"name": "Anomaly"}]) == "anomaly"
    assert mc.image_class_of([{"name": "NORMAL"}]) == "normal"
    assert mc.image_class_of([{"name": "cat"}]) is None
    assert mc.image_class_of(None) is None


def _alpha_at_least(path: Path, threshold: int) -> int:
    """Independent count with Pillow's histogram of the alpha channel."""
    histogram = Image.open(path).convert("RGBA").getchannel("A").histogram()
    return sum(histogram[threshold:])


@pytest.mark.parametrize("number", range(1, 9))
def test_real_lookout_masks_validate_with_their_anomaly_pixel_counts(number):
    path = need_shared_data("realdata", "lookout-for-vision-getting-started", "mask-images", f"anomaly-{number}.png")
    report = check(path.read_bytes(), color_map=CRACKED, image_size=(576, 768), image_class="anomaly")
    assert report.findings == []
    assert (report.width, report.height) == (576, 768)
    expected = _alpha_at_least(path, 128)
    assert 0 < expected < 576 * 768
    assert report.class_pixels == [{"class_name": "cracked", "pixels": expected}]
    # The anti-aliased ramp is real: a lower threshold counts more pixels.
    assert check(path.read_bytes(), color_map=CRACKED, alpha_threshold=1).foreground_pixels > expected


@pytest.mark.parametrize("number", range(1, 9))
def test_palette_fast_path_agrees_with_the_rgba_path(number):
    path = need_shared_data("realdata", "lookout-for-vision-getting-started", "mask-images", f"anomaly-{number}.png")
    policy = mc.MaskPolicy(alpha_threshold=100, color_tolerance=0)
    image = mc.decode(path.read_bytes())
    via_image = mc.classify_image(image, TWO_CLASSES, policy)
    via_rgba = mc.classify_pixels(mc.to_rgba(image), TWO_CLASSES, policy)
    assert via_image == via_rgba
    assert via_image[3]  # green is undeclared under TWO_CLASSES: both paths list it


def _random_palette_mask(seed: int) -> Image.Image:
    """A palette mask with a few colours, some entries partly transparent, some blank areas."""
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(1, 90)), int(rng.integers(1, 90))
    used = int(rng.integers(1, 6))
    indices = rng.integers(0, used, size=(height, width)).astype(np.uint8)
    if seed % 3 == 0:
        indices[:] = 0  # background only: no foreground box
    image = Image.fromarray(indices, "P")
    palette = [255, 255, 255, 0x2C, 0xA0, 0x2C, 0xFF, 0x00, 0x00, 0x2E, 0xA2, 0x2A, 0x10, 0x20, 0x30]
    image.putpalette(palette + [0] * (768 - len(palette)))
    if seed % 2:
        image.info["transparency"] = bytes(int(a) for a in rng.integers(0, 256, size=used))
    return image


@pytest.mark.parametrize("seed", range(24))
@pytest.mark.parametrize("threshold,tolerance", [(1, 0), (128, 8), (255, 3)])
def test_palette_path_agrees_with_the_rgba_path_on_generated_masks(seed, threshold, tolerance):
    image = _random_palette_mask(seed)
    policy = mc.MaskPolicy(alpha_threshold=threshold, color_tolerance=tolerance)
    colour_maps = [TWO_CLASSES, [{"index": 0, "class_name": "BACKGROUND", "hex_color": "#ffffff"}], None]
    for colour_map in colour_maps:
        assert mc.classify_image(image, colour_map, policy) == mc.classify_pixels(mc.to_rgba(image), colour_map, policy)


def test_masks_sharing_a_palette_classify_its_entries_once_and_each_mask_alike():
    """A dataset's masks share one palette and color map: the entries are classified once
    (remembered per palette, transparency, map and policy), and every mask still gets the answer
    of the per-pixel path, whatever was classified before it."""
    policy = mc.MaskPolicy(alpha_threshold=77, color_tolerance=5)
    images = [_random_palette_mask(seed) for seed in (2, 4, 8, 10)]  # even seeds: no transparency, one palette
    before = mc._palette_classes_of.cache_info()
    for image in images + images:
        assert mc.classify_image(image, TWO_CLASSES, policy) == mc.classify_pixels(mc.to_rgba(image), TWO_CLASSES, policy)
    after = mc._palette_classes_of.cache_info()
    assert after.misses - before.misses == 1 and after.hits - before.hits == 7
    _, entry_class = mc._palette_classes(images[0], TWO_CLASSES, policy)
    assert not entry_class.flags.writeable  # shared between threads and masks: never changed in place
