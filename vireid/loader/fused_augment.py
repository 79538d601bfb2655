"""The fused kernel (``fused.py``) as the ``fused`` augmenter: a batch split over threads
(the kernel runs without the GIL) into recycled float16 output buffers."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from vireid.loader.augment import AugmentParams
from vireid.loader.augmenters import gathered
from vireid.loader.fused import NormaliseTables, check_params, run_params


class FusedAugment:
    """The kernel for images of one width, each batch split over ``workers`` threads:
    checked once, then each thread runs the kernel on its images' share of the params."""

    def __init__(self, width: int, workers: int = 1):
        self.tables = NormaliseTables.build(width)
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, "vireid-augment") if workers > 1 else None

    def __call__(self, images: np.ndarray, params: AugmentParams, out):
        """uint8 N×H×W×3 ``images`` + their ``params`` → ``out`` (C-contiguous float16
        N×H×W×3, torch or numpy, written in place and returned)."""
        target = check_params(images, params, self.tables, out)
        if self._pool is None or len(images) < 2 * self.workers:
            run_params(images, params, self.tables, target)
            return out
        bounds = np.linspace(0, len(images), self.workers + 1).astype(int)
        parts = [self._pool.submit(run_params, images[a:b], params.take(np.arange(a, b)),
                                   self.tables, target[a:b])
                 for a, b in zip(bounds[:-1], bounds[1:])]
        for part in parts:
            part.result()
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)


class OutputBuffers:
    """float16 output batches, recycled once nothing refers to them any more.

    A fresh 16 MB tensor per batch costs a page fault per 4 KB page on first write (~40 % of
    the kernel's own time here). Batches are numpy arrays seen through ``torch.from_numpy``:
    every tensor or view of one keeps a reference to its array, so an array whose only
    reference is this pool is free to overwrite, and a caller may keep batches as long as it
    likes."""

    def __init__(self, keep: int = 4):
        self.keep = keep
        self._arrays: list[np.ndarray] = []

    def take(self, shape: tuple[int, ...]) -> torch.Tensor:
        for position in range(len(self._arrays)):
            # references: the list and getrefcount's argument — nobody else
            if self._arrays[position].shape == shape and sys.getrefcount(
                    self._arrays[position]) == 2:
                return torch.from_numpy(self._arrays[position])
        array = np.empty(shape, dtype=np.float16)
        if len(self._arrays) < self.keep:
            self._arrays.append(array)
        return torch.from_numpy(array)


class FusedAugmenter:
    """The ``fused`` member (``augmenters.Augmenter``): the CPU (``device`` and
    ``device_id`` are for the family's common signature), ``threads`` workers; the batches
    are recycled buffers (``OutputBuffers``), valid for as long as they are held."""

    def __init__(self, *, device: str = "cpu", device_id: int = 0, threads: int = 1):
        self.threads = threads
        self._kernels: dict[int, FusedAugment] = {}  # per image width: normalisation tables
        self._buffers = OutputBuffers()

    def __call__(self, images, params: AugmentParams,
                 rows: np.ndarray | None = None) -> torch.Tensor:
        pixels = gathered(images, rows)
        out = self._buffers.take(pixels.shape)
        return self._kernel(pixels.shape[2])(pixels, params, out)

    def _kernel(self, width: int) -> FusedAugment:
        if width not in self._kernels:
            self._kernels[width] = FusedAugment(width, self.threads)
        return self._kernels[width]

    def close(self) -> None:
        """Stop the kernels' threads."""
        for kernel in self._kernels.values():
            kernel.close()
