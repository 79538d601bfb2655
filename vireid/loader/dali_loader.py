"""DALI-backed loaders: identity-balanced training batches and in-order evaluation batches.

Training bytes reach DALI through ``external_source`` whose callback is a pure function of
(seed, epoch, step): resuming at any (epoch, step) reproduces the same batches exactly.
Evaluation reads with ``fn.readers.webdataset`` through index files that list just the
requested samples, so each test image is decoded once per evaluation.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from vireid.errors import VireidError
from vireid.loader.augment import PAD
from vireid.loader.dali_pipes import decode_pipeline, eval_pipeline, import_dali, train_pipeline
from vireid.loader.fused import FusedAugment, OutputBuffers, packed
from vireid.loader.plan import eval_share
from vireid.loader.source import ShardBytes
from vireid.loader.train_base import TrainLoaderBase, default_threads, split_batch
from vireid.shards.encode import Encoding
from vireid.shards.tario import Member, index_text

CPU_AUGMENT = ("fused", "dali")
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

    def position(self, info) -> tuple[int, int]:
        first = info.epoch_idx == 0
        return (self.start_epoch + info.epoch_idx,
                info.iteration + (self.start_step if first else 0))

    def __call__(self, info):
        epoch, step = self.position(info)
        if step >= self.loader.sampler.steps_per_epoch:
            raise StopIteration
        plan = self.loader.plan(epoch, step)
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

    def _read(self, samples) -> list[np.ndarray]:
        """The stored bytes of ``samples``, each checked to start like an image of the shard's
        encoding: DALI's CPU decoder can crash the process on bytes that are not an image."""
        read, source = self.loader.source.read, self.loader.source
        signature = source.manifest.encoding.signature
        data = [read(int(s)) for s in samples]
        for sample, image in zip(samples, data):
            if image[:len(signature)].tobytes() != signature:
                key = source.manifest.samples[int(sample)].key
                raise VireidError(source.shard_path(int(sample)), f"image {key} is not a "
                                  f"{source.manifest.encoding.value.upper()} (damaged shard: "
                                  f"run `vireid-shard verify --deep {source.directory}`)")
        return data

    def _whole(self, plan):
        shape = (*self.size, 3)
        data = self._read(plan.samples)
        if self.raw:
            data = [d.reshape(shape) for d in data]
        return data, packed(plan.params), plan.samples.astype(np.int64)

    def _regions(self, plan):
        p = plan.params
        height, width = self.size
        dy, dx = p.top - PAD, p.left - PAD  # crop window corner in image coordinates
        start = np.stack([np.maximum(dy, 0), np.maximum(dx, 0)], axis=1)
        shape = np.stack([height - np.abs(dy), width - np.abs(dx)], axis=1)
        arguments = [(dy < 0).astype(np.float32), (dx < 0).astype(np.float32),
                     p.flip.astype(np.int32), p.erase[:, :2].astype(np.float32),
                     p.erase[:, 2:].astype(np.float32)]
        read = self.loader.source.read
        if self.raw:
            regions = [np.ascontiguousarray(read(int(s)).reshape(height, width, 3)[
                y:y + h, x:x + w]) for s, (y, x), (h, w) in zip(plan.samples, start, shape)]
            return (regions, *arguments)
        data = self._read(plan.samples)
        return (data, start.astype(np.float32), shape.astype(np.float32), *arguments)


