"""The CPU training augmentation as ONE compiled pass over each decoded batch.

The augmentation: docs/recipe.md, Augmentation.

DALI's CPU operators are built for correctness, not speed: on 2 cores its
``crop_mirror_normalize`` writing float16 handles ~5,500 images/s on its own (uint8 ~20,000),
well under the ~9,500 images/s of the JPEG decoder it follows. This kernel reads each uint8
pixel once and writes its float16 value once: zero-pad 10 → crop at (top, left) → flip →
(DEEN's gray, on the uint8 values) → normalise → float16 → erase, for a whole batch, without
the GIL, at about the speed of copying the batch (``benchmarks``). The ``fused`` member of
the augmenter family (``augmenters.py``); ``fused_augment.py`` splits a batch over threads.

Float16 values come from LLVM's ``fptrunc`` (vectorised to the CPU's conversion instruction,
e.g. F16C's ``vcvtps2ph``): round to nearest even, the same bits as torch's ``.half()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from vireid.constants import IMAGENET_MEAN, IMAGENET_STD
from vireid.loader.augment import ERASE_FILL, PAD, PIL_LUMA, PIL_ROUND, PIL_SHIFT, AugmentParams

LUMA_R, LUMA_G, LUMA_B = PIL_LUMA


def packed(params: AugmentParams) -> np.ndarray:
    """Per image one int32 row: crop top, crop left (in the padded image), flip, erase box
    (top, left, height, width) — the kernel's argument."""
    return np.concatenate([np.stack([params.top, params.left, params.flip.astype(np.int32)],
                                    axis=1), params.erase], axis=1).astype(np.int32)


