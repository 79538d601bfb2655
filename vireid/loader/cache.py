"""The decoded training set held in memory (``cache`` host or device).

Every training image is decoded once (``dali_decode.py``) into ONE uint8 N×H×W×3 tensor;
each step then gathers its rows and augments them with the plan's parameters — nothing is
decoded again. Where the tensor lives and which augmenter reads it is the loader's route
(``route.py``): on a CPU run the host and the fused kernel; on CUDA the host (pageable; each
step's rows are gathered into a small pinned buffer and copied without waiting) or the
GPU's memory, and the tensor ops on the GPU. A CUDA step issues no host synchronisation
(``tensor_augment.TensorAugmenter``).

Raw and PNG shards give the decoding route's pixels bit for bit. JPEG pixels are the
decoder's: on a CPU run the cache decodes with the DALI-decoded route's decoder (the same
bits, tested); on CUDA both decode with nvJPEG (``mixed``), whose batches an A100/H100 with
``hw_decoder_load`` > 0 split by position between the hardware JPEG engine and the CUDA
decoder, so one image may decode differently in the first pass and in a decoding run. What is
measured against libjpeg-turbo is a tolerance, not equality (docs/gpu-check.md).

Memory is estimated from the manifest (images × H × W × 3 bytes: SYSU-MM01 ≈ 4 GB, LLCM ≈
5.5 GB at 288×144) and a cache that would not fit is refused in one line before anything is
decoded (``memory.py``: MemAvailable, the memory cgroup, ``ulimit -v``); a failed allocation
is refused the same way. The host cache is not pinned, so it takes exactly its size
(PyTorch's pinned allocator rounds up to a power of two: LLCM's 5.5 GB would take 8.6 GB).
The first pass costs time once, reported by the loader (``FirstPass``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch

from vireid.choices import Cache
from vireid.loader import memory
from vireid.loader.augmenters import Augmenter
from vireid.loader.memory import GB
from vireid.loader.plan import StepPlan
from vireid.loader.settings import DecoderOptions
from vireid.loader.source import ShardBytes
from vireid.records import TrainView


class DecodedCache:
    """Decoded images (uint8 N×H×W×3), the row of each global sample number in them (-1:
    not cached) and the augmenter that reads them; ``batch(plan)`` is a step's float16
    N×H×W×3 batch."""

    def __init__(self, images: torch.Tensor, row_of: np.ndarray, augmenter: Augmenter):
        self.images, self.row_of, self.augmenter = images, row_of, augmenter

    def batch(self, plan: StepPlan) -> torch.Tensor:
        return self.augmenter(self.images, plan.params, rows=self.row_of[plan.samples])


@dataclass(frozen=True)
class FirstPass:
    """The figures of the cache's first pass: images, bytes, where the cache lives, the
    seconds it took to decode and, once made, to the first batch (from the start)."""

    images: int
    nbytes: int
    where: str
    decode_seconds: float
    started: float = dataclasses.field(repr=False, compare=False)  # perf_counter at start
    first_batch_seconds: float | None = None

    def first_batch_made(self) -> FirstPass:
        """These figures with the time to the first batch, now (unchanged once set)."""
        if self.first_batch_seconds is not None:
            return self
        return dataclasses.replace(self, first_batch_seconds=time.perf_counter() - self.started)

    def summary(self) -> str:
        """E.g. "decoded 22,258 images (2.8 GB, host) in 41.2 s" (MB below a gigabyte,
        seconds to two decimals below ten)."""
        size = f"{self.nbytes / GB:.1f} GB" if self.nbytes >= GB else f"{self.nbytes / 1e6:.1f} MB"
        seconds = f"{self.decode_seconds:.2f}" if self.decode_seconds < 10 else \
            f"{self.decode_seconds:.1f}"
        return f"decoded {self.images:,} images ({size}, {self.where}) in {seconds} s"

    def report(self) -> dict:
        """The numbers of ``summary`` for machines (a metrics.jsonl row)."""
        return {"images": self.images, "bytes": self.nbytes, "where": self.where,
                "decode_seconds": round(self.decode_seconds, 3),
                "first_batch_seconds": None if self.first_batch_seconds is None
                else round(self.first_batch_seconds, 3)}


def training_samples(view: TrainView) -> np.ndarray:
    """Every sample of a training view (both modalities), once each, sorted."""
    return np.unique(np.concatenate([np.asarray(view.visible.samples, np.int64),
                                     np.asarray(view.infrared.samples, np.int64)]))


def allocate(shape: tuple[int, int, int, int], where: str, device_id: int = 0) -> torch.Tensor:
    """The cache's uint8 tensor (pageable host memory, or the GPU's); an allocation that
    fails is refused in one line like a cache that would not fit."""
    try:
        if where == "device":
            return torch.empty(shape, dtype=torch.uint8, device=f"cuda:{device_id}")
        return torch.empty(shape, dtype=torch.uint8)
    except (RuntimeError, MemoryError) as error:  # torch.OutOfMemoryError is a RuntimeError
        raise memory.refuse_allocation(shape, where, error) from None


def check_memory(shape: tuple[int, int, int, int], where: str, device_id: int,
                 processes: int) -> None:
    """Refuse, before decoding, a cache of ``shape`` that would not fit where it goes."""
    need, count = int(np.prod(shape)), shape[0]
    if where == "device":
        memory.check_fits(need, count, shape[1:3], where,
                          memory.available_device_memory(device_id))
    else:
        memory.check_host_fits(need, count, shape[1:3], memory.host_memory_limits(), processes)


def decode_cache(source: ShardBytes, samples: np.ndarray, where: Cache, *, device: str,
                 device_id: int = 0, num_threads: int = 1,
                 decoder: DecoderOptions | None = None,
                 processes: int = 1) -> tuple[torch.Tensor, np.ndarray, FirstPass]:
    """The first pass: ``samples`` decoded once into a tensor in ``where`` (host or device,
    after checking it fits there; ``processes``: the run's processes on this machine, each
    holding a host cache), by the run's decoder on ``device``. → (images, the row of each
    global sample number, the pass's figures)."""
    from vireid.loader.dali_decode import decode_samples

    started = time.perf_counter()
    where = str(Cache(where))
    shape = (len(samples), source.manifest.height, source.manifest.width, 3)
    check_memory(shape, where, device_id, processes)
    images = allocate(shape, where, device_id)
    decode_samples(source, samples, images, device=device, device_id=device_id,
                   num_threads=num_threads, decoder=decoder)
    if device == "cuda":
        torch.cuda.synchronize(device_id)
    row_of = np.full(len(source.manifest.samples), -1, dtype=np.int64)
    row_of[samples] = np.arange(len(samples))
    figures = FirstPass(len(samples), images.numel(), where, time.perf_counter() - started,
                        started)
    return images, row_of, figures
