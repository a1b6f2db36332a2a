"""Image header probing: size and format from a ranged read, never the whole file."""

from __future__ import annotations

import numpy as np
import pytest
from fsspec.implementations.local import LocalFileSystem
from PIL import Image

from tests.conftest import need_shared_data, shared_data
from transforms import errors
from transforms.checks import images as ip

TRAINING_IMAGES = shared_data("realdata", "lookout-for-vision-getting-started", "training-images")


class CountingFileSystem(LocalFileSystem):
    """A local filesystem that records how many bytes each ranged read returned."""

    cachable = False  # a fresh instance (and count) per test

    def __init__(self):
        super().__init__()
        self.reads: list[int] = []

    def cat_file(self, path, start=None, end=None, **kwargs):
        data = super().cat_file(path, start=start, end=end, **kwargs)
        self.reads.append(len(data))
        return data


@pytest.fixture
def fs():
    return CountingFileSystem()


def noise(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(7).integers(0, 255, (height, width, 3), np.uint8))


@pytest.mark.parametrize(
    "suffix, pil_format, name",
    [(".jpg", "JPEG", "jpeg"), (".png", "PNG", "png"), (".gif", "GIF", "gif"),
     (".bmp", "BMP", "bmp"), (".tif", "TIFF", "tiff"), (".webp", "WEBP", "webp")],
)
def test_every_format_reports_size_and_format(tmp_path, fs, suffix, pil_format, name):
    path = tmp_path / f"image{suffix}"
    noise(123, 45).save(path, format=pil_format)
    header = ip.probe(fs, str(path))
    assert (header.width, header.height, header.format) == (123, 45, name)


def test_a_large_image_is_probed_with_one_small_ranged_read(tmp_path, fs):
    path = tmp_path / "big.jpg"
    noise(1500, 1200).save(path, quality=95)
    assert path.stat().st_size > 4 * ip.PROBE_BYTES
    header = ip.probe(fs, str(path), want_file_bytes=True)
    assert (header.width, header.height) == (1500, 1200)
    assert header.file_bytes == path.stat().st_size
    assert fs.reads == [ip.PROBE_BYTES]


def test_a_header_beyond_the_first_window_gets_one_more_read(tmp_path, fs):
    path = tmp_path / "big_icc.jpg"
    # An ICC profile of 150 KB sits in APP2 segments before the frame header.
    noise(300, 200).save(path, icc_profile=bytes(150_000))
    header = ip.probe(fs, str(path))
    assert (header.width, header.height) == (300, 200)
    assert len(fs.reads) == 2 and fs.reads[0] == ip.PROBE_BYTES


@pytest.mark.parametrize(
    "content, code",
    [
        (b"", errors.IMAGE_CORRUPT),
        (b"just some text, not an image\n", errors.IMAGE_UNSUPPORTED_FORMAT),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", errors.IMAGE_CORRUPT),  # JPEG cut before the frame header
        (b"\x00\x00\x01\x00" + bytes(40), errors.IMAGE_UNSUPPORTED_FORMAT),  # an .ico
    ],
)
def test_bad_files_have_one_code_each(tmp_path, fs, content, code):
    path = tmp_path / "image.jpg"
    path.write_bytes(content)
    with pytest.raises(ip.ImageProbeError) as caught:
        ip.probe(fs, str(path))
    assert caught.value.code == code


def test_a_missing_image_is_not_found(tmp_path, fs):
    with pytest.raises(ip.ImageProbeError) as caught:
        ip.probe(fs, str(tmp_path / "absent.jpg"))
    assert caught.value.code == errors.IMAGE_NOT_FOUND


def test_format_is_sniffed_from_magic_bytes_not_the_name(tmp_path, fs):
    path = tmp_path / "photo.jpg"
    noise(20, 10).save(path, format="PNG")
    assert ip.probe(fs, str(path)).format == "png"


def test_real_lookout_training_images():
    images = sorted(need_shared_data("realdata", "lookout-for-vision-getting-started", "training-images").glob("*.jpg"))
    assert images
    fs = CountingFileSystem()
    for path in images:
        header = ip.probe(fs, str(path))
        assert (header.width, header.height, header.format) == (576, 768, "jpeg")
    assert all(n <= ip.PROBE_BYTES for n in fs.reads)
