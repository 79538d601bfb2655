"""Decode a list of stored samples ONCE, batch by batch, into one preallocated uint8 tensor.

The decoded cache's first pass (``cache.py``). JPEG and PNG go through DALI's image decoder
(``mixed``, i.e. nvJPEG, on CUDA; the CPU decoder otherwise — the decoder of the uncached
fused loader, so the pixels are the same); raw shards hold the pixels already and are only
reshaped. A first pass that takes more than a few seconds shows a progress bar on stderr.
"""

from __future__ import annotations

import sys
import time
from collections import deque

import numpy as np
import torch

from vireid.errors import VireidError
from vireid.loader.dali_errors import explain
from vireid.loader.dali_pipes import _decode, _pipeline, import_dali
from vireid.loader.handoff import run_pipeline
from vireid.loader.settings import DecoderOptions
from vireid.loader.source import ShardBytes
from vireid.shards.encode import Encoding

DECODE_BATCH = 256  # images per DALI iteration of the first pass
QUIET_SECONDS = 3.0  # a first pass shorter than this shows no progress bar


class DecodeProgress:
    """A rich progress bar on stderr that appears only once decoding has taken
    ``QUIET_SECONDS`` (and only on a terminal); ``with`` closes it."""

    def __init__(self, total: int, what: str = "decoding the training set"):
        self.total, self.what, self.done = total, what, 0
        self.started = time.perf_counter()
        self._bar = self._task = None

    def advance(self, count: int) -> None:
        self.done += count
        if self._bar is None and time.perf_counter() - self.started > QUIET_SECONDS and \
                sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._bar = Progress("{task.description}", BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=Console(stderr=True),
                                 transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)

    def __enter__(self) -> DecodeProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


class _Chunks:
    """external_source callback: iteration i → the stored bytes of the i-th chunk."""

    def __init__(self, source: ShardBytes, samples: np.ndarray, batch: int):
        self.source, self.samples, self.batch = source, samples, batch
        self.recent: deque[np.ndarray] = deque(maxlen=4)  # where a decode failure is sought

    def __call__(self, info):
        chunk = self.samples[info.iteration * self.batch:(info.iteration + 1) * self.batch]
        if info.epoch_idx > 0 or len(chunk) == 0:
            raise StopIteration
        self.recent.append(chunk)
        return self.source.read_images(chunk)


def decode_samples(source: ShardBytes, samples: np.ndarray, target: torch.Tensor, *,
                   device: str, device_id: int, num_threads: int,
                   decoder: DecoderOptions | None = None) -> None:
    """Sample ``samples[i]`` decoded into ``target[i]`` (uint8 N×H×W×3, host or device), by
    the training run's decoder (``decoder``: where and with which options)."""
    samples = np.asarray(samples, np.int64)
    with DecodeProgress(len(samples)) as progress:
        if source.manifest.encoding is Encoding.RAW:
            _copy_raw(source, samples, target, progress)
        else:
            _decode_with_dali(source, samples, target, progress, device=device,
                              device_id=device_id, num_threads=num_threads, decoder=decoder)


def _copy_raw(source: ShardBytes, samples: np.ndarray, target: torch.Tensor,
              progress: DecodeProgress) -> None:
    shape = tuple(target.shape[1:])
    for start in range(0, len(samples), DECODE_BATCH):
        chunk = samples[start:start + DECODE_BATCH]
        pixels = np.stack([data.reshape(shape) for data in source.read_images(chunk)])
        target[start:start + len(chunk)].copy_(torch.from_numpy(pixels))
        progress.advance(len(chunk))


def _decode_with_dali(source: ShardBytes, samples: np.ndarray, target: torch.Tensor,
                      progress: DecodeProgress, *, device: str, device_id: int,
                      num_threads: int, decoder: DecoderOptions | None = None) -> None:
    _, fn, types = import_dali()
    chunks = _Chunks(source, samples, DECODE_BATCH)
    pipe = _pipeline(DECODE_BATCH, num_threads, device, device_id, 2)
    with pipe:
        data = fn.external_source(source=chunks, batch=True, batch_info=True)
        stored = (source.manifest.height, source.manifest.width)
        pipe.set_outputs(_decode(data, source.manifest.encoding, device, fn, types, decoder,
                                 stored))
    start = 0
    try:
        pipe.build()
        while start < len(samples):
            (images,) = run_pipeline(pipe, device)
            start = _store(images, samples, start, target, source)
            progress.advance(len(images))
    except RuntimeError as error:
        suspects = np.concatenate(list(chunks.recent) or [np.zeros(0, np.int64)])
        raise explain(error, source, suspects, source.directory) from None


def _store(images, samples: np.ndarray, start: int, target: torch.Tensor,
           source: ShardBytes) -> int:
    """One decoded DALI batch into ``target[start:…]``; → the next start."""
    expected = tuple(target.shape[1:])
    for position, shape in enumerate(images.shape()):
        if tuple(shape) != expected:
            sample = int(samples[start + position])
            key = source.manifest.samples[sample].key
            raise VireidError(source.shard_path(sample), f"image {key} decodes to "
                              f"{tuple(shape)}, the manifest says {expected}")
    decoded = torch.from_dlpack(images.as_tensor())  # dense: every shape is the expected one
    target[start:start + len(decoded)].copy_(decoded, non_blocking=decoded.is_cuda)
    return start + len(decoded)
