"""The numpy brush decoder equals label-studio-sdk's reference decoder, and is faster."""

from __future__ import annotations

import time

import numpy as np
import pytest
from label_studio_sdk.converter import brush

from transforms.checks.rle import decode_rle, decode_values, mask_stats, rle_bytes


def _disc_mask(height, width, cy, cx, radius):
    yy, xx = np.mgrid[:height, :width]
    return (((yy - cy) ** 2 + (xx - cx) ** 2) <= radius**2).astype(np.uint8) * 255


def _rgba_rle(rng, height, width):
    """An RGBA canvas with soft edges (partial alpha), as a brush stroke leaves it."""
    alpha = _disc_mask(height, width, height // 2, width // 3, min(height, width) // 4)
    alpha[rng.random(alpha.shape) < 0.01] = 90  # scattered half-transparent pixels
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[..., 0] = np.where(alpha > 0, 200, 0)
    rgba[..., 3] = alpha
    return brush.encode_rle(rgba.ravel()), rgba


@pytest.mark.parametrize("seed", range(4))
def test_decode_equals_reference_on_generated_masks(seed):
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(1, 90)), int(rng.integers(1, 90))
    rle, rgba = _rgba_rle(rng, height, width)
    expected = brush.decode_rle(rle)
    assert np.array_equal(decode_values(rle), expected)
    assert np.array_equal(decode_rle(rle, width, height), expected.reshape(height, width, 4))
    assert np.array_equal(decode_rle(bytes(rle), width, height), rgba)


def test_decode_equals_reference_on_literal_runs_and_long_runs():
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [rng.integers(0, 256, 3000), np.full(70_000, 255), rng.integers(0, 3, 999)]
    ).astype(
        np.uint8
    )  # literals, a run longer than 2**16, short runs
    rle = brush.encode_rle(values)
    assert np.array_equal(decode_values(rle), brush.decode_rle(rle))


def test_mask_stats_match_reference_decoder_and_are_timed(capsys):
    rng = np.random.default_rng(1)
    height, width = 300, 400
    rle, _ = _rgba_rle(rng, height, width)
    started = time.perf_counter()
    reference = brush.decode_rle(rle).reshape(height, width, 4)[:, :, 3]
    reference_seconds = time.perf_counter() - started
    started = time.perf_counter()
    area, box = mask_stats(rle, width, height, alpha_threshold=128)
    ours_seconds = time.perf_counter() - started
    foreground = reference >= 128
    assert area == int(foreground.sum())
    ys, xs = np.nonzero(foreground)
    assert box == pytest.approx(
        (xs.min() / width, ys.min() / height, (xs.max() + 1) / width, (ys.max() + 1) / height)
    )
    # partial-alpha pixels count only under a threshold that admits them
    assert mask_stats(rle, width, height, alpha_threshold=1)[0] == int((reference >= 1).sum())
    with capsys.disabled():
        print(
            f"\nbrush RLE {width}x{height} ({len(rle)} bytes): label-studio-sdk decode_rle "
            f"{reference_seconds * 1000:.1f} ms, transforms.checks.rle {ours_seconds * 1000:.1f} ms "
            f"({reference_seconds / ours_seconds:.0f}x)"
        )
    assert ours_seconds < reference_seconds


def test_empty_mask_has_no_box():
    rle = brush.mask2rle(np.zeros((5, 6), np.uint8))
    assert mask_stats(rle, 6, 5, alpha_threshold=128) == (0, None)


@pytest.mark.parametrize(
    "rle",
    [
        [],
        [0, 0, 1],
        [0, 0, 0, 200, 7, 0xFF, 0xFF],  # header promises 200 values, no records follow
        [1, 2, 300],
        "abc",
        [1.5, 2],
    ],
)
def test_malformed_rle_raises_value_error(rle):
    with pytest.raises(ValueError):
        decode_values(rle)


def test_truncated_and_mis_sized_rle_raise_value_error():
    rle = brush.mask2rle(_disc_mask(20, 30, 10, 10, 5))
    with pytest.raises(ValueError):
        decode_values(rle[: len(rle) // 2])
    with pytest.raises(ValueError):
        decode_rle(rle, 31, 20)


def test_rle_bytes_is_lossless_for_label_studio_int_lists():
    rle = brush.mask2rle(_disc_mask(8, 8, 4, 4, 2))
    assert list(rle_bytes(rle)) == rle


def test_a_huge_declared_size_is_refused_before_decoding():
    from transforms.checks import rle as rle_module

    with pytest.raises(ValueError, match="not decoded"):
        rle_module.decode_rle([0, 0, 0, 16], 30_000, 30_000)
