"""DALI evaluation batches: every requested test image once, in storage order.

The bytes come from the shards through ``external_source`` like the training batches (one
positional read per image, checked to start and end like a whole image before DALI sees
them), so a damaged shard is one line naming the tar and the key, and nothing is written
anywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vireid.errors import VireidError
from vireid.files import available_cores
from vireid.loader.dali_errors import explain, stop_pipeline
from vireid.loader.dali_pipes import eval_pipeline, import_dali
from vireid.loader.handoff import run_pipeline, to_torch
from vireid.loader.plan import eval_share
from vireid.loader.settings import EVAL_BATCH_SIZE, Backend
from vireid.loader.source import ShardBytes, UsesShards, open_source
from vireid.shards.encode import Encoding


class EvalSource:
    """The external_source callback: iteration i → the stored images of batch i."""

    def __init__(self, source: ShardBytes, samples: np.ndarray, batch_size: int):
        self.source, self.samples, self.batch_size = source, samples, batch_size
        manifest = source.manifest
        self.shape = (manifest.height, manifest.width, 3)
        self.raw = manifest.encoding is Encoding.RAW

    def batch(self, iteration: int) -> np.ndarray:
        return self.samples[iteration * self.batch_size:(iteration + 1) * self.batch_size]

    def __call__(self, info):
        chosen = self.batch(info.iteration)
        if len(chosen) == 0:
            raise StopIteration
        data = self.source.read_images(chosen)
        return [d.reshape(self.shape) for d in data] if self.raw else data


class EvalLoader(UsesShards):
    """Batches of the requested samples in storage order: ``images`` (N,3,H,W) fp16
    channels-last and ``samples`` (their global numbers). With ``num_shards`` > 1 this rank
    reads its contiguous slice (``eval_share``)."""

    def __init__(self, shards: ShardBytes | Path | str, samples, *,
                 batch_size: int = EVAL_BATCH_SIZE, size: tuple[int, int] | None = None,
                 shard_id: int = 0, num_shards: int = 1, backend: Backend | None = None):
        import_dali()
        backend = backend or Backend()
        self.source, self._owns_source = open_source(shards)
        manifest = self.source.manifest
        self.samples = eval_share(samples, shard_id, num_shards)
        # DALI allocates for the batch size: never more than the images there are
        batch_size = max(1, min(batch_size, len(self.samples)))
        self.batch_size, self.device = batch_size, backend.device
        self._callback = EvalSource(self.source, self.samples, batch_size)
        stored = (manifest.height, manifest.width)
        self._pipe = eval_pipeline(
            self._callback, batch_size=batch_size, encoding=manifest.encoding, stored=stored,
            size=size or stored, device=backend.device, device_id=backend.device_id,
            num_threads=backend.num_threads or available_cores(), decoder=backend.decoder)

    def __len__(self) -> int:
        return -(-len(self.samples) // self.batch_size)

    def __iter__(self):
        if not len(self):
            return
        iteration = 0
        while iteration < len(self):
            try:
                (images,) = run_pipeline(self._pipe, self.device)
            except VireidError:  # the bytes' check named a damaged image
                self.close()
                raise
            except (RuntimeError, StopIteration) as error:
                failure = explain(error, self.source, self._callback.batch(iteration),
                                  self.source.directory, pipe=self._pipe)
                self.close()
                raise failure from None
            images = to_torch(images).permute(0, 3, 1, 2)
            yield {"images": images, "samples": self._callback.batch(iteration)}
            iteration += 1
        self._rewind()

    def _rewind(self) -> None:
        """Take DALI's end-of-epoch signal and reset, so the loader can be iterated again."""
        try:
            run_pipeline(self._pipe, self.device)
        except StopIteration:
            self._pipe.reset()

    def close(self) -> None:
        """Stop and release the pipeline and the shard files it opened (also done when
        iterating fails)."""
        stop_pipeline(self._pipe)
        self._pipe = None
        super().close()
