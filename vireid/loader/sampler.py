"""The P×K identity sampler as a pure function of (seed, epoch, step, rank, world size).

The recipe: docs/recipe.md, Identity sampler.

One step draws P identities without replacement and, for each, K visible and K infrared
images (with replacement, as the original does), so block i of K images in both modalities
shows the same identity. Steps per epoch = N // (P·K) + 1 with N = max(#visible, #infrared).

Identity order (``order``): "epoch" (default) walks shuffled passes over all identities, so
every identity appears in an epoch whenever steps × P ≥ classes; "original" draws each step's
identities independently, as the original's sampler does (some identities may miss an epoch).

Worked example, P=2, K=2, world size 1: step (epoch 3, step 5) might draw labels [7, 2]
→ visible [v7a, v7b, v2a, v2b], infrared [i7a, i7a, i2b, i2c], labels [7, 7, 2, 2]. With world
size 2 the same global draw is split: rank 0 gets label 7's block, rank 1 label 2's, so the
ranks together see exactly what one process would.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from vireid.choices import SamplerOrder
from vireid.errors import VireidError
from vireid.loader.settings import Sampling
from vireid.records import TrainView

SAMPLER_STREAM = 0  # SeedSequence keys: sampler, augmentation and identity order draw apart
AUGMENT_STREAM = 1
ORDER_STREAM = 2
CHANNEL_STREAM = 3  # CAJ's channel operations
GRAY_STREAM = 4  # DEEN's random gray
ORDERS = SamplerOrder.values()


def step_rng(seed: int, epoch: int, step: int, stream: int) -> np.random.Generator:
    """The generator of one (seed, epoch, step) for one purpose; never the global RNG."""
    return np.random.default_rng([seed, epoch, step, stream])


@dataclass(frozen=True)
class SampledStep:
    """Global sample numbers of one step (this rank's share) and their labels."""

    epoch: int
    step: int
    visible: np.ndarray
    infrared: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class IdentitySampler:
    visible: tuple[np.ndarray, ...]  # per label: global sample numbers of its visible images
    infrared: tuple[np.ndarray, ...]
    num_visible: int
    num_infrared: int
    batch_ids: int = Sampling.batch_ids
    num_pos: int = Sampling.num_pos
    seed: int = Sampling.seed
    replace: bool = Sampling.replace
    order: str = Sampling.order

    @classmethod
    def from_view(cls, view: TrainView, *, batch_ids: int = Sampling.batch_ids,
                  num_pos: int = Sampling.num_pos, seed: int = Sampling.seed,
                  replace: bool = Sampling.replace,
                  order: str = Sampling.order) -> IdentitySampler:
        """Group a training view by label; labels must be 0..C-1, each in both modalities."""
        pools = []
        for part in (view.visible, view.infrared):
            samples, labels = np.asarray(part.samples), np.asarray(part.labels)
            classes = int(labels.max()) + 1 if len(labels) else 0
            groups = tuple(samples[labels == c] for c in range(classes))
            pools.append(groups)
        if len(pools[0]) != len(pools[1]) or any(len(g) == 0 for p in pools for g in p):
            raise VireidError(view.name, "training labels must be 0..C-1 and every label needs "
                              "visible and infrared images")
        if batch_ids > len(pools[0]):
            raise VireidError(view.name, f"batch of {batch_ids} identities but only "
                              f"{len(pools[0])} classes")
        if order not in ORDERS:
            raise VireidError("sampler", f"unknown identity order {order!r} "
                              f"({', '.join(ORDERS)})")
        short = short_identity(pools, num_pos) if not replace else None
        if short:
            modality, label, count, _ = short
            raise VireidError(view.name, f"drawing {num_pos} images per identity without "
                              f"replacement, but label {label} has {count} {modality} images")
        return cls(pools[0], pools[1], len(view.visible.samples), len(view.infrared.samples),
                   batch_ids, num_pos, seed, replace, order)

    @property
    def num_classes(self) -> int:
        return len(self.visible)

    @property
    def steps_per_epoch(self) -> int:
        return max(self.num_visible, self.num_infrared) // (self.batch_ids * self.num_pos) + 1

    def step(self, epoch: int, step: int, rank: int = 0, world_size: int = 1) -> SampledStep:
        """This rank's share of step ``step`` of ``epoch``."""
        if self.batch_ids % world_size:
            raise VireidError("sampler", f"{self.batch_ids} identities per step cannot be "
                              f"split over {world_size} processes (P must be a multiple of "
                              "the number of processes)")
        if not 0 <= step < self.steps_per_epoch:
            raise ValueError(f"step {step} outside 0..{self.steps_per_epoch - 1}")
        rng = step_rng(self.seed, epoch, step, SAMPLER_STREAM)
        if self.order == "epoch":
            ids = epoch_order(self.seed, epoch, self.num_classes, self.batch_ids,
                              self.steps_per_epoch)[step]
        else:
            ids = rng.choice(self.num_classes, self.batch_ids, replace=False)
        visible = np.concatenate([self._draw(rng, self.visible[i]) for i in ids])
        infrared = np.concatenate([self._draw(rng, self.infrared[i]) for i in ids])
        labels = np.repeat(ids, self.num_pos)
        share = slice(rank * len(labels) // world_size, (rank + 1) * len(labels) // world_size)
        return SampledStep(epoch, step, visible[share], infrared[share], labels[share])

    def _draw(self, rng: np.random.Generator, pool: np.ndarray) -> np.ndarray:
        return pool[rng.choice(len(pool), self.num_pos, replace=self.replace)]


def short_identity(pools, num_pos: int) -> tuple[str, int, int, int] | None:
    """The first label with fewer than ``num_pos`` images in a modality: (modality, label,
    count, one of its samples), or None. ``pools``: per modality, per label, sample numbers."""
    for modality, groups in zip(("visible", "infrared"), pools):
        for label, group in enumerate(groups):
            if len(group) < num_pos:
                return modality, label, len(group), int(group[0])
    return None


@functools.lru_cache(maxsize=8)
def epoch_order(seed: int, epoch: int, classes: int, batch_ids: int, steps: int) -> np.ndarray:
    """(steps, P) identities of one epoch: consecutive shuffled passes over all classes.

    Leftovers of a pass (< P) open the next step, followed by a fresh permutation without
    them, so no step repeats an identity. Example, 5 classes, P=2: passes [3,0,4,1,2] and
    [1,4,0,2,3] give steps [3,0] [4,1] [2,1] [4,0] [3,…]. Memoised: it is a pure function.
    """
    rng = np.random.default_rng([seed, epoch, ORDER_STREAM])
    rows, pool = [], []
    for _ in range(steps):
        if len(pool) < batch_ids:
            pool += [int(c) for c in rng.permutation(classes) if c not in pool]
        rows.append(pool[:batch_ids])
        pool = pool[batch_ids:]
    order = np.array(rows, dtype=np.int64)
    order.setflags(write=False)
    return order
