"""What one training step loads, shared by every loader: samples, labels, augmentation.

A step's global batch is P·K visible then P·K infrared images (CAJ's channel views: P·K
visible, the same P·K visible again as a second view, then P·K infrared); its augmentation
parameters are drawn for the whole global batch and each rank takes its share of every group,
so a run's pixels do not depend on the number of processes.

The method's ``Augmentation`` (its dataset's erase area and fill, DEEN's random gray) shapes
the draws: the gray flags come from their own generator, so the crop, flip and erase draws,
and CAJ's channel draws, are the same with or without them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vireid.choices import Views
from vireid.loader.augment import (
    CAJ_ERASE_FILL,
    ERASE_P,
    Augmentation,
    AugmentParams,
    draw_adaptive_gray,
    draw_channel_exchange,
    draw_gray,
    draw_params,
    identity_mix,
    identity_params,
)
from vireid.loader.sampler import (
    AUGMENT_STREAM,
    CHANNEL_STREAM,
    GRAY_STREAM,
    IdentitySampler,
    step_rng,
)


@dataclass(frozen=True)
class StepPlan:
    epoch: int
    step: int
    samples: np.ndarray  # this rank's share of each group: visible (, visible), infrared
    labels: np.ndarray  # labels of one group's share (equal for every group)
    params: AugmentParams  # aligned with ``samples``
    visible_views: int = 1  # groups of visible images before the infrared one


def visible_views(views: Views | None) -> int:
    return 2 if views == Views.CHANNEL else 1


def plan_step(sampler: IdentitySampler, epoch: int, step: int, *, augment: bool, height: int,
              width: int, rank: int = 0, world_size: int = 1,
              erase_prob: float = ERASE_P, views: Views | None = None,
              augmentation: Augmentation | None = None) -> StepPlan:
    """This rank's share of step ``step`` of ``epoch``: samples, labels and augmentation
    parameters (``augmentation``: the method's on this dataset; None: AGW's)."""
    drawn = sampler.step(epoch, step, rank, world_size)
    per_group = sampler.batch_ids * sampler.num_pos
    groups = visible_views(views) + 1
    augmentation = augmentation or Augmentation()
    if augment:
        rng = step_rng(sampler.seed, epoch, step, AUGMENT_STREAM)
        params = draw_params(rng, groups * per_group, height, width, erase_prob,
                             augmentation.erase_area)
    else:
        params = identity_params(groups * per_group)
    if views == Views.CHANNEL:
        params = _channel_views(params, sampler, epoch, step, per_group, augment)
    params = _method_augmentation(params, augmentation, sampler, epoch, step, augment)
    share = len(drawn.labels)
    picked = np.concatenate([g * per_group + np.arange(rank * share, (rank + 1) * share)
                             for g in range(groups)])
    samples = [drawn.visible] * (groups - 1) + [drawn.infrared]
    return StepPlan(epoch, step, np.concatenate(samples), drawn.labels, params.take(picked),
                    groups - 1)


def _channel_views(params: AugmentParams, sampler: IdentitySampler, epoch: int, step: int,
                   per_group: int, augment: bool) -> AugmentParams:
    """CAJ's views: the recipe's erase fill on all three groups, channel exchange on the
    second visible view, adaptive gray on infrared (from their own generator, so the crop,
    flip and erase draws are those of the other methods)."""
    if augment:
        rng = step_rng(sampler.seed, epoch, step, CHANNEL_STREAM)
        mix = np.concatenate([identity_mix(per_group), draw_channel_exchange(rng, per_group),
                              draw_adaptive_gray(rng, per_group)])
    else:
        mix = None
    return AugmentParams(params.top, params.left, params.flip, params.erase, mix,
                         CAJ_ERASE_FILL)


def _method_augmentation(params: AugmentParams, augmentation: Augmentation,
                         sampler: IdentitySampler, epoch: int, step: int,
                         augment: bool) -> AugmentParams:
    """The method's erase fill (where it has one) and gray flags on every image of both
    modalities (DEEN), drawn from their own generator."""
    gray = None
    if augment and augmentation.gray > 0:
        rng = step_rng(sampler.seed, epoch, step, GRAY_STREAM)
        gray = draw_gray(rng, len(params), augmentation.gray)
    fill = params.fill if augmentation.fill is None else tuple(augmentation.fill)
    return AugmentParams(params.top, params.left, params.flip, params.erase, params.mix,
                         fill, gray)


def eval_share(samples, shard_id: int = 0, num_shards: int = 1) -> np.ndarray:
    """This rank's contiguous slice of the sorted, unique evaluation samples — the same split
    DALI's readers make with ``shard_id``/``num_shards``."""
    wanted = np.unique(np.asarray(samples, dtype=np.int64))
    return wanted[shard_id * len(wanted) // num_shards:
                  (shard_id + 1) * len(wanted) // num_shards]
