"""The fused CPU augmentation kernel's own contract: float16 rounding, threads, packing,
the arguments it refuses, the statistics it accepts, its output buffers. Its pixels against
the reference (every crop corner, erase box, narrow image and pixel value) are checked with
the whole augmenter family in test_augmenters.py; the helpers here build those cases."""

from __future__ import annotations

import itertools

import numba
import numpy as np
import pytest
import torch

from vireid.loader.augment import PAD, AugmentParams, draw_params, identity_params
from vireid.loader.fused import NormaliseTables, _half_bits, augment_batch, packed
from vireid.loader.fused_augment import FusedAugment, OutputBuffers

HEIGHT, WIDTH = 37, 23  # odd sizes for the constructed edge cases
CORNERS = [(top, left) for top in (0, PAD, 2 * PAD) for left in (0, PAD, 2 * PAD)]
FILLS = ("random", "zeros", "full")


def fused(images: np.ndarray, params: AugmentParams) -> np.ndarray:
    """``augment_batch`` into a NaN-filled array, so a position it does not write shows."""
    out = np.full(images.shape, np.nan, dtype=np.float16)
    assert augment_batch(images, packed(params), NormaliseTables.build(images.shape[2]),
                         out) is out
    return out


def assert_bitwise(actual, expected) -> None:
    actual = actual.numpy() if torch.is_tensor(actual) else actual
    assert actual.dtype == expected.dtype == np.float16 and actual.shape == expected.shape
    np.testing.assert_array_equal(actual.view(np.uint16), expected.view(np.uint16))


def filled(kind: str, count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    if kind == "random":
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)
    return np.full((count, height, width, 3), 0 if kind == "zeros" else 255, dtype=np.uint8)


def grid(corners, flips, boxes, height=HEIGHT, width=WIDTH):
    """One image per (fill, corner, flip, box): random, all-0 and all-255 pixels."""
    rows = list(itertools.product(FILLS, corners, flips, boxes))
    images = np.concatenate([filled(kind, 1, height, width, seed=i)
                             for i, (kind, *_) in enumerate(rows)])
    params = AugmentParams(np.array([c[0] for _, c, _, _ in rows], dtype=np.int32),
                           np.array([c[1] for _, c, _, _ in rows], dtype=np.int32),
                           np.array([f for _, _, f, _ in rows], dtype=bool),
                           np.array([b for *_, b in rows], dtype=np.int32).reshape(-1, 4))
    return images, params


ERASE_BOXES = {
    "none": (0, 0, 0, 0),
    "top border": (0, 5, 4, 6),
    "left border": (5, 0, 4, 6),
    "bottom border": (HEIGHT - 4, 5, 4, 6),
    "right border": (5, WIDTH - 6, 4, 6),
    "top-left corner": (0, 0, 3, 3),
    "bottom-right corner": (HEIGHT - 3, WIDTH - 3, 3, 3),
    "last pixel": (HEIGHT - 1, WIDTH - 1, 1, 1),
    "all but last row": (0, 0, HEIGHT - 1, WIDTH),
    "all but first row": (1, 0, HEIGHT - 1, WIDTH),
}


@numba.njit
def half_bits_of(values):
    bits = np.empty(values.shape, np.uint16)
    for i in range(values.size):
        bits[i] = _half_bits(values[i])
    return bits


