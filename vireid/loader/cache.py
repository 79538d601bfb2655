"""The decoded training set held in memory (``--cache host|device``).

Every training image is decoded once (``dali_decode.py``) into ONE uint8 N×H×W×3 tensor;
each step then gathers its rows and augments them with the plan's parameters — nothing is
decoded again. Raw and PNG shards give the decoding path's pixels bit for bit. JPEG pixels
are the decoder's: on a CPU run the cache decodes with the fused loader's decoder (the same
bits, tested); on CUDA both decode with nvJPEG (``mixed``), whose batches an A100/H100 with
``hw_decoder_load`` > 0 split by position between the hardware JPEG engine and the CUDA
decoder, so one image may decode differently in the first pass and in a decoding run. What is
measured against libjpeg-turbo is a tolerance, not equality (docs/gpu-check.md).

- ``host`` on a CPU run: rows gathered with numpy and augmented by the fused kernel
  (``fused.py``), channel mixing included.
- ``host`` on CUDA: the tensor in (pageable) host memory; each step's rows are gathered into
  a small pinned buffer, copied to the GPU without waiting and augmented there
  (``tensor_augment``).
- ``device`` on CUDA: the tensor in the GPU's memory, gathered and augmented there. On a CPU
  run the device IS the host: ``device`` means ``host``.

On CUDA a step issues no host synchronisation: its rows and parameters reach the GPU in one
pinned, non-blocking copy (``tensor_augment.upload``).

Memory is estimated from the manifest (images × H × W × 3 bytes: SYSU-MM01 ≈ 4 GB, LLCM ≈
5.5 GB at 288×144) and a cache that would not fit is refused in one line before anything is
decoded (``memory.py``: MemAvailable, the memory cgroup, ``ulimit -v``); a failed allocation
is refused the same way. The host cache is not pinned, so it takes exactly its size
(PyTorch's pinned allocator rounds up to a power of two: LLCM's 5.5 GB would take 8.6 GB).
The first pass costs time once (``decode_seconds``), reported by the training run.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from vireid.choices import Cache
from vireid.loader.augment import AugmentParams
from vireid.loader.fused import FusedAugment, OutputBuffers, packed
from vireid.loader.memory import (  # noqa: F401  (HEADROOM, check_fits: callers of before)
    GB,
    HEADROOM,
    available_device_memory,
    available_host_memory,
    check_fits,
    check_host_fits,
    host_memory_limits,
    refuse_allocation,
)
from vireid.loader.tensor_augment import augment_tensor, normalisation, upload


def allocate(shape: tuple[int, int, int, int], where: str, device_id: int = 0) -> torch.Tensor:
    """The cache's uint8 tensor (pageable host memory, or the GPU's); an allocation that
    fails is refused in one line like a cache that would not fit."""
    try:
        if where == "device":
            return torch.empty(shape, dtype=torch.uint8, device=f"cuda:{device_id}")
        return torch.empty(shape, dtype=torch.uint8)
    except (RuntimeError, MemoryError) as error:  # torch.OutOfMemoryError is a RuntimeError
        raise refuse_allocation(shape, where, error) from None


class DecodedCache:
    """Every training image of a loader, decoded once; ``batches`` augments gathered rows."""

    def __init__(self, images: torch.Tensor, row_of: np.ndarray, where: str,
                 started: float):
        self.images = images  # uint8 N×H×W×3: host (pageable) or device
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
        if where == "device":
            check_fits(need, len(samples), shape[1:3], where,
                       available_device_memory(loader.device_id))
        else:
            check_host_fits(need, len(samples), shape[1:3], host_memory_limits(),
                            loader.backend.local_processes)
        images = allocate(shape, where, loader.device_id)
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
        return self.on_device(rows, params, torch.device(f"cuda:{loader.device_id}"))

    def on_device(self, rows: np.ndarray, params: AugmentParams,
                  device: torch.device) -> torch.Tensor:
        """``augmented`` on ``device`` without waiting for it: the device cache's rows travel
        with the parameters in one pinned, non-blocking copy; a host cache gathers its rows
        into pinned memory and copies them without waiting too."""
        if self._normalise is None:
            self._normalise = normalisation(device)  # once per run
        if self.images.device.type == device.type:
            step = upload(params, device, rows)
            return augment_tensor(self.images.index_select(0, step.rows), step,
                                  normalise=self._normalise)
        # PyTorch's caching host allocator does not reuse the pinned buffer before the copy
        # that reads it has run
        staging = torch.empty((len(rows), *self.images.shape[1:]), dtype=torch.uint8,
                              pin_memory=device.type == "cuda")
        torch.index_select(self.images, 0, torch.from_numpy(np.asarray(rows, np.int64)),
                           out=staging)
        return augment_tensor(staging.to(device, non_blocking=True), upload(params, device),
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
