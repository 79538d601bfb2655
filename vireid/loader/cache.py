"""The decoded training set held in memory (``--cache host|device``).

Every training image is decoded once (``dali_decode.py``) into ONE uint8 N×H×W×3 tensor;
each step then gathers its rows and augments them with the plan's parameters — nothing is
decoded again. The pixels are the decoding path's for the same plan (bit for bit on raw and
PNG shards, and on JPEG where the same decoder runs).

- ``host`` on a CPU run: rows gathered with numpy and augmented by the fused kernel
  (``fused.py``), channel mixing included.
- ``host`` on CUDA: the tensor in pinned host memory; each step's rows are copied to the GPU
  and augmented there (``tensor_augment``).
- ``device`` on CUDA: the tensor in the GPU's memory, gathered and augmented there. On a CPU
  run the device IS the host: ``device`` means ``host``.

Memory is estimated from the manifest (images × H × W × 3 bytes: SYSU-MM01 ≈ 4 GB, LLCM ≈
5.5 GB at 288×144) and a cache that would not fit is refused before anything is decoded.
The first pass costs time once (``decode_seconds``), reported by the training run.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from vireid.choices import Cache
from vireid.errors import VireidError
from vireid.loader.augment import AugmentParams
from vireid.loader.fused import FusedAugment, OutputBuffers, packed
from vireid.loader.tensor_augment import augment_tensor, normalisation

GB = 1e9
# what must stay free besides the cache: a fraction of what is available, at least so much
HEADROOM = {"host": (0.10, 1.0 * GB), "device": (0.25, 2.0 * GB)}


def available_host_memory() -> int:
    """Bytes the OS can give without swapping: MemAvailable, else free physical pages."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def available_device_memory(device_id: int) -> int:
    return torch.cuda.mem_get_info(device_id)[0]


def check_fits(need: int, count: int, shape: tuple[int, int], where: str,
               available: int, processes: int = 1) -> None:
    """Refuse (one line, numbers in GB, the way out) a cache that would not fit; a host
    cache is held once per process of the run on this machine (``processes``)."""
    fraction, least = HEADROOM[where]
    keep = max(fraction * available, least)
    copies = processes if where == "host" else 1
    if copies * need + keep > available:
        memory = "host memory" if where == "host" else "GPU memory"
        other = "--cache none" + (" or --cache host" if where == "device" else "")
        each = f" in each of {copies} processes" if copies > 1 else ""
        raise VireidError("cache", f"the decoded training set needs {need / GB:.1f} GB{each} "
                          f"({count:,} images × {shape[0]}×{shape[1]}×3), but only "
                          f"{available / GB:.1f} GB of {memory} is available (keeping "
                          f"{keep / GB:.1f} GB free): use {other}")