def float32_cases() -> np.ndarray:
    """Random bit patterns, every float16 value, float16 midpoints ± 1 ulp, and specials."""
    rng = np.random.default_rng(16)
    count = 1_500_000
    anything = rng.integers(0, 2**32, count, dtype=np.uint32)
    # sign, an exponent from 2^-30 to 2^17 (float16 subnormals to overflow), any mantissa
    exponent = rng.integers(127 - 30, 127 + 18, count, dtype=np.uint32)
    near_half = ((rng.integers(0, 2, count, dtype=np.uint32) << 31) | (exponent << 23)
                 | rng.integers(0, 2**23, count, dtype=np.uint32))
    float32_subnormal = rng.integers(0, 2**32, 10_000, dtype=np.uint32) & np.uint32(0x807FFFFF)
    every_half = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    finite = every_half[np.isfinite(every_half)].astype(np.float64)
    finite = np.sort(finite[finite >= 0])  # +0 ... 65504
    midpoints = np.append((finite[:-1] + finite[1:]) / 2, 65520.0).astype(np.float32)
    assert 65520 in midpoints and 2.0**-25 in midpoints  # overflow tie, smallest subnormal tie
    ties = np.concatenate([midpoints, np.nextafter(midpoints, np.float32(np.inf)),
                           np.nextafter(midpoints, np.float32(0))])
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 65504, 65519.996, 65520,
                         65536, 2.0**-24, 2.0**-25, 2.0**-26, 2.0**-14, np.finfo(np.float32).max,
                         np.finfo(np.float32).tiny], dtype=np.float32)
    return np.concatenate([
        anything.view(np.float32), near_half.view(np.float32),
        float32_subnormal.view(np.float32), every_half.astype(np.float32),
        ties, -ties, specials, -specials,
    ])


def test_half_bits_equals_numpy_float16():
    """``_half_bits`` gives numpy's (and torch's) float16 bits for millions of float32 values."""
    values = float32_cases()
    bits = half_bits_of(values)
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16)
    nan = np.isnan(values)
    assert nan.sum() > 1000 and np.isnan(bits[nan].view(np.float16)).all()
    np.testing.assert_array_equal(bits[~nan], expected[~nan].view(np.uint16))
    half = torch.from_numpy(values[~nan]).half().numpy()
    np.testing.assert_array_equal(bits[~nan], half.view(np.uint16))
    # the cases reach overflow, both zeros and float16 subnormals
    assert np.isinf(expected).sum() > 1000 and (expected == 0).sum() > 1000
    assert (np.abs(expected) < np.finfo(np.float16).smallest_normal).sum() > 10_000


@pytest.mark.parametrize("count", [13, 3], ids=["split", "below-2x-workers"])
@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_fused_augment_threads_equal_single(count, workers, kind):
    """``FusedAugment`` on several threads = one thread = ``augment_batch``, into torch or numpy."""
    height, width = 64, 32
    rng = np.random.default_rng(count * workers)
    images = rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)
    params = draw_params(rng, count, height, width)
    expected = fused(images, params)
    for threads in (1, workers):
        augment = FusedAugment(width, workers=threads)
        try:
            if kind == "torch":
                out = torch.empty(images.shape, dtype=torch.float16)
            else:
                out = np.empty(images.shape, dtype=np.float16)
            assert augment(images, params, out) is out
        finally:
            augment.close()
        assert_bitwise(out, expected)


def test_packed_columns():
    """``packed``: int32 rows of top, left, flip 0/1, erase top, left, h, w."""
    params = draw_params(np.random.default_rng(5), 40, 64, 32)
    rows = packed(params)
    assert rows.dtype == np.int32 and rows.shape == (40, 7)
    np.testing.assert_array_equal(rows[:, 0], params.top)
    np.testing.assert_array_equal(rows[:, 1], params.left)
    np.testing.assert_array_equal(rows[:, 2], params.flip.astype(np.int32))
    assert set(rows[:, 2].tolist()) == {0, 1}
    np.testing.assert_array_equal(rows[:, 3:], params.erase)
    unpacked = AugmentParams(rows[:, 0], rows[:, 1], rows[:, 2] != 0, rows[:, 3:])
    np.testing.assert_array_equal(packed(unpacked), rows)
    np.testing.assert_array_equal(packed(identity_params(2)), [[PAD, PAD, 0, 0, 0, 0, 0]] * 2)


# name, images shape, out shape, params rows
MISMATCHES = [
    ("out fewer images", (8, 16, 8, 3), (7, 16, 8, 3), 8),
    ("out more images", (8, 16, 8, 3), (9, 16, 8, 3), 8),
    ("out other height", (8, 16, 8, 3), (8, 15, 8, 3), 8),
    ("out other width", (8, 16, 8, 3), (8, 16, 7, 3), 8),
    ("params short", (8, 16, 8, 3), (8, 16, 8, 3), 7),
    ("params long", (8, 16, 8, 3), (8, 16, 8, 3), 9),
    ("four channels", (8, 16, 8, 4), (8, 16, 8, 4), 8),
]


