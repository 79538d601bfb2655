"""Loaders built from flat keyword settings, as tests like to write them.

``train_loader("dali", shards, batch_ids=4, cpu_augment="dali")`` sorts the keywords into the
typed groups the library takes (``Sampling``, ``Backend``); an unknown keyword is an error.
"""

from __future__ import annotations

from dataclasses import fields

from vireid.loader import make_eval_loader, make_train_loader
from vireid.loader.settings import Backend, Sampling

SAMPLING = {f.name for f in fields(Sampling)}
BACKEND = {f.name for f in fields(Backend)}


def _split(settings: dict) -> tuple[dict, dict]:
    unknown = set(settings) - SAMPLING - BACKEND
    if unknown:
        raise TypeError(f"unknown loader settings: {sorted(unknown)}")
    return ({k: v for k, v in settings.items() if k in SAMPLING},
            {k: v for k, v in settings.items() if k in BACKEND})


def train_loader(kind, shards, *, augment: bool = True, rank: int = 0, world_size: int = 1,
                 **settings):
    sampling, backend = _split(settings)
    return make_train_loader(kind, shards, Sampling(**sampling), Backend(**backend),
                             augment=augment, rank=rank, world_size=world_size)


def eval_loader(kind, shards, samples, *, batch_size: int = 64, size=None, shard_id: int = 0,
                num_shards: int = 1, **backend):
    return make_eval_loader(kind, shards, samples, batch_size=batch_size, size=size,
                            shard_id=shard_id, num_shards=num_shards, backend=Backend(**backend))
