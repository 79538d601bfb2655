"""The DALI training loader: identity-balanced batches on the routes of the ``dali`` loader
(the package docstring's table): one DALI graph, DALI decoding + an augmenter, or the
decoded cache + an augmenter.

Training bytes reach DALI through ``external_source`` whose callback is a pure function of
(seed, epoch, step): resuming at any (epoch, step) reproduces the same batches exactly.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np

from vireid.choices import LoaderKind
from vireid.errors import VireidError
from vireid.files import available_cores
from vireid.loader.augment import Augmentation
from vireid.loader.augmenters import make_augmenter
from vireid.loader.cache import DecodedCache, FirstPass, decode_cache, training_samples
from vireid.loader.dali_augment import graph_inputs
from vireid.loader.dali_errors import explain, stop_pipeline
from vireid.loader.dali_pipes import decode_pipeline, import_dali, train_pipeline
from vireid.loader.handoff import run_pipeline, to_torch
from vireid.loader.plan import StepPlan
from vireid.loader.route import Pixels
from vireid.loader.settings import Backend, Sampling
from vireid.loader.source import ShardBytes
from vireid.loader.train_base import TrainLoaderBase
from vireid.shards.encode import Encoding

# steps between asking the OS to read a step's bytes and reading them (DALI already runs the
# callback ``prefetch`` steps ahead of the consumer)
READ_AHEAD = 2


class TrainSource:
    """The external_source callback: BatchInfo → this step's bytes and what rides along, as
    dense arrays where the shapes allow. ``graph``: the inputs of ``dali_augment`` (crop
    regions sliced here from raw shards); otherwise whole stored images, their sample
    numbers and the step's (epoch, step), by which the loader takes the step's plan."""

    def __init__(self, loader: TrainLoaderBase, start_epoch: int, start_step: int,
                 graph: bool):
        self.loader = loader
        self.start_epoch, self.start_step = start_epoch, start_step
        manifest = loader.source.manifest
        self.size = (manifest.height, manifest.width)
        self.raw = manifest.encoding is Encoding.RAW
        self.graph = graph
        # the samples of the steps DALI may be working on: where a decode failure is sought
        self.recent: deque[np.ndarray] = deque(maxlen=loader.prefetch + 2)
        self.plans: dict[tuple[int, int], StepPlan] = {}  # handed to DALI, not yet taken

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
        return self._graph(plan) if self.graph else self._whole(plan)

    def take(self, position) -> StepPlan:
        """The plan of the step DALI returned with ``position`` (its (epoch, step))."""
        return self.plans.pop((int(position[0]), int(position[1])))

    def _prefetch(self, epoch: int, step: int) -> None:
        """Start reading a later step's samples now: the disk works while this one decodes."""
        loader = self.loader
        if step < loader.sampler.steps_per_epoch:
            drawn = loader.sampler.step(epoch, step, loader.rank, loader.world_size)
            loader.source.prefetch(np.concatenate([drawn.visible, drawn.infrared]))

    def _whole(self, plan: StepPlan):
        data = self.loader.source.read_images(plan.samples)
        if self.raw:
            data = [d.reshape(*self.size, 3) for d in data]
        self.plans[(plan.epoch, plan.step)] = plan
        position = np.tile(np.array([plan.epoch, plan.step], np.int64), (len(data), 1))
        return data, plan.samples.astype(np.int64), position

    def _graph(self, plan: StepPlan):
        inputs = graph_inputs(plan.params, *self.size)
        source = self.loader.source
        if self.raw:
            stored = [source.read(int(s)).reshape(*self.size, 3) for s in plan.samples]
            return (inputs.regions(stored), *inputs.arguments.values())
        return (source.read_images(plan.samples), inputs.start.astype(np.float32),
                inputs.shape.astype(np.float32), *inputs.arguments.values())


