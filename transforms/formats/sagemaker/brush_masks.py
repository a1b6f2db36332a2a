"""Label Studio brush regions -> one Ground Truth semantic-segmentation mask PNG per record.

Written only with `formats.sagemaker.mask_files` (docs/formats.md "sagemaker"): a palette PNG,
index 0 the background (`BACKGROUND`, #ffffff, as Ground Truth writes it), one index per class
(its position in the output's class list + 1), each class a fixed colour that the line's
`internal-color-map` names. A pixel belongs to a brush when its alpha is at least the threshold
(as COCO's `brush_alpha_threshold`); where brushes overlap, the later region (higher object
index) wins: Label Studio draws later regions on top.
"""

from __future__ import annotations

import functools
import hashlib
import io

import numpy as np

from transforms.checks.rle import decode_rle
from transforms.partitions import folder_value

MASKS_FOLDER = "masks"
BACKGROUND_ENTRY = {"class-name": "BACKGROUND", "hex-color": "#ffffff"}
# Ground Truth's own first colours (matplotlib's tab10), then colours spread over the cube
_FIRST = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
MAX_CLASSES = 255  # palette indexes 1..255


def _spread(n: int) -> list[str]:
    """`n` colours: the first ten, then 3-3-2 bit colours far (> 8 per channel) from those
    already taken and from white, so the file checks' colour match (tolerance 8) tells them apart."""
    taken = [tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in _FIRST]
    out = list(_FIRST)
    code = 0
    while len(out) < n:
        rgb = ((code >> 5 & 7) * 36 + 2, (code >> 2 & 7) * 36 + 2, (code & 3) * 84 + 2)
        code += 1
        if all(max(abs(a - b) for a, b in zip(rgb, t)) > 16 for t in taken + [(255, 255, 255), (0, 0, 0)]):
            taken.append(rgb)
            out.append("#%02x%02x%02x" % rgb)
    return out[:n]


@functools.cache
def _colours() -> tuple[str, ...]:
    """The 255 class colours, computed on first use (about 30 ms: not at import, which every
    worker process pays)."""
    return tuple(_spread(MAX_CLASSES))


def class_colour(index: int) -> str:
    """The colour of palette index `index` (1..255)."""
    return _colours()[index - 1]


def brush_indexes(row: dict) -> list[int]:
    """Positions of the row's objects that are brush masks."""
    return [i for i, obj in enumerate(row.get("objects") or []) if obj.get("mask_rle") is not None]


def mask_name(row: dict) -> str:
    """`masks/<split>/<image stem>__<12 hex>.png`: the same on every run (the image and the
    record id), unique per record."""
    uri = (row.get("image") or {}).get("uri") or ""
    stem = uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80].strip(".") or "image"
    digest = hashlib.blake2b(f"{uri}\x00{row.get('record_id') or ''}\x00{row.get('origin') or ''}".encode(), digest_size=6).hexdigest()
    return f"{MASKS_FOLDER}/{folder_value(row.get('split'))}/{stem}__{digest}.png"


def paint(row: dict, indexes: list[int], class_index: dict[str, int], width: int, height: int, alpha: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """The brushes at `indexes`, in order, into one (height, width) array of palette indexes;
    and the brushes that could not be painted (object index, why)."""
    pixels = np.zeros((height, width), np.uint8)
    refused = []
    for index in indexes:
        obj = row["objects"][index]
        label = obj.get("label")
        if label not in class_index:
            refused.append((index, "a brush without a class" if label is None else f"class {label!r} has no mask index"))
            continue
        try:
            foreground = decode_rle(obj["mask_rle"], width, height)[:, :, 3] >= alpha
        except ValueError as exc:
            refused.append((index, f"the brush RLE does not decode: {exc}"))
            continue
        pixels[foreground] = class_index[label]  # a later region wins where brushes overlap
    return pixels, refused


def png_bytes(pixels: np.ndarray, indexes: list[int]) -> bytes:
    """A palette PNG of `pixels`: index 0 white, each of `indexes` its class colour."""
    from PIL import Image  # here: a run that writes no mask never imports Pillow

    palette = [255, 255, 255] + [0, 0, 0] * 255
    for index in indexes:
        colour = class_colour(index)
        palette[3 * index:3 * index + 3] = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    image = Image.frombytes("P", (pixels.shape[1], pixels.shape[0]), np.ascontiguousarray(pixels).tobytes())
    image.putpalette(palette)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()
