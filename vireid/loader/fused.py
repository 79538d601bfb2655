"""The CPU training augmentation of SPEC §4 as ONE compiled pass over each decoded batch.

DALI's CPU operators are built for correctness, not speed: on 2 cores its
``crop_mirror_normalize`` writing float16 handles ~4,700 images/s on its own (uint8 ~12,900),
less than the JPEG decoder it follows. This kernel reads each uint8 pixel once and writes its
float16 value once: zero-pad 10 → crop at (top, left) → flip → normalise → float16 → erase,
for a whole batch, without the GIL, at about the speed of copying the batch (``benchmarks``).

Float16 values come from LLVM's ``fptrunc`` (vectorised to the CPU's conversion instruction,
e.g. F16C's ``vcvtps2ph``): round to nearest even, the same bits as torch's ``.half()``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from vireid.constants import IMAGENET_MEAN, IMAGENET_STD
from vireid.loader.augment import PAD, AugmentParams


def packed(params: AugmentParams) -> np.ndarray:
    """Per image one int32 row: crop top, crop left (in the padded image), flip, erase box
    (top, left, height, width) — the kernel's argument, also carried through DALI."""
    return np.concatenate([np.stack([params.top, params.left, params.flip.astype(np.int32)],
                                    axis=1), params.erase], axis=1).astype(np.int32)


@dataclass(frozen=True)
class NormaliseTables:
    """Per position of an H×W×3 row: the scale and bias of its channel, and the float16 bits
    of a zero (padding) pixel, so the inner loops need no channel arithmetic."""

    scale: np.ndarray
    bias: np.ndarray
    pad_bits: np.ndarray

    @classmethod
    def build(cls, width: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> NormaliseTables:
        mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        scale = (np.float32(1) / (np.float32(255) * std)).astype(np.float32)
        bias = (-mean / std).astype(np.float32)
        return cls(np.tile(scale, width), np.tile(bias, width),
                   np.tile(bias.astype(np.float16).view(np.uint16), width))


def augment_batch(images: np.ndarray, params: np.ndarray, tables: NormaliseTables, out):
    """uint8 N×H×W×3 ``images`` + ``packed`` params → ``out`` (a float16 N×H×W×3 torch tensor
    or numpy array, written in place)."""
    target = out.numpy() if hasattr(out, "numpy") else out
    if images.shape != target.shape or images.shape[-1] != 3 or len(params) != len(images):
        raise ValueError(f"images {images.shape}, params {params.shape}, out {target.shape}")
    _augment(np.ascontiguousarray(images), np.ascontiguousarray(params, dtype=np.int64),
             tables.scale, tables.bias, tables.pad_bits, target.view(np.uint16))
    return out


class FusedAugment:
    """``augment_batch`` for images of one width, split over ``workers`` threads (the kernel
    runs without the GIL)."""

    def __init__(self, width: int, workers: int = 1):
        self.tables = NormaliseTables.build(width)
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, "vireid-augment") if workers > 1 else None

    def __call__(self, images: np.ndarray, params: np.ndarray, out):
        if self._pool is None or len(images) < 2 * self.workers:
            return augment_batch(images, params, self.tables, out)
        bounds = np.linspace(0, len(images), self.workers + 1).astype(int)
        parts = [self._pool.submit(augment_batch, images[a:b], params[a:b], self.tables,
                                   out[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        for part in parts:
            part.result()
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)


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


@njit(nogil=True, cache=True)
def _augment(images, params, scale, bias, pad_bits, out):
    count, height, width, _ = images.shape
    row = 3 * width
    staged = np.empty(row, np.uint8)
    for n in range(count):
        dy, dx, flip = params[n, 0] - PAD, params[n, 1] - PAD, params[n, 2] != 0
        first, stop = max(0, dx), min(width, width + dx)  # source columns in the window
        # output columns [left, right) show them: column j shows source j + dx, or
        # source width - 1 - j + dx when flipped
        left = width - stop + dx if flip else first - dx
        right = left + stop - first
        for i in range(height):
            target = out[n, i].reshape(row)
            y = i + dy
            if y < 0 or y >= height:
                target[:] = pad_bits
                continue
            a, b = 3 * left, 3 * right
            if flip:
                _mirror_pixels(images[n, y].reshape(row), first, stop, staged[a:b])
                pixels = staged[a:b]
            else:
                pixels = images[n, y, first:stop].reshape(b - a)
            target[:a] = pad_bits[:a]
            target[b:] = pad_bits[b:]
            window, window_scale, window_bias = target[a:b], scale[a:b], bias[a:b]
            for k in range(b - a):  # contiguous and branch-free: vectorised
                window[k] = _half_bits(pixels[k] * window_scale[k] + window_bias[k])
        top, start, h, w = params[n, 3], params[n, 4], params[n, 5], params[n, 6]
        out[n, top:top + h, start:start + w, :] = 0  # erasing, after normalisation
    return out