class DecodedCache:
    """Every training image of a loader, decoded once; ``batches`` augments gathered rows."""

    def __init__(self, images: torch.Tensor, row_of: np.ndarray, where: str,
                 started: float):
        self.images = images  # uint8 N×H×W×3: host (pinned on CUDA runs) or device
        self.row_of = row_of  # global sample number → row of ``images`` (-1: not cached)
        self.where = where  # "host" or "device"
        self.count, self.nbytes = len(images), images.numel()
        self.decode_seconds = time.perf_counter() - started
        self.first_batch_seconds: float | None = None  # from the start of decoding
        self._started = started
        self._kernel: FusedAugment | None = None
        self._buffers = OutputBuffers()
        self._normalise = None  # scale and bias on the GPU, made at the first CUDA step

    @classmethod
    def build(cls, loader) -> DecodedCache:
        """Decode the loader's training view (both modalities) once, after checking that the
        decoded set fits where ``loader.cache`` puts it."""
        from vireid.loader.dali_decode import decode_samples

        started = time.perf_counter()
        view = loader.view
        samples = np.unique(np.concatenate([np.asarray(view.visible.samples, np.int64),
                                            np.asarray(view.infrared.samples, np.int64)]))
        cuda = loader.device == "cuda"
        where = "device" if cuda and Cache(loader.cache) is Cache.DEVICE else "host"
        shape = (len(samples), loader.height, loader.width, 3)
        need = int(np.prod(shape))
        available = available_device_memory(loader.device_id) if where == "device" \
            else available_host_memory()
        check_fits(need, len(samples), shape[1:3], where, available,
                   loader.backend.local_processes)
        if where == "device":
            images = torch.empty(shape, dtype=torch.uint8, device=f"cuda:{loader.device_id}")
        else:
            images = torch.empty(shape, dtype=torch.uint8, pin_memory=cuda)
        decode_samples(loader.source, samples, images, device=loader.device,
                       device_id=loader.device_id, num_threads=loader.num_threads,
                       decoder=loader.backend.decoder)
        if cuda:
            torch.cuda.synchronize(loader.device_id)
        row_of = np.full(len(loader.source.manifest.samples), -1, dtype=np.int64)
        row_of[samples] = np.arange(len(samples))
        return cls(images, row_of, where, started)

    def summary(self) -> str:
        """E.g. "decoded 22,258 images (2.8 GB, host) in 41.2 s" (MB below a gigabyte,
        seconds to two decimals below ten)."""
        size = f"{self.nbytes / GB:.1f} GB" if self.nbytes >= GB else f"{self.nbytes / 1e6:.1f} MB"
        seconds = f"{self.decode_seconds:.2f}" if self.decode_seconds < 10 else \
            f"{self.decode_seconds:.1f}"
        return f"decoded {self.count:,} images ({size}, {self.where}) in {seconds} s"

    def report(self) -> dict:
        """The numbers of ``summary`` for machines (a metrics.jsonl row)."""
        return {"images": self.count, "bytes": self.nbytes, "where": self.where,
                "decode_seconds": round(self.decode_seconds, 3),
                "first_batch_seconds": None if self.first_batch_seconds is None
                else round(self.first_batch_seconds, 3)}

    def batches(self, loader):
        """(visible, infrared) of the steps from ``loader.step`` to the end of the epoch."""
        for step in range(loader.step, loader.sampler.steps_per_epoch):
            plan = loader.plan(loader.epoch, step)
            out = self.augmented(loader, self.row_of[plan.samples], plan.params)
            if self.first_batch_seconds is None:
                self.first_batch_seconds = time.perf_counter() - self._started
            yield loader.split(out)

    def augmented(self, loader, rows: np.ndarray, params: AugmentParams) -> torch.Tensor:
        """The cached images ``rows`` augmented with ``params``: float16 N×H×W×3 on the
        loader's device."""
        if loader.device != "cuda":
            return self._on_cpu(loader, rows, params)
        device = torch.device(f"cuda:{loader.device_id}")
        if self._normalise is None:
            self._normalise = normalisation(device)
        index = torch.as_tensor(rows, device=self.images.device)
        if self.images.is_cuda:
            return augment_tensor(self.images.index_select(0, index), params,
                                  normalise=self._normalise)
        # gathered into pinned memory (PyTorch's caching host allocator: it is not reused
        # before the copy that reads it has run), so the copy is asynchronous
        staging = torch.empty((len(rows), *self.images.shape[1:]), dtype=torch.uint8,
                              pin_memory=True)
        torch.index_select(self.images, 0, index, out=staging)
        return augment_tensor(staging.to(device, non_blocking=True), params,
                              normalise=self._normalise)

    def _on_cpu(self, loader, rows: np.ndarray, params: AugmentParams) -> torch.Tensor:
        pixels = self.images.numpy()[rows]
        out = self._buffers.take(pixels.shape)
        self._fused(loader)(pixels, packed(params), out, params.mix, params.fill)
        return out

    def _fused(self, loader) -> FusedAugment:
        """The loader's kernel (its threads), or a single-threaded one of our own (nothing
        to close) when the loader has none (``cpu_augment="dali"``)."""
        if getattr(loader, "_augment", None) is not None:
            return loader._augment
        if self._kernel is None:
            self._kernel = FusedAugment(loader.width, 1)
        return self._kernel


def cache_report(loader) -> DecodedCache | None:
    """The loader's decoded cache once built (None: no cache, or not built yet)."""
    return getattr(loader, "_cached", None)
