"""Image width, height and format from the first bytes of the file, not the whole image.

A ranged read of PROBE_BYTES (64 KiB) holds the header of almost every JPEG and PNG; Pillow
reads the size from a truncated file without decoding pixels. When the header lies further in
(a JPEG with a large EXIF thumbnail, a TIFF whose directory sits at the end), one more read of
up to MAX_PROBE_BYTES is tried.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import warnings

from transforms.errors import IMAGE_CORRUPT, IMAGE_NOT_FOUND, IMAGE_TOO_LARGE, IMAGE_UNSUPPORTED_FORMAT

PROBE_BYTES = 64 * 1024
MAX_PROBE_BYTES = 1024 * 1024

# Magic bytes -> format name (lower case, as in image.format). Decides "unsupported" vs "corrupt".
_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


@dataclasses.dataclass(frozen=True)
class ImageHeader:
    width: int
    height: int
    format: str
    file_bytes: int | None = None


class ImageProbeError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def sniff_format(head: bytes) -> str | None:
    """The format named by the file's magic bytes, or None for anything else."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def header_from_bytes(head: bytes) -> ImageHeader:
    """Width, height, format from the leading bytes of an image; raises ImageProbeError."""
    if not head:
        raise ImageProbeError(IMAGE_CORRUPT, "empty file")
    sniffed = sniff_format(head)
    if sniffed is None:
        raise ImageProbeError(IMAGE_UNSUPPORTED_FORMAT, "unrecognised signature")  # its bytes are never quoted
    from PIL import Image, UnidentifiedImageError  # here: a run that probes no image never imports Pillow

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(head)) as image:
                width, height = image.size
    except Image.DecompressionBombError as exc:
        raise ImageProbeError(IMAGE_TOO_LARGE, str(exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageProbeError(IMAGE_CORRUPT, f"{sniffed} header unreadable: {exc}") from None
    if width <= 0 or height <= 0:
        raise ImageProbeError(IMAGE_CORRUPT, f"zero dimension {width}x{height}")
    return ImageHeader(width, height, sniffed)


def probe(fs, path: str, want_file_bytes: bool = False) -> ImageHeader:
    """Ranged reads through an fsspec filesystem; FileNotFoundError -> IMAGE_NOT_FOUND, other
    storage errors are raised as they are."""
    file_bytes = _size(fs, path) if want_file_bytes else None
    head = _read_range(fs, path, PROBE_BYTES)
    try:
        header = header_from_bytes(head)
    except ImageProbeError as exc:
        if exc.code != IMAGE_CORRUPT or len(head) < PROBE_BYTES:
            raise
        header = header_from_bytes(_read_range(fs, path, MAX_PROBE_BYTES))
    return dataclasses.replace(header, file_bytes=file_bytes)


def _read_range(fs, path: str, length: int) -> bytes:
    try:
        return fs.cat_file(path, start=0, end=length)
    except FileNotFoundError:
        raise ImageProbeError(IMAGE_NOT_FOUND, "does not exist") from None
    except IsADirectoryError:
        raise ImageProbeError(IMAGE_NOT_FOUND, "is a folder") from None
    # Other storage failures (credentials, access, unreachable) reach the caller, which names them.


def _size(fs, path: str) -> int | None:
    try:
        return fs.size(path)
    except FileNotFoundError:
        raise ImageProbeError(IMAGE_NOT_FOUND, "does not exist") from None