@dataclass(frozen=True)
class NormaliseTables:
    """Per position of an H×W×3 row: the scale and bias of its channel, and the float16 bits
    of a zero (padding) pixel, so the inner loops need no channel arithmetic."""

    scale: np.ndarray
    bias: np.ndarray
    pad_bits: np.ndarray

    @property
    def width(self) -> int:
        return len(self.scale) // 3

    @classmethod
    def build(cls, width: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> NormaliseTables:
        """The kernel computes v·scale + bias; refuse statistics for which that is not the
        reference's float16 of (v/255 − mean)/std for every one of the 3×256 values."""
        mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        scale = (np.float32(1) / (np.float32(255) * std)).astype(np.float32)
        bias = (-mean / std).astype(np.float32)
        values = np.arange(256, dtype=np.float32)[:, None]
        reference = ((values / np.float32(255) - mean) / std).astype(np.float16)
        if not np.array_equal((values * scale + bias).astype(np.float16), reference):
            raise ValueError(f"mean {mean.tolist()}, std {std.tolist()}: the fused kernel "
                             "would not reproduce (v/255 - mean)/std exactly")
        return cls(np.tile(scale, width), np.tile(bias, width),
                   np.tile(bias.astype(np.float16).view(np.uint16), width))


def augment_batch(images: np.ndarray, params: np.ndarray, tables: NormaliseTables, out,
                  mix: np.ndarray | None = None, fill=ERASE_FILL,
                  gray: np.ndarray | None = None):
    """uint8 N×H×W×3 ``images`` + ``packed`` params → ``out`` (a C-contiguous float16
    N×H×W×3 torch tensor or numpy array, written in place). ``mix`` (N×3×3 float32),
    ``fill`` and ``gray`` (N flags): the channel mixing, erase fill and gray of
    ``AugmentParams``."""
    _run(images, params, tables, _check(images, params, tables, out, mix, gray), mix, fill,
         gray)
    return out


def check_params(images: np.ndarray, params: AugmentParams, tables: NormaliseTables,
                 out) -> np.ndarray:
    """``augment_batch``'s checks for ``AugmentParams``; → ``out`` as numpy (the target of
    ``run_params``, which does not check)."""
    return _check(images, packed(params), tables, out, params.mix, params.gray)


def run_params(images: np.ndarray, params: AugmentParams, tables: NormaliseTables,
               target: np.ndarray) -> None:
    """The kernel with ``AugmentParams`` on arguments ``check_params`` passed: a part of a
    checked batch may run on its own thread (``fused_augment.FusedAugment``)."""
    _run(images, packed(params), tables, target, params.mix, params.fill, params.gray)


def _run(images: np.ndarray, params: np.ndarray, tables: NormaliseTables, target,
         mix: np.ndarray | None = None, fill=ERASE_FILL, gray: np.ndarray | None = None) -> None:
    """The kernel on already checked arguments (``target``: the float16 numpy output).
    Without mixing and with a zero fill: the one-pass float16 kernel; otherwise the float32
    row kernel (erase with ``fill`` and mix before the single rounding to float16). Both
    gray the uint8 values of the images flagged in ``gray`` first."""
    images = np.ascontiguousarray(images)
    params = np.ascontiguousarray(params, dtype=np.int64)
    gray = np.zeros(len(images), np.uint8) if gray is None else \
        np.ascontiguousarray(gray, dtype=np.uint8)
    if mix is None and not any(fill):
        _augment(images, params, gray, tables.scale, tables.bias, tables.pad_bits,
                 target.view(np.uint16))
        return
    if mix is None:
        mix = np.repeat(np.eye(3, dtype=np.float32)[None], len(images), axis=0)
    _augment_mixed(images, params, gray, np.ascontiguousarray(mix, dtype=np.float32),
                   np.asarray(fill, dtype=np.float32), tables.scale, tables.bias,
                   target.view(np.uint16))


def _check(images: np.ndarray, params: np.ndarray, tables: NormaliseTables, out,
           mix: np.ndarray | None = None, gray: np.ndarray | None = None) -> np.ndarray:
    """Everything the kernel (which does not check bounds) relies on; → ``out`` as numpy."""
    target = out.numpy() if hasattr(out, "numpy") else out
    count, height, width = images.shape[:3] if images.ndim == 4 else (0, 0, 0)
    problems = [
        (images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8,
         "images must be uint8 N×H×W×3"),
        (target.shape != images.shape, "out must have the images' shape"),
        (target.dtype != np.float16 or not target.flags.c_contiguous,
         "out must be C-contiguous float16"),
        (params.shape != (count, 7), "params must be one packed row of 7 per image"),
        (tables.width != width, f"tables are for width {tables.width}"),
        (mix is not None and np.shape(mix) != (count, 3, 3), "mix must be one 3×3 per image"),
        (gray is not None and np.shape(gray) != (count,), "gray must be one flag per image"),
    ]
    for failed, message in problems:
        if failed:
            raise ValueError(f"{message} (images {images.shape} {images.dtype}, params "
                             f"{params.shape}, out {target.shape} {target.dtype})")
    top, left, _, box_top, box_left, box_h, box_w = np.asarray(params, np.int64).T
    inside = ((top >= 0) & (top <= 2 * PAD) & (left >= 0) & (left <= 2 * PAD)
              & (box_top >= 0) & (box_left >= 0) & (box_h >= 0) & (box_w >= 0)
              & (box_top + box_h <= height) & (box_left + box_w <= width))
    if not inside.all():
        raise ValueError(f"crop corner or erase box outside the image: {params[~inside][0]}")
    return target


@intrinsic
def _half_bits(typing_context, value):
    """float32 → the bits of the nearest float16 (LLVM ``fptrunc`` + bitcast)."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, arguments):
        return builder.bitcast(builder.fptrunc(arguments[0], ir.HalfType()), ir.IntType(16))

    return types.uint16(types.float32), codegen


@njit(nogil=True, cache=True, inline="always")
def _mirror_pixels(row, first, stop, mirrored):
    """Pixels [first, stop) of a flat W·3 row, in reverse order, into ``mirrored``."""
    last = stop - 1
    for x in range(first, stop):  # this loop shape measured 2-3x faster than the others
        j = last - x
        mirrored[3 * j] = row[3 * x]
        mirrored[3 * j + 1] = row[3 * x + 1]
        mirrored[3 * j + 2] = row[3 * x + 2]


@njit(nogil=True, cache=True, inline="always")
def _crop_window(param, width):
    """One image's packed row → (dy, flip, first, stop, left, right): the crop's row offset
    in the image, the flip, the source columns [first, stop) inside the crop window and the
    output columns [left, right) that show them (column j shows source j + dx, or
    width - 1 - j + dx when flipped; none for images narrower than PAD)."""
    dy, dx, flip = param[0] - PAD, param[1] - PAD, param[2] != 0
    first = max(0, dx)
    stop = max(first, min(width, width + dx))
    left = 0 if stop == first else width - stop + dx if flip else first - dx
    return dy, flip, first, stop, left, left + stop - first


@njit(nogil=True, cache=True, inline="always")
def _source_row(image_row, flip, first, stop, staged):
    """The uint8 values the output row shows, in output order (``staged``: a buffer of
    their length, used when flipped)."""
    if flip:
        _mirror_pixels(image_row.reshape(image_row.size), first, stop, staged)
        return staged
    return image_row[first:stop].reshape(staged.size)


@njit(nogil=True, cache=True, inline="always")
def _gray_pixels(pixels, grayed):
    """PIL's convert('L') of every pixel of a flat uint8 row (integer luma, exact), copied
    into its three channels of ``grayed`` (a buffer of the row's length)."""
    for j in range(pixels.size // 3):
        luma = (LUMA_R * np.int32(pixels[3 * j]) + LUMA_G * np.int32(pixels[3 * j + 1])
                + LUMA_B * np.int32(pixels[3 * j + 2]) + PIL_ROUND) >> PIL_SHIFT
        grayed[3 * j] = luma
        grayed[3 * j + 1] = luma
        grayed[3 * j + 2] = luma
    return grayed


@njit(nogil=True, cache=True)
def _augment(images, params, gray, scale, bias, pad_bits, out):
    count, height, width, _ = images.shape
    row = 3 * width
    staged = np.empty(row, np.uint8)
    grayed = np.empty(row, np.uint8)
    for n in range(count):
        dy, flip, first, stop, left, right = _crop_window(params[n], width)
        a, b = 3 * left, 3 * right
        for i in range(height):
            target = out[n, i].reshape(row)
            y = i + dy
            if y < 0 or y >= height:
                target[:] = pad_bits
                continue
            pixels = _source_row(images[n, y], flip, first, stop, staged[a:b])
            if gray[n]:  # padding is black, which the gray leaves black
                pixels = _gray_pixels(pixels, grayed[a:b])
            target[:a] = pad_bits[:a]
            target[b:] = pad_bits[b:]
            window, window_scale, window_bias = target[a:b], scale[a:b], bias[a:b]
            for k in range(b - a):  # contiguous and branch-free: vectorised
                window[k] = _half_bits(pixels[k] * window_scale[k] + window_bias[k])
        top, start, h, w = params[n, 3], params[n, 4], params[n, 5], params[n, 6]
        out[n, top:top + h, start:start + w, :] = 0  # erasing, after normalisation
    return out


@njit(nogil=True, cache=True)
def _mix_kind(m):
    """-1: identity; 0-2: channel k copied to all; 3: anything else (computed in full)."""
    for kind in range(-1, 3):
        matches = True
        for r in range(3):
            for c in range(3):
                one = c == r if kind < 0 else c == kind
                matches = matches and m[r, c] == (1.0 if one else 0.0)
        if matches:
            return kind
    return 3


@njit(nogil=True, cache=True)
def _augment_mixed(images, params, gray, mix, fill, scale, bias, out):
    """``_augment`` with an erase fill and a 3×3 channel mix per image: each output row is
    built in float32 (pad/crop/flip, gray, normalise, fill the erased columns), mixed as
    (m0·x0 + m1·x1) + m2·x2 per output channel, then rounded once to float16.

    An identity or a copy of channel k is that formula's exact result (normalised values are
    finite and never -0: v·scale + bias rounds an exact zero to +0, padding and fill are
    non-zero), so those skip the arithmetic."""
    count, height, width, _ = images.shape
    row = 3 * width
    values = np.empty(row, np.float32)
    staged = np.empty(row, np.uint8)
    grayed = np.empty(row, np.uint8)
    for n in range(count):
        dy, flip, first, stop, left, right = _crop_window(params[n], width)
        a, b = 3 * left, 3 * right
        top, start, h, w = params[n, 3], params[n, 4], params[n, 5], params[n, 6]
        m = mix[n]
        kind = _mix_kind(m)
        for i in range(height):
            y = i + dy
            if y < 0 or y >= height:
                values[:] = bias
            else:
                pixels = _source_row(images[n, y], flip, first, stop, staged[a:b])
                if gray[n]:
                    pixels = _gray_pixels(pixels, grayed[a:b])
                values[:a] = bias[:a]
                values[b:] = bias[b:]
                window, window_scale, window_bias = values[a:b], scale[a:b], bias[a:b]
                for k in range(b - a):
                    window[k] = pixels[k] * window_scale[k] + window_bias[k]
            if top <= i < top + h:
                for j in range(start, start + w):
                    values[3 * j] = fill[0]
                    values[3 * j + 1] = fill[1]
                    values[3 * j + 2] = fill[2]
            target = out[n, i].reshape(row)
            if kind == -1:
                for k in range(row):
                    target[k] = _half_bits(values[k])
            elif kind < 3:
                for j in range(width):
                    bits = _half_bits(values[3 * j + kind])
                    target[3 * j] = bits
                    target[3 * j + 1] = bits
                    target[3 * j + 2] = bits
            else:
                for j in range(width):
                    x0, x1, x2 = values[3 * j], values[3 * j + 1], values[3 * j + 2]
                    for c in range(3):
                        target[3 * j + c] = _half_bits((m[c, 0] * x0 + m[c, 1] * x1)
                                                       + m[c, 2] * x2)
    return out