def mismatch_cases():
    for runner in ("augment_batch", "workers=1", "workers=2"):
        for name, image_shape, out_shape, count in MISMATCHES:
            yield pytest.param(runner, image_shape, out_shape, count, id=f"{runner}-{name}")


@pytest.mark.parametrize("runner,image_shape,out_shape,param_count", list(mismatch_cases()))
@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_shape_mismatch_raises(runner, image_shape, out_shape, param_count, kind):
    """Images vs out shape, params length or a channel count other than 3: ValueError."""
    images = np.zeros(image_shape, dtype=np.uint8)
    params = packed(identity_params(param_count))
    if kind == "torch":
        out = torch.empty(out_shape, dtype=torch.float16)
    else:
        out = np.empty(out_shape, dtype=np.float16)
    width = image_shape[2]
    if runner == "augment_batch":
        with pytest.raises(ValueError):
            augment_batch(images, params, NormaliseTables.build(width), out)
        return
    augment = FusedAugment(width, workers=int(runner[-1]))
    try:
        with pytest.raises(ValueError):
            augment(images, identity_params(param_count), out)
    finally:
        augment.close()


@pytest.mark.parametrize("problem", ["tables of another width", "three params columns",
                                     "crop corner past the padding", "erase box past the edge",
                                     "float32 out", "strided out"])
def test_inputs_the_kernel_cannot_handle_raise(problem):
    """The kernel does not check bounds: whatever would make it read or write out of bounds
    (or give wrong pixels) is refused before it runs."""
    images = np.zeros((4, 16, 8, 3), dtype=np.uint8)
    params = packed(identity_params(4))
    tables = NormaliseTables.build(8)
    out = np.empty((4, 16, 8, 3), dtype=np.float16)
    if problem == "tables of another width":
        tables = NormaliseTables.build(9)
    elif problem == "three params columns":
        params = params[:, :3]
    elif problem == "crop corner past the padding":
        params[1, 1] = 2 * PAD + 1
    elif problem == "erase box past the edge":
        params[2, 3:] = (10, 4, 7, 2)
    elif problem == "float32 out":
        out = np.empty((4, 16, 8, 3), dtype=np.float32)
    else:
        out = torch.empty((8, 16, 8, 3), dtype=torch.float16)[::2]
        assert out.shape == images.shape and not out.is_contiguous()
    with pytest.raises(ValueError):
        augment_batch(images, params, tables, out)


def test_other_statistics_are_refused_when_not_exact():
    """Mean/std for which v·scale + bias would not round like (v/255 − mean)/std: refused."""
    rng = np.random.default_rng(1)
    refused = 0
    for _ in range(50):
        mean, std = rng.uniform(0.2, 0.6, 3), rng.uniform(0.15, 0.3, 3)
        try:
            tables = NormaliseTables.build(4, mean, std)
        except ValueError:
            refused += 1
            continue
        values = np.arange(256, dtype=np.float32)[:, None]
        expected = ((values / 255 - mean.astype(np.float32)) / std.astype(np.float32))
        got = values * tables.scale[:3] + tables.bias[:3]
        np.testing.assert_array_equal(got.astype(np.float16), expected.astype(np.float16))
    assert refused > 0


def test_output_buffers_are_recycled_only_when_released():
    """A batch still referenced (even through a view) is never handed out again; a released
    one is, so steady-state training allocates nothing."""
    buffers = OutputBuffers(keep=2)
    shape = (2, 4, 3, 3)
    first = buffers.take(shape)
    view = first.permute(0, 3, 1, 2)[:1]
    address = first.data_ptr()
    del first
    second = buffers.take(shape)
    assert second.data_ptr() != address  # the view still holds the first buffer
    del view
    third = buffers.take(shape)
    assert third.data_ptr() == address and third.dtype == torch.float16
    assert buffers.take((1, 4, 3, 3)).shape == (1, 4, 3, 3)  # another shape: a new array
