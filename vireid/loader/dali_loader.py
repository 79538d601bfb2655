"""DALI-backed loaders: identity-balanced training batches and in-order evaluation batches.

Training bytes reach DALI through ``external_source`` whose callback is a pure function of
(seed, epoch, step): resuming at any (epoch, step) reproduces the same batches exactly.
Evaluation reads with ``fn.readers.webdataset`` through index files that list just the
requested samples, so each test image is decoded once per evaluation.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from pathlib import Path

import numpy as np

from vireid.choices import Cache, CpuAugment, Views
from vireid.errors import VireidError
from vireid.files import available_cores
from vireid.loader.augment import CAJ_ERASE_FILL, ERASE_FILL, PAD
from vireid.loader.dali_errors import explain, stop_pipeline
from vireid.loader.dali_pipes import decode_pipeline, import_dali, train_pipeline
from vireid.loader.fused import FusedAugment, OutputBuffers, packed
from vireid.loader.handoff import run_pipeline, to_torch
from vireid.loader.settings import Backend, Sampling
from vireid.loader.source import ShardBytes
from vireid.loader.train_base import TrainLoaderBase
from vireid.shards.encode import Encoding

# steps between asking the OS to read a step's bytes and reading them (DALI already runs the
# callback ``prefetch`` steps ahead of the consumer)
READ_AHEAD = 2


class TrainSource:
    """The external_source callback: BatchInfo → this step's bytes and per-image arguments,
    as dense arrays where the shapes allow. ``fused``: whole stored images, packed
    parameters and sample numbers for ``decode_pipeline``; otherwise the crop's in-image
    region and the separate operator arguments of ``train_pipeline``."""

    def __init__(self, loader: TrainLoaderBase, start_epoch: int, start_step: int,
                 fused: bool):
        self.loader = loader
        self.start_epoch, self.start_step = start_epoch, start_step
        manifest = loader.source.manifest
        self.size = (manifest.height, manifest.width)
        self.raw = manifest.encoding is Encoding.RAW
        self.fused = fused
        # the samples of the steps DALI may be working on: where a decode failure is sought
        self.recent: deque[np.ndarray] = deque(maxlen=loader.prefetch + 2)

    def position(self, info) -> tuple[int, int]:
        first = info.epoch_idx == 0
        return (self.start_epoch + info.epoch_idx,
                info.iteration + (self.start_step if first else 0))

    def __call__(self, info):
        epoch, step = self.position(info)
        if step >= self.loader.sampler.steps_per_epoch:
            raise StopIteration
        plan = self.loader.plan(epoch, step)
        self.recent.append(plan.samples)
        self._prefetch(epoch, step + READ_AHEAD)
        if self.fused:
            return self._whole(plan)
        return self._regions(plan)

    def _prefetch(self, epoch: int, step: int) -> None:
        """Start reading a later step's samples now: the disk works while this one decodes."""
        loader = self.loader
        if step < loader.sampler.steps_per_epoch:
            drawn = loader.sampler.step(epoch, step, loader.rank, loader.world_size)
            loader.source.prefetch(np.concatenate([drawn.visible, drawn.infrared]))

    def _whole(self, plan):
        shape = (*self.size, 3)
        data = self.loader.source.read_images(plan.samples)
        if self.raw:
            data = [d.reshape(shape) for d in data]
        outputs = (data, packed(plan.params), plan.samples.astype(np.int64))
        return outputs + self._mix(plan)

    def _mix(self, plan) -> tuple:
        """The channel-mixing matrices, for graphs of channel views (() otherwise)."""
        if not self.loader.channel_views:
            return ()
        mix = plan.params.mix
        if mix is None:  # not augmenting: the identity
            mix = np.repeat(np.eye(3, dtype=np.float32)[None], len(plan.samples), axis=0)
        return (np.ascontiguousarray(mix, dtype=np.float32),)

    def _regions(self, plan):
        p = plan.params
        height, width = self.size
        dy, dx = p.top - PAD, p.left - PAD  # crop window corner in image coordinates
        start = np.stack([np.maximum(dy, 0), np.maximum(dx, 0)], axis=1)
        shape = np.stack([height - np.abs(dy), width - np.abs(dx)], axis=1)
        arguments = [(dy < 0).astype(np.float32), (dx < 0).astype(np.float32),
                     p.flip.astype(np.int32), p.erase[:, :2].astype(np.float32),
                     p.erase[:, 2:].astype(np.float32)]
        arguments += list(self._mix(plan))
        read = self.loader.source.read
        if self.raw:
            regions = [np.ascontiguousarray(read(int(s)).reshape(height, width, 3)[
                y:y + h, x:x + w]) for s, (y, x), (h, w) in zip(plan.samples, start, shape)]
            return (regions, *arguments)
        data = self.loader.source.read_images(plan.samples)
        return (data, start.astype(np.float32), shape.astype(np.float32), *arguments)


