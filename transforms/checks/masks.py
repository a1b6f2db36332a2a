"""Decode and check one semantic-mask PNG: pure functions, no Beam, no I/O.

Policy (docs/validation.md):
- A pixel is *labelled* when its alpha is >= `alpha_threshold` (default 128). Real masks are
  anti-aliased: Lookout for Vision's own masks carry a tRNS alpha ramp from 0 to 255 on every edge,
  so a pixel at half opacity or more belongs to the region and fainter ones do not.
- A labelled pixel belongs to the declared class whose colour is nearest, when the largest
  per-channel difference is <= `color_tolerance` (default 8); otherwise it is undeclared.
- Background is transparent pixels plus the colour of the color map's BACKGROUND entry; when the
  map declares no BACKGROUND, opaque white (#ffffff, Ground Truth) and black (#000000) are it.
- The header is read and the declared pixel count bounded *before* any pixel is decoded.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import struct
import zlib
from typing import TYPE_CHECKING

import numpy as np

from transforms.errors import (
    MASK_ANIMATED,
    MASK_BACKGROUND_INVALID,
    MASK_CORRUPT,
    MASK_LABEL_MISMATCH,
    MASK_NOT_PNG,
    MASK_SIZE_MISMATCH,
    MASK_TOO_LARGE,
    MASK_UNDECLARED_COLOR,
)

if TYPE_CHECKING:
    from PIL import Image

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BACKGROUND = "background"
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
_BACKGROUND_CLASS = -1
_UNDECLARED_CLASS = -2
# Bytes needed to read the signature and the IHDR chunk (8 + 4 + 4 + 13 + 4).
HEADER_BYTES = 33


@dataclasses.dataclass(frozen=True)
class Finding:
    code: str
    message: str


class MaskRejected(Exception):
    """A finding after which the mask cannot be checked further (unreadable, too large, ...)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.finding = Finding(code, message)


@dataclasses.dataclass(frozen=True)
class MaskPolicy:
    alpha_threshold: int = 128
    color_tolerance: int = 8
    max_pixels: int = 25_000_000
    require_white_background: bool = False


@dataclasses.dataclass
class MaskReport:
    """What one decoded mask contains, and what is wrong with it."""

    width: int
    height: int
    class_pixels: list[dict]
    foreground_pixels: int
    foreground_bbox: dict | None
    findings: list[Finding]


@dataclasses.dataclass(frozen=True)
class _ColorClass:
    class_name: str
    rgb: tuple[int, int, int]


