"""manifest → batches. The only package that imports DALI (lazily, in ``dali_*`` modules).

Loaders come from a registry, like the dataset readers: ``list_loaders()`` names them,
``make_train_loader(kind, shards, sampling, backend)`` and ``make_eval_loader(kind, shards,
samples, ...)`` build them with typed settings (``vireid.loader.settings``). Entries name
their classes as ``module:Class`` so that choosing the reference loader never imports DALI.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from vireid.choices import LoaderKind
from vireid.loader.settings import EVAL_BATCH_SIZE, Backend, Sampling


@dataclass(frozen=True)
class LoaderEntry:
    train: str  # "module:Class" of the training loader
    evaluation: str  # "module:Class" of the evaluation loader
    uses_backend: bool  # takes ``Backend`` settings (the reference loader works on the CPU)
    summary: str


LOADERS: dict[LoaderKind, LoaderEntry] = {
    LoaderKind.DALI: LoaderEntry("vireid.loader.dali_loader:TrainLoader",
                                 "vireid.loader.dali_eval:EvalLoader", True,
                                 "NVIDIA DALI decoding and augmentation, CPU or GPU"),
    LoaderKind.REFERENCE: LoaderEntry("vireid.loader.reference:ReferenceTrainLoader",
                                      "vireid.loader.reference:ReferenceEvalLoader", False,
                                      "PIL + torchvision on the CPU, no DALI: the tests' oracle"),
}


def list_loaders() -> list[str]:
    return [kind.value for kind in LOADERS]


def _entry(kind) -> LoaderEntry:
    return LOADERS[LoaderKind.parse(kind, "loader")]


def _load(target: str):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def make_train_loader(kind, shards, sampling: Sampling | None = None,
                      backend: Backend | None = None, *, augment: bool = True, rank: int = 0,
                      world_size: int = 1):
    """A training loader of ``kind`` over ``shards`` (a folder or an open ``ShardBytes``)."""
    entry = _entry(kind)
    extra = {"backend": backend} if entry.uses_backend else {}
    return _load(entry.train)(shards, sampling, augment=augment, rank=rank,
                              world_size=world_size, **extra)


def make_eval_loader(kind, shards, samples, *, batch_size: int = EVAL_BATCH_SIZE,
                     size: tuple[int, int] | None = None, shard_id: int = 0,
                     num_shards: int = 1, backend: Backend | None = None):
    """An evaluation loader of ``kind``: the requested samples once each, in storage order."""
    entry = _entry(kind)
    extra = {"backend": backend} if entry.uses_backend else {}
    return _load(entry.evaluation)(shards, samples, batch_size=batch_size, size=size,
                                   shard_id=shard_id, num_shards=num_shards, **extra)


def __getattr__(name: str):
    """``from vireid.loader import TrainLoader, EvalLoader`` without importing DALI eagerly."""
    targets = {"TrainLoader": LOADERS[LoaderKind.DALI].train,
               "EvalLoader": LOADERS[LoaderKind.DALI].evaluation,
               "ReferenceTrainLoader": LOADERS[LoaderKind.REFERENCE].train,
               "ReferenceEvalLoader": LOADERS[LoaderKind.REFERENCE].evaluation}
    if name in targets:
        return _load(targets[name])
    raise AttributeError(name)