class TrainLoader(TrainLoaderBase):
    """Training batches decoded and augmented by DALI (see ``TrainLoaderBase``).

    ``device="cuda"``: nvJPEG decoding and ``train_pipeline`` on the GPU. ``device="cpu"``:
    ``cpu_augment="fused"`` (default) decodes with DALI and augments each batch in one
    compiled pass (``vireid.loader.fused``, ~2.5x faster than DALI's CPU operators here);
    ``cpu_augment="dali"`` runs the GPU graph with CPU operators instead.
    """

    def __init__(self, shards: ShardBytes | Path | str, sampling: Sampling | None = None,
                 backend: Backend | None = None, *, augment: bool = True, rank: int = 0,
                 world_size: int = 1, cache: Cache | str | None = None):
        import_dali()
        backend = backend or Backend()
        if cache is not None:  # the keyword wins over ``backend.cache``
            backend = dataclasses.replace(backend, cache=Cache.parse(cache, "cache"))
        self.backend = backend
        self.cache = Cache.parse(backend.cache, "cache")
        self._cached = None  # the DecodedCache, built by the first iteration
        super().__init__(shards, sampling, augment=augment, rank=rank, world_size=world_size)
        self.device, self.device_id = backend.device, backend.device_id
        self.fused = backend.device == "cpu" and \
            CpuAugment.parse(backend.cpu_augment, "CPU augmentation") is CpuAugment.FUSED
        # one more thread than cores: measured ~10% faster on 2 cores (the executor and the
        # Python side otherwise leave a core idle part of the time)
        self.num_threads = backend.num_threads or available_cores() + 1
        self.prefetch = backend.prefetch
        self.channel_views = self.views == Views.CHANNEL
        self.fill = CAJ_ERASE_FILL if self.channel_views else ERASE_FILL
        # the kernel's threads: one per core, fewer when the caller asks for fewer threads
        # (e.g. one process per core under torchrun)
        workers = max(1, min(available_cores(), self.num_threads))
        self._augment = FusedAugment(self.width, workers) if self.fused else None
        self._buffers = OutputBuffers() if self.fused else None
        self._pipe = self._source = None

    def close(self) -> None:
        """Stop and release the pipeline, the kernel's threads and the shard files."""
        stop_pipeline(self._pipe)
        self._pipe = None
        if self._augment is not None:
            self._augment.close()
        super().close()

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._pipe = None  # rebuilt at the restored position

    def _abandon(self) -> None:
        self._pipe = None  # DALI has prefetched past (epoch, step): rebuild there

    def _epoch_batches(self):
        if self.cache is not Cache.NONE:
            from vireid.loader.cache import DecodedCache

            if self._cached is None:
                self._cached = DecodedCache.build(self)  # every training image, decoded once
            yield from self._cached.batches(self)
            return
        if self.fused:
            yield from self._fused_batches()
            return
        pipe = self._pipeline(fused=False)
        while True:
            try:
                (images,) = run_pipeline(pipe, self.device)
            except StopIteration:
                pipe.reset()  # ready for the next epoch
                return
            except (RuntimeError, VireidError) as error:
                raise self._failure(error, pipe) from None
            yield self.split(to_torch(images))

    def _pipeline(self, fused: bool):
        """The pipeline, built at the current position when there is none."""
        if self._pipe is None:
            self._source = TrainSource(self, self.epoch, self.step, fused=fused)
            options = {"batch_size": self.images_per_step, "num_threads": self.num_threads,
                       "encoding": self.source.manifest.encoding, "prefetch": self.prefetch,
                       "mixing": self.channel_views}
            if fused:
                pipe = decode_pipeline(self._source, **options)
            else:
                pipe = train_pipeline(self._source, height=self.height, width=self.width,
                                      device=self.device, device_id=self.device_id,
                                      fill=self.fill, decoder=self.backend.decoder, **options)
            try:
                pipe.build()
            except RuntimeError as error:
                raise self._failure(error, pipe) from None
            self._pipe = pipe
        return self._pipe

    def _failure(self, error: Exception, pipe) -> VireidError:
        """DALI's error as one line, a damaged image among the recent steps named (the
        bytes' check raises that line itself, from the callback); ``pipe`` is stopped and
        dropped first: a pipeline that failed cannot run again."""
        self._pipe = None
        if isinstance(error, VireidError):
            stop_pipeline(pipe)
            return error
        suspects = np.concatenate(list(self._source.recent) or [np.zeros(0, np.int64)])
        return explain(error, self.source, suspects, self.source.directory, pipe=pipe)

    def _fused_batches(self):
        """DALI decodes ahead on its threads while this thread augments the batch it got."""
        pipe = self._pipeline(fused=True)
        while True:
            try:
                images, params, samples, *mix = pipe.run()
            except StopIteration:
                pipe.reset()  # ready for the next epoch
                return
            except (RuntimeError, VireidError) as error:
                raise self._failure(error, pipe) from None
            pixels = self._dense(images, samples)
            out = self._buffers.take(pixels.shape)
            mix = np.asarray(mix[0].as_tensor()) if mix else None
            self._augment(pixels, np.asarray(params.as_tensor()), out, mix, self.fill)
            yield self.split(out)

    def _dense(self, images, samples) -> np.ndarray:
        """The decoded batch as one uint8 N×H×W×3 array (a view of DALI's output)."""
        expected = (self.height, self.width, 3)
        for position, shape in enumerate(images.shape()):
            if tuple(shape) != expected:
                sample = int(np.asarray(samples.as_tensor())[position])
                key = self.source.manifest.samples[sample].key
                raise VireidError(self.source.shard_path(sample), f"image {key} decodes to "
                                  f"{tuple(shape)}, the manifest says {expected}")
        if images.is_dense_tensor():
            return np.asarray(images.as_tensor())
        return np.stack([np.asarray(images[i]) for i in range(len(images))])