def parse_hex_color(text: str | None) -> tuple[int, int, int] | None:
    """'#23A436' or '23a436' or '#fff' -> (35, 164, 54); anything else -> None."""
    if not isinstance(text, str):
        return None
    digits = text.strip().lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    if len(digits) != 6:
        return None
    try:
        value = int(digits, 16)
    except ValueError:
        return None
    return (value >> 16) & 255, (value >> 8) & 255, value & 255


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the signature and IHDR, without decoding; raises MaskRejected."""
    if not data:
        raise MaskRejected(MASK_NOT_PNG, "empty file (0 bytes), no PNG signature")
    if len(data) < len(PNG_MAGIC) and PNG_MAGIC.startswith(data):
        raise MaskRejected(MASK_CORRUPT, f"truncated after {len(data)} bytes")
    if not data.startswith(PNG_MAGIC):
        # Never quote the bytes: a reference may name any file, and its content is not ours to copy.
        raise MaskRejected(MASK_NOT_PNG, "no PNG signature")
    if len(data) < HEADER_BYTES:
        raise MaskRejected(MASK_CORRUPT, f"truncated in the header ({len(data)} bytes)")
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        raise MaskRejected(MASK_CORRUPT, "first chunk is not a 13-byte IHDR")
    if zlib.crc32(data[12:29]) != struct.unpack(">I", data[29:33])[0]:
        raise MaskRejected(MASK_CORRUPT, "IHDR checksum mismatch")
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        raise MaskRejected(MASK_CORRUPT, f"zero dimension {width}x{height}")
    return width, height


def check_size_bound(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise MaskRejected(
            MASK_TOO_LARGE,
            f"{width}x{height} = {width * height} pixels declared, limit {max_pixels}",
        )


def check_chunk_crcs(data: bytes) -> None:
    """Every chunk's CRC (Pillow does not check IDAT's), and that the chunks reach IEND;
    raises MaskRejected(MASK_CORRUPT). zlib.crc32 runs at memory speed: a few percent of a
    decode (docs/validation.md)."""
    view = memoryview(data)
    position, size = len(PNG_MAGIC), len(data)
    while position + 12 <= size:
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if end > size:
            raise MaskRejected(MASK_CORRUPT, f"truncated inside a {_chunk_name(kind)} chunk")
        if zlib.crc32(view[position + 4 : end - 4]) != struct.unpack_from(">I", data, end - 4)[0]:
            raise MaskRejected(MASK_CORRUPT, f"{_chunk_name(kind)} chunk checksum mismatch at byte {position}")
        if kind == b"IEND":
            return
        position = end
    raise MaskRejected(MASK_CORRUPT, "truncated: no IEND chunk")


def _chunk_name(kind: bytes) -> str:
    return kind.decode("ascii") if kind.isalpha() else "malformed"


def decode(data: bytes) -> Image.Image:
    """PNG bytes -> a loaded Pillow image; raises MaskRejected(MASK_CORRUPT / MASK_TOO_LARGE)."""
    from PIL import Image  # here, not at module level: a run that opens no mask never imports Pillow

    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
        image.load()
        return image
    except Image.DecompressionBombError as exc:
        raise MaskRejected(MASK_TOO_LARGE, str(exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        raise MaskRejected(MASK_CORRUPT, f"cannot decode: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a decoder's own bug on a hostile file is still a corrupt file
        raise MaskRejected(MASK_CORRUPT, f"cannot decode: {type(exc).__name__}: {exc}") from None


def to_rgba(image: Image.Image) -> np.ndarray:
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):
        # 16-bit grey: scale to 8 bits, then grey v is the colour (v, v, v).
        grey = (np.asarray(image).astype(np.uint32) // 257).clip(0, 255).astype(np.uint8)
        alpha = np.full_like(grey, 255)
        return np.dstack([grey, grey, grey, alpha])
    return np.asarray(image if image.mode == "RGBA" else image.convert("RGBA"))


def palette_rgba(image: Image.Image) -> np.ndarray:
    """A palette image's colour table as (256, 4) RGBA, alpha from its tRNS chunk."""
    return _palette_table(bytes(image.getpalette("RGB") or []), image.info.get("transparency"))


def _palette_table(palette: bytes, transparency) -> np.ndarray:
    table = np.zeros((256, 4), np.uint8)
    rgb = np.frombuffer(palette, np.uint8)[: 256 * 3]
    rgb = rgb[: len(rgb) - len(rgb) % 3].reshape(-1, 3)
    table[: len(rgb), :3] = rgb
    table[:, 3] = 255
    if isinstance(transparency, bytes):
        table[: len(transparency), 3] = np.frombuffer(transparency[:256], np.uint8)
    elif isinstance(transparency, int) and 0 <= transparency < 256:
        table[transparency, 3] = 0
    return table


def declared_classes(color_map: list[dict] | None) -> tuple[list[_ColorClass], list[tuple]]:
    """The color map split into (foreground classes, background colours)."""
    classes, background = [], []
    for entry in color_map or []:
        rgb = parse_hex_color(entry.get("hex_color"))
        name = entry.get("class_name") or ""
        if rgb is None:
            continue
        if name.strip().casefold() == BACKGROUND:
            background.append(rgb)
        else:
            classes.append(_ColorClass(name, rgb))
    if not background:
        background = [WHITE, BLACK]
    return classes, background


def background_findings(color_map: list[dict] | None) -> list[Finding]:
    """Lookout for Vision: entry 0 must be class BACKGROUND with colour #ffffff."""
    entry = next((e for e in color_map or [] if e.get("index") == 0), None)
    if entry is None:
        return [Finding(MASK_BACKGROUND_INVALID, "color map has no entry 0 (BACKGROUND #ffffff)")]
    name, rgb = entry.get("class_name") or "", parse_hex_color(entry.get("hex_color"))
    if name.strip().casefold() != BACKGROUND or rgb != WHITE:
        return [
            Finding(
                MASK_BACKGROUND_INVALID,
                f"entry 0 is {name!r} {entry.get('hex_color')!r}, expected 'BACKGROUND' '#ffffff'",
            )
        ]
    return []


