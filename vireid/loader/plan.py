"""What one training step loads, shared by every loader: samples, labels, augmentation.

A step's global batch is P·K visible then P·K infrared images; its augmentation parameters are
drawn for the whole global batch and each rank takes its share, so a run's pixels do not
depend on the number of processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vireid.loader.augment import ERASE_P, AugmentParams, draw_params, identity_params
from vireid.loader.sampler import AUGMENT_STREAM, IdentitySampler, step_rng


@dataclass(frozen=True)
class StepPlan:
    epoch: int
    step: int
    samples: np.ndarray  # this rank's visible share, then its infrared share
    labels: np.ndarray  # labels of one modality's share (equal for both)
    params: AugmentParams  # aligned with ``samples``


def plan_step(sampler: IdentitySampler, epoch: int, step: int, *, augment: bool, height: int,
              width: int, rank: int = 0, world_size: int = 1,
              erase_prob: float = ERASE_P) -> StepPlan:
    drawn = sampler.step(epoch, step, rank, world_size)
    per_modality = sampler.batch_ids * sampler.num_pos
    if augment:
        rng = step_rng(sampler.seed, epoch, step, AUGMENT_STREAM)
        params = draw_params(rng, 2 * per_modality, height, width, erase_prob)
    else:
        params = identity_params(2 * per_modality)
    share = len(drawn.labels)
    picked = np.concatenate([np.arange(rank * share, (rank + 1) * share),
                             per_modality + np.arange(rank * share, (rank + 1) * share)])
    params = AugmentParams(params.top[picked], params.left[picked], params.flip[picked],
                           params.erase[picked])
    return StepPlan(epoch, step, np.concatenate([drawn.visible, drawn.infrared]), drawn.labels,
                    params)


def eval_share(samples, shard_id: int = 0, num_shards: int = 1) -> np.ndarray:
    """This rank's contiguous slice of the sorted, unique evaluation samples — the same split
    DALI's readers make with ``shard_id``/``num_shards``."""
    wanted = np.unique(np.asarray(samples, dtype=np.int64))
    return wanted[shard_id * len(wanted) // num_shards:
                  (shard_id + 1) * len(wanted) // num_shards]