class TrainLoader(TrainLoaderBase):
    """Training batches decoded and augmented by DALI (see ``TrainLoaderBase``).

    ``device="cuda"``: nvJPEG decoding and ``train_pipeline`` on the GPU. ``device="cpu"``:
    ``cpu_augment="fused"`` (default) decodes with DALI and augments each batch in one
    compiled pass (``vireid.loader.fused``, ~2.5x faster than DALI's CPU operators here);
    ``cpu_augment="dali"`` runs the GPU graph with CPU operators instead.
    """

    def __init__(self, shards_dir: Path, *, device: str = "cpu", device_id: int = 0,
                 num_threads: int | None = None, prefetch: int = 2,
                 cpu_augment: str = "fused", **options):
        super().__init__(shards_dir, **options)
        import_dali()
        if cpu_augment not in CPU_AUGMENT:
            raise VireidError("--cpu-augment", f"unknown choice {cpu_augment!r} (choose from "
                              f"{', '.join(CPU_AUGMENT)})")
        self.device, self.device_id = device, device_id
        self.fused = device == "cpu" and cpu_augment == "fused"
        # one more thread than cores: measured ~10% faster on 2 cores (the executor and the
        # Python side otherwise leave a core idle part of the time)
        self.num_threads = num_threads or default_threads() + 1
        self.prefetch = prefetch
        # the kernel's threads: one per core, fewer when the caller asks for fewer threads
        # (e.g. one process per core under torchrun)
        workers = max(1, min(default_threads(), self.num_threads))
        self._augment = FusedAugment(self.width, workers) if self.fused else None
        self._buffers = OutputBuffers() if self.fused else None
        self._iterator = None

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._iterator = None  # rebuilt at the restored position

    def _abandon(self) -> None:
        self._iterator = None  # DALI has prefetched past (epoch, step): rebuild there

    def _epoch_batches(self):
        if self.fused:
            yield from self._fused_batches()
            return
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        try:  # the iterator runs the pipeline as soon as it exists
            if self._iterator is None:
                source = TrainSource(self, self.epoch, self.step, fused=False)
                pipe = train_pipeline(
                    source, batch_size=2 * self.per_rank,
                    encoding=self.source.manifest.encoding, height=self.height,
                    width=self.width, device=self.device, device_id=self.device_id,
                    num_threads=self.num_threads, prefetch=self.prefetch)
                self._iterator = DALIGenericIterator([pipe], ["images"], auto_reset=False)
            else:
                self._iterator.reset()
        except RuntimeError as error:
            raise self._undecodable(error) from None
        batches = iter(self._iterator)
        while True:
            try:
                output = next(batches)
            except StopIteration:
                return
            except RuntimeError as error:
                raise self._undecodable(error) from None
            yield split_batch(output[0]["images"], self.per_rank)

    def _undecodable(self, error: RuntimeError) -> VireidError:
        """DALI's error (e.g. a damaged image inside an intact-looking shard) as one line."""
        self._iterator = None  # a pipeline that failed cannot run again
        reason = next((line.strip() for line in str(error).splitlines()
                       if "rror" in line and "Critical" not in line), str(error).strip())
        return VireidError(self.source.directory, f"a training batch failed in DALI "
                           f"({reason[:200]}); check the shards with `vireid-shard verify "
                           f"--deep {self.source.directory}`")

    def _fused_batches(self):
        """DALI decodes ahead on its threads while this thread augments the batch it got."""
        if self._iterator is None:
            source = TrainSource(self, self.epoch, self.step, fused=True)
            self._iterator = decode_pipeline(
                source, batch_size=2 * self.per_rank, encoding=self.source.manifest.encoding,
                num_threads=self.num_threads, prefetch=self.prefetch)
            self._iterator.build()
        pipe = self._iterator
        while True:
            try:
                images, params, samples = pipe.run()
            except StopIteration:
                pipe.reset()  # ready for the next epoch
                return
            except RuntimeError as error:
                raise self._undecodable(error) from None
            pixels = self._dense(images, samples)
            out = self._buffers.take(pixels.shape)
            self._augment(pixels, np.asarray(params.as_tensor()), out)
            yield split_batch(out, self.per_rank)

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


class EvalLoader:
    """Batches of the requested samples in storage order: ``images`` (N,3,H,W) fp16
    channels-last and ``samples`` (their global numbers)."""

    def __init__(self, shards_dir: Path, samples, *, device: str = "cpu", device_id: int = 0,
                 batch_size: int = 128, num_threads: int | None = None,
                 size: tuple[int, int] | None = None, shard_id: int = 0, num_shards: int = 1):
        import_dali()
        self.source = ShardBytes(shards_dir)
        manifest = self.source.manifest
        wanted = eval_share(samples)
        self.samples = eval_share(wanted, shard_id, num_shards)
        self.batch_size = batch_size
        self._folder = Path(tempfile.mkdtemp(prefix="vireid-eval-idx-"))
        paths, indexes = self._subset_indexes(wanted)
        stored = (manifest.height, manifest.width)
        self._pipe = eval_pipeline(
            paths, indexes, batch_size=batch_size, encoding=manifest.encoding, stored=stored,
            size=size or stored, device=device, device_id=device_id,
            num_threads=num_threads or default_threads(), shard_id=shard_id,
            num_shards=num_shards)

    def _subset_indexes(self, wanted: np.ndarray) -> tuple[list[str], list[str]]:
        """Per shard, an index file listing only the wanted samples' image members."""
        manifest = self.source.manifest
        extension = manifest.encoding.extension
        paths, indexes = [], []
        for number in np.unique(self.source.shard_of[wanted]):
            chosen = wanted[self.source.shard_of[wanted] == number]
            members = [Member(f"{manifest.samples[i].key}.{extension}",
                              int(self.source.offsets[i]), int(self.source.sizes[i]))
                       for i in chosen]
            index = self._folder / f"{number:05d}.idx"
            index.write_text(index_text(members))
            paths.append(str(self.source.directory / manifest.shards[number].file))
            indexes.append(str(index))
        return paths, indexes

    def __len__(self) -> int:
        return -(-len(self.samples) // self.batch_size)

    def __iter__(self):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        iterator = DALIGenericIterator([self._pipe], ["images"], reader_name="reader",
                                       last_batch_policy=LastBatchPolicy.PARTIAL)
        done = 0
        for output in iterator:
            images = output[0]["images"].permute(0, 3, 1, 2)
            yield {"images": images, "samples": self.samples[done:done + len(images)]}
            done += len(images)

    def close(self) -> None:
        if hasattr(self, "_folder"):
            shutil.rmtree(self._folder, ignore_errors=True)
            self.source.close()

    def __del__(self):
        self.close()