def classify_image(
    image: Image.Image, color_map: list[dict] | None, policy: MaskPolicy
) -> tuple[list[dict], int, dict | None, dict[tuple, int]]:
    """classify_pixels for a decoded image. A palette image is classified per palette entry (at
    most 256) from Pillow's histogram of its indices, and its foreground box found by Pillow on
    the indices mapped through a 0/255 table: no pixel reaches Python or numpy, so the check costs
    about what decoding does."""
    if image.mode != "P":
        return classify_pixels(to_rgba(image), color_map, policy)
    width, height = image.size
    nonzero_box = image.getbbox()  # around every index but 0
    counts = _index_counts(image, nonzero_box)
    packed, entry_class = _palette_classes(image, color_map, policy)
    is_foreground = entry_class != _BACKGROUND_CLASS
    foreground = int(counts[is_foreground].sum())
    box = None
    if foreground:
        others_present = counts[1:] > 0
        if not is_foreground[0] and is_foreground[1:][others_present].all():
            box = nonzero_box  # the usual mask: index 0 is the background, every other index is foreground
        else:
            box = image.point(np.where(is_foreground, 255, 0).tolist()).getbbox()
    return _tally_entries(entry_class, packed, counts, color_map, foreground, box, (width, height))


def _palette_classes(image: Image.Image, color_map: list[dict] | None, policy: MaskPolicy) -> tuple[np.ndarray, np.ndarray]:
    """(packed RGB, class) of each of a palette image's 256 entries (alpha below the threshold:
    background). The masks of a dataset share one palette and one color map, so the answer is
    remembered per (palette, transparency, color map, policy): about 0.4 ms a mask of numpy
    calls on 256 entries, taken once."""
    transparency = image.info.get("transparency")
    if not isinstance(transparency, (bytes, int)):
        transparency = None
    colours = tuple((entry.get("class_name"), entry.get("hex_color")) for entry in color_map or [])
    return _palette_classes_of(bytes(image.getpalette("RGB") or []), transparency, colours, policy.color_tolerance, policy.alpha_threshold)


@functools.lru_cache(maxsize=64)
def _palette_classes_of(palette: bytes, transparency, colours: tuple, tolerance: int, alpha_threshold: int) -> tuple[np.ndarray, np.ndarray]:
    table = _palette_table(palette, transparency)
    color_map = [{"class_name": name, "hex_color": colour} for name, colour in colours]
    packed = _pack(table[:, :3])
    entry_class = _match_colours(packed, *declared_classes(color_map), tolerance)
    entry_class[table[:, 3] < alpha_threshold] = _BACKGROUND_CLASS  # unlabelled entries
    packed.setflags(write=False)
    entry_class.setflags(write=False)
    return packed, entry_class


def _index_counts(image: Image.Image, nonzero_box) -> np.ndarray:
    """Pixels per palette index. Outside the box around the non-zero indices every pixel is index
    0, so only the box is counted: a mask's blobs are usually a small part of it."""
    width, height = image.size
    counts = np.zeros(256, np.int64)
    if nonzero_box is None:
        counts[0] = width * height
        return counts
    left, top, right, bottom = nonzero_box
    counts[:] = image.crop(nonzero_box).histogram()[:256]
    counts[0] += width * height - (right - left) * (bottom - top)
    return counts


