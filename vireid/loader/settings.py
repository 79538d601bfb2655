"""The loaders' settings: what each training step draws, and where batches are made.

Each default is written here once; the trainer's configuration and the CLI read them from
these classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from vireid.choices import Cache, CpuAugment, SamplerOrder, Views
from vireid.loader.augment import ERASE_P


@dataclass(frozen=True)
class Sampling:
    """What each step draws: P identities × K images per modality from a training view."""

    batch_ids: int = 8  # P (the original's --batch-size)
    num_pos: int = 4  # K
    seed: int = 0
    replace: bool = True  # K images drawn with replacement, as the original
    order: SamplerOrder = SamplerOrder.EPOCH
    trial: int | None = None  # the training view of datasets trained per trial (RegDB)
    # random erasing probability (0: none, as the code behind the published SYSU and RegDB
    # AGW numbers; 0.5: the AGW recipe vireid follows)
    erase_prob: float = ERASE_P
    views: Views | None = None  # None: Views.SINGLE (a training run: its method's views)


@dataclass(frozen=True)
class Backend:
    """Where and how batches are decoded and augmented (the DALI loader; the reference
    loader always works in Python on the CPU and has no such settings)."""

    device: str = "cpu"  # "cpu" or "cuda" (resolved: never "auto" here)
    device_id: int = 0
    num_threads: int | None = None  # None: cores + 1 for training, cores for evaluation
    prefetch: int = 2  # batches DALI prepares ahead
    cpu_augment: CpuAugment = CpuAugment.FUSED
    cache: Cache = Cache.NONE  # decode every training image once and keep it (see cache.py)


EVAL_BATCH_SIZE = 64  # images per evaluation forward pass (the original's test batch)