class TrainLoader(TrainLoaderBase):
    """Training batches made by DALI on the loader's route (see ``TrainLoaderBase``): the
    DALI graph (``train_pipeline``), DALI decoding (``decode_pipeline``) + the route's
    augmenter, or the decoded cache (built by the first iteration) + the route's augmenter.
    """

    kind = LoaderKind.DALI
    BATCHES = {Pixels.GRAPH: "_graph_batches", Pixels.DECODED: "_decoded_batches",
               Pixels.CACHED: "_cached_batches"}

    def __init__(self, shards: ShardBytes | Path | str, sampling: Sampling | None = None,
                 backend: Backend | None = None, *, augment: bool = True, rank: int = 0,
                 world_size: int = 1, augmentation: Augmentation | None = None):
        import_dali()
        super().__init__(shards, sampling, backend, augment=augment, rank=rank,
                         world_size=world_size, augmentation=augmentation)
        # one more thread than cores: measured ~10% faster on 2 cores (the executor and the
        # Python side otherwise leave a core idle part of the time)
        self.num_threads = self.backend.num_threads or available_cores() + 1
        self.prefetch = self.backend.prefetch
        if self.route.pixels is not Pixels.GRAPH:  # the graph augments inside DALI
            # the kernel's threads: one per core, fewer when the caller asks for fewer
            # threads (e.g. one process per core under torchrun)
            self.augmenter = make_augmenter(
                self.route.augmenter, device=self.route.device,
                device_id=self.backend.device_id,
                threads=max(1, min(available_cores(), self.num_threads)))
        self._cache: DecodedCache | None = None  # built by the first iteration
        self._first_pass: FirstPass | None = None
        self._pipe = self._source = None

    def first_pass(self) -> FirstPass | None:
        return self._first_pass

    def close(self) -> None:
        """Stop and release the pipeline, the decoded cache, the augmenter's threads and the
        shard files."""
        stop_pipeline(self._pipe)
        self._pipe = self._cache = None
        super().close()

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._pipe = None  # rebuilt at the restored position

    def _abandon(self) -> None:
        self._pipe = None  # DALI has prefetched past (epoch, step): rebuild there

    def _epoch_batches(self):
        yield from getattr(self, self.BATCHES[self.route.pixels])()

    def _graph_batches(self):
        pipe = self._pipeline()
        while True:
            try:
                (images,) = run_pipeline(pipe, self.route.device)
            except StopIteration:
                pipe.reset()  # ready for the next epoch
                return
            except (RuntimeError, VireidError) as error:
                raise self._failure(error, pipe) from None
            yield self.split(to_torch(images))

    def _decoded_batches(self):
        """DALI decodes ahead on its threads while this thread augments the batch it got."""
        pipe = self._pipeline()
        while True:
            try:
                images, samples, position = pipe.run()
            except StopIteration:
                pipe.reset()  # ready for the next epoch
                return
            except (RuntimeError, VireidError) as error:
                raise self._failure(error, pipe) from None
            pixels = self._dense(images, samples)
            plan = self._source.take(np.asarray(position.as_tensor())[0])
            yield self.split(self.augmenter(pixels, plan.params))

    def _cached_batches(self):
        if self._cache is None:
            self._cache = self._decoded_cache()  # every training image, decoded once
        for step in range(self.step, self.sampler.steps_per_epoch):
            out = self._cache.batch(self.plan(self.epoch, step))
            self._first_pass = self._first_pass.first_batch_made()
            yield self.split(out)

    def _decoded_cache(self) -> DecodedCache:
        backend = self.backend
        images, row_of, self._first_pass = decode_cache(
            self.source, training_samples(self.view), self.route.cache,
            device=self.route.device, device_id=backend.device_id,
            num_threads=self.num_threads, decoder=backend.decoder,
            processes=backend.local_processes)
        return DecodedCache(images, row_of, self.augmenter)

    def _pipeline(self):
        """The route's pipeline, built at the current position when there is none. The
        graph's shape (its arguments, the erase fill) is a plan's: the same for every step
        of a loader."""
        if self._pipe is None:
            graph = self.route.pixels is Pixels.GRAPH
            self._source = TrainSource(self, self.epoch, self.step, graph)
            options = {"batch_size": self.images_per_step, "num_threads": self.num_threads,
                       "encoding": self.source.manifest.encoding, "prefetch": self.prefetch}
            if graph:
                inputs = graph_inputs(self.plan(self.epoch, 0).params, self.height, self.width)
                pipe = train_pipeline(self._source, height=self.height, width=self.width,
                                      device=self.route.device,
                                      device_id=self.backend.device_id,
                                      arguments=inputs.names, fill=inputs.fill,
                                      decoder=self.backend.decoder, **options)
            else:
                pipe = decode_pipeline(self._source, **options)
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