def classify_pixels(
    rgba: np.ndarray, color_map: list[dict] | None, policy: MaskPolicy
) -> tuple[list[dict], int, dict | None, dict[tuple, int]]:
    """Count labelled pixels per declared class, vectorised over the unique colours.

    Only the box around labelled pixels (alpha >= threshold) is examined: masks are mostly
    transparent background. Returns (class_pixels, foreground pixel count, normalized
    foreground bbox or None, undeclared colour -> pixel count).
    """
    height, width = rgba.shape[:2]
    labelled = rgba[:, :, 3] >= policy.alpha_threshold
    rows, cols = np.flatnonzero(labelled.any(axis=1)), np.flatnonzero(labelled.any(axis=0))
    if not rows.size:
        return _tally([], [], [], color_map, np.zeros((0, 0), bool), (0, 0), (width, height))
    top, left = rows[0], cols[0]
    crop = rgba[top : rows[-1] + 1, left : cols[-1] + 1].reshape(-1, 4)
    inside = np.flatnonzero(labelled[top : rows[-1] + 1, left : cols[-1] + 1].ravel())
    colours, inverse, counts = np.unique(_pack(crop[inside, :3]), return_inverse=True, return_counts=True)
    colour_class = _match_colours(colours, *declared_classes(color_map), policy.color_tolerance)
    foreground = np.zeros(crop.shape[0], bool)
    foreground[inside[colour_class[inverse] != _BACKGROUND_CLASS]] = True
    crop_shape = (rows[-1] + 1 - top, cols[-1] + 1 - left)
    return _tally(colour_class, colours, counts, color_map, foreground.reshape(crop_shape), (left, top), (width, height))


def _tally(colour_class, colours, counts, color_map, foreground: np.ndarray, origin, size):
    """Per-class counts, undeclared colours and the foreground box from classified colours.

    `foreground` covers a crop of the mask whose top-left corner is `origin` (x, y)."""
    colour_class, colours, counts = (np.asarray(a) for a in (colour_class, colours, counts))
    class_pixels, undeclared = _class_counts(colour_class, colours, counts, color_map)
    (left, top), (width, height) = origin, size
    rows, cols = np.flatnonzero(foreground.any(axis=1)), np.flatnonzero(foreground.any(axis=0))
    bbox = None
    if rows.size:
        bbox = {
            "x_min": float(left + cols[0]) / width,
            "y_min": float(top + rows[0]) / height,
            "x_max": float(left + cols[-1] + 1) / width,
            "y_max": float(top + rows[-1] + 1) / height,
        }
    return class_pixels, int(np.count_nonzero(foreground)), bbox, undeclared


def _class_counts(colour_class, colours, counts, color_map) -> tuple[list[dict], dict[tuple, int]]:
    """Pixels per declared class, and per undeclared colour, from classified colours."""
    classes, _ = declared_classes(color_map)
    class_pixels = [
        {"class_name": c.class_name, "pixels": int(counts[colour_class == i].sum())} for i, c in enumerate(classes)
    ]
    undeclared: dict[tuple, int] = {}
    is_undeclared = colour_class == _UNDECLARED_CLASS
    for colour, n in zip(colours[is_undeclared], counts[is_undeclared]):
        if n:
            rgb = _unpack(int(colour))
            undeclared[rgb] = undeclared.get(rgb, 0) + int(n)
    return class_pixels, undeclared


def _tally_entries(entry_class, colours, counts, color_map, foreground: int, box, size):
    """_tally for classified palette entries whose foreground count and box (Pillow's getbbox:
    left, top, right, bottom, the last two exclusive) are already known."""
    class_pixels, undeclared = _class_counts(entry_class, colours, counts, color_map)
    width, height = size
    bbox = None
    if box is not None:
        left, top, right, bottom = box
        bbox = {"x_min": float(left) / width, "y_min": float(top) / height,
                "x_max": float(right) / width, "y_max": float(bottom) / height}
    return class_pixels, foreground, bbox, undeclared


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.uint32)
    return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


def _match_colours(colours, classes, background, tolerance) -> np.ndarray:
    """Per unique colour: the index of the nearest declared class, background, or undeclared."""
    if colours.size == 0:
        return np.zeros(0, dtype=np.int64)
    candidates = [c.rgb for c in classes] + list(background)
    labels = np.array(list(range(len(classes))) + [_BACKGROUND_CLASS] * len(background))
    rgb = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1).astype(np.int32)
    distance = np.abs(rgb[:, None, :] - np.array(candidates, dtype=np.int32)[None, :, :]).max(axis=2)
    nearest = distance.argmin(axis=1)
    within = distance[np.arange(len(colours)), nearest] <= tolerance
    return np.where(within, labels[nearest], _UNDECLARED_CLASS)


