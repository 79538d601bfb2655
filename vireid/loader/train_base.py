"""What every training loader shares: view selection, sampler, position, batch contract.

A batch is a dict: ``visible`` and ``infrared`` float16 tensors (P·K, 3, H, W) in
channels-last memory, ``labels_visible`` and ``labels_infrared`` (int64), ``epoch`` and
``step``. With CAJ's channel views (``Sampling.views``), ``visible`` holds 2·P·K images —
the first view of every sampled image, then the second — and ``labels_visible`` the labels
twice. Iterating a loader runs ONE epoch from its current position; ``state_dict()`` after
any batch resumes exactly at the next one.

``augmentation`` is the method's on the shards' dataset (``augment.Augmentation``, made by
``MethodSpec.augmentation(manifest.dataset)``; None: AGW's): it reaches every step's plan.
A resumed run gets it again from its method and data, which a resume cannot change.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vireid.choices import LoaderKind
from vireid.errors import VireidError
from vireid.loader.augment import Augmentation
from vireid.loader.plan import StepPlan, plan_step, visible_views
from vireid.loader.route import Route, training_route
from vireid.loader.sampler import IdentitySampler, short_identity
from vireid.loader.settings import Backend, Sampling
from vireid.loader.source import ShardBytes, UsesShards, open_source
from vireid.records import TrainView
from vireid.shards.manifest import Manifest

if TYPE_CHECKING:
    from vireid.loader.cache import FirstPass


def check_enough_images(manifest: Manifest, view: TrainView, num_pos: int) -> None:
    """Drawing without replacement needs ``num_pos`` images of every identity in both
    modalities: name the first identity (its pid) that has fewer."""
    pools = []
    for part in (view.visible, view.infrared):
        samples, labels = np.asarray(part.samples), np.asarray(part.labels)
        pools.append([samples[labels == c] for c in range(int(labels.max()) + 1)])
    short = short_identity(pools, num_pos)
    if short:
        modality, _, count, sample = short
        pid = manifest.samples[sample].pid
        raise VireidError(view.name, f"identity {pid} has {count} {modality} image"
                          f"{'s' if count != 1 else ''}, fewer than the {num_pos} to draw "
                          "without replacement (draw with replacement, or fewer per identity)")


def split_batch(images, visible: int):
    """N×H×W×C → (the first ``visible`` images, the rest) as channels-last N×C×H×W views
    (no copy)."""
    nchw = images.permute(0, 3, 1, 2)
    return nchw[:visible], nchw[visible:]


class TrainLoaderBase(UsesShards):
    """``shards``: a shard folder, or a ``ShardBytes`` already open (not closed here).
    ``backend``: where and how batches are made, from which the loader computes its one
    ``route`` (``route.py``) as soon as the shards' encoding is known. ``augmentation``:
    the method's on this dataset (None: AGW's)."""

    kind: LoaderKind  # the registry's name of the loader (``vireid.loader.LOADERS``)
    augmenter = None  # the route's augmenter, where the loader runs one itself

    def __init__(self, shards: ShardBytes | Path | str, sampling: Sampling | None = None,
                 backend: Backend | None = None, *, augment: bool = True, rank: int = 0,
                 world_size: int = 1, augmentation: Augmentation | None = None):
        self.source, self._owns_source = open_source(shards)
        self.augmentation = augmentation or Augmentation()
        try:
            self._setup(sampling or Sampling(), backend or Backend(), augment, rank,
                        world_size)
        except BaseException:
            UsesShards.close(self)  # a loader refused: the files it opened are closed now
            raise

    def _setup(self, sampling: Sampling, backend: Backend, augment: bool, rank: int,
               world_size: int) -> None:
        manifest = self.source.manifest
        self.backend = backend
        self.route: Route = training_route(self.kind, backend, manifest.encoding)
        self.view = manifest.training_view(sampling.trial)
        if not sampling.replace:
            check_enough_images(manifest, self.view, sampling.num_pos)
        self.sampler = IdentitySampler.from_view(
            self.view, batch_ids=sampling.batch_ids, num_pos=sampling.num_pos,
            seed=sampling.seed, replace=sampling.replace, order=sampling.order)
        self.augment, self.rank, self.world_size = augment, rank, world_size
        self.erase_prob = sampling.erase_prob
        self.views = sampling.views
        self.visible_views = visible_views(sampling.views)
        self.height, self.width = manifest.height, manifest.width
        self.per_rank = sampling.batch_ids * sampling.num_pos // world_size
        self.images_per_step = (self.visible_views + 1) * self.per_rank  # this rank's
        self.sampler.step(0, 0, rank, world_size)  # fail now on an impossible split
        self.epoch = self.step = 0

    def first_pass(self) -> FirstPass | None:
        """The decoded cache's first-pass figures once it has run (None: no cache on this
        route, or not built yet)."""
        return None

    def close(self) -> None:
        """Release the augmenter's threads and the shard files this loader opened."""
        if self.augmenter is not None:
            self.augmenter.close()
        super().close()

    @property
    def num_classes(self) -> int:
        return self.sampler.num_classes

    def __len__(self) -> int:
        return self.sampler.steps_per_epoch

    def plan(self, epoch: int, step: int) -> StepPlan:
        return plan_step(self.sampler, epoch, step, augment=self.augment,
                         erase_prob=self.erase_prob, views=self.views, height=self.height,
                         width=self.width, rank=self.rank, world_size=self.world_size,
                         augmentation=self.augmentation)

    def seek(self, epoch: int, step: int = 0) -> None:
        """Continue at (epoch, step) — e.g. the next epoch after one was cut short."""
        if (epoch, step) != (self.epoch, self.step):
            self.epoch, self.step = epoch, step
            self._abandon()

    def state_dict(self) -> dict:
        return {"seed": self.sampler.seed, "epoch": self.epoch, "step": self.step,
                "view": self.view.name, "batch_ids": self.sampler.batch_ids,
                "num_pos": self.sampler.num_pos, "order": str(self.sampler.order),
                "views": str(self.views or "single")}

    def load_state_dict(self, state: dict) -> None:
        state = {"views": "single", **state}  # written before CAJ: single views
        for key in ("seed", "view", "batch_ids", "num_pos", "order", "views"):
            if state[key] != self.state_dict()[key]:
                raise VireidError("checkpoint", f"loader state has {key}={state[key]!r}, "
                                  f"this loader {self.state_dict()[key]!r}")
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        if self.step >= self.sampler.steps_per_epoch:
            self.epoch, self.step = self.epoch + 1, 0

    def __iter__(self):
        from vireid.loader.transfer import to_device

        finished = False
        try:
            for visible, infrared in self._epoch_batches():
                labels = self.sampler.step(self.epoch, self.step, self.rank,
                                           self.world_size).labels
                # staged in pinned memory: a pageable copy would make the host wait
                labels = to_device(np.asarray(labels, dtype=np.int64), visible.device)
                batch = {"visible": visible, "infrared": infrared,
                         "labels_visible": labels.repeat(self.visible_views),
                         "labels_infrared": labels.clone(), "epoch": self.epoch,
                         "step": self.step}
                self.step += 1  # before yielding: state_dict() now points at the next batch
                yield batch
            finished = True
        finally:
            if finished:
                self.epoch, self.step = self.epoch + 1, 0
            else:
                self._abandon()

    def split(self, images):
        """A step's N×H×W×C images → (visible, infrared) channels-last N×C×H×W views."""
        return split_batch(images, self.visible_views * self.per_rank)

    def _epoch_batches(self):
        """Yield (visible, infrared) tensors for the steps from ``self.step`` to the end."""
        raise NotImplementedError

    def _abandon(self) -> None:
        """An epoch was left early: the next iteration restarts at ``(epoch, step)``."""