def _unpack(colour: int) -> tuple[int, int, int]:
    return (colour >> 16) & 255, (colour >> 8) & 255, colour & 255


def hex_of(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def image_class_of(labels: list[dict] | None) -> str | None:
    """'anomaly' or 'normal' when the record's image-level labels say so (case-insensitive)."""
    names = {(label.get("name") or "").strip().casefold() for label in labels or []}
    if "anomaly" in names:
        return "anomaly"
    if "normal" in names:
        return "normal"
    return None


def check_mask(
    data: bytes,
    color_map: list[dict] | None,
    policy: MaskPolicy,
    image_size: tuple[int, int] | None = None,
    image_class: str | None = None,
) -> MaskReport:
    """Every check of one mask. Raises MaskRejected when it cannot be decoded at all."""
    width, height = png_size(data)
    check_size_bound(width, height, policy.max_pixels)
    check_chunk_crcs(data)
    with decode(data) as image:
        width, height = image.size
        frames = getattr(image, "n_frames", 1)
        class_pixels, foreground, bbox, undeclared = classify_image(image, color_map, policy)

    findings: list[Finding] = []
    if frames > 1:
        findings.append(Finding(MASK_ANIMATED, f"an animated PNG of {frames} frames: only the first is checked"))
    if image_size and all(image_size) and tuple(image_size) != (width, height):
        findings.append(
            Finding(
                MASK_SIZE_MISMATCH,
                f"mask is {width}x{height}, image is {image_size[0]}x{image_size[1]}",
            )
        )
    if undeclared:
        worst = sorted(undeclared.items(), key=lambda item: -item[1])[:5]
        listed = ", ".join(f"{hex_of(rgb)} ({n} px)" for rgb, n in worst)
        findings.append(
            Finding(
                MASK_UNDECLARED_COLOR,
                f"{len(undeclared)} colour(s) not in the color map: {listed}",
            )
        )
    if policy.require_white_background:
        findings.extend(background_findings(color_map))
    if image_class == "anomaly" and foreground == 0:
        findings.append(Finding(MASK_LABEL_MISMATCH, "image labelled anomaly, mask has no anomaly pixels"))
    elif image_class == "normal" and foreground > 0:
        findings.append(
            Finding(MASK_LABEL_MISMATCH, f"image labelled normal, mask has {foreground} anomaly pixels")
        )
    return MaskReport(width, height, class_pixels, foreground, bbox, findings)


@dataclasses.dataclass
class ClassMasks:
    """A decoded semantic mask split by class: one boolean (height, width) array per declared
    class that has pixels, under the same rules as check_mask (so each array's count equals
    that class's `class_pixels` in the record)."""

    width: int
    height: int
    masks: dict[str, np.ndarray]


def class_masks(data: bytes, color_map: list[dict] | None, policy: MaskPolicy) -> ClassMasks:
    """PNG bytes -> ClassMasks, with check_mask's bounds, decoder, alpha rule and colour match.
    Raises MaskRejected when it cannot be decoded. Entries of one class name are merged."""
    width, height = png_size(data)
    check_size_bound(width, height, policy.max_pixels)
    check_chunk_crcs(data)
    classes, background = declared_classes(color_map)
    with decode(data) as image:
        width, height = image.size
        if image.mode == "P":
            _, entry_class = _palette_classes(image, color_map, policy)
            pixel_class = entry_class.astype(np.int16)[np.asarray(image)]
        else:
            rgba = to_rgba(image).reshape(-1, 4)
            labelled = np.flatnonzero(rgba[:, 3] >= policy.alpha_threshold)
            colours, inverse = np.unique(_pack(rgba[labelled, :3]), return_inverse=True)
            colour_class = _match_colours(colours, classes, background, policy.color_tolerance)
            pixel_class = np.full(width * height, _BACKGROUND_CLASS, np.int16)
            pixel_class[labelled] = colour_class[inverse.ravel()]
            pixel_class = pixel_class.reshape(height, width)
    out: dict[str, np.ndarray] = {}
    for index, colour_class in enumerate(classes):
        selected = pixel_class == index
        if selected.any():
            name = colour_class.class_name
            out[name] = out[name] | selected if name in out else selected
    return ClassMasks(width, height, out)
