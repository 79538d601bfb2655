"""manifest → batches. The only package that imports DALI (lazily, in ``dali_*`` modules).

Loaders come from a registry, like the dataset readers: ``list_loaders()`` names them,
``make_train_loader(kind, shards, sampling, backend)`` and ``make_eval_loader(kind, shards,
samples, ...)`` build them with typed settings (``vireid.loader.settings``). Entries name
their classes as ``module:Class`` so that choosing the reference loader never imports DALI.

A training loader computes ONE route from its kind, its ``Backend`` and the shards'
encoding (``route.training_route``, looking the settings up in ``route.ROUTES``, this table
as data); nothing else decides it. Every route applies the step plan's per-image parameters
(``plan.py``) with a member of the augmenter family (``augmenters.py``: uint8 N×H×W×3 +
``AugmentParams`` → float16 N×H×W×3), so their pixels agree:

=========  ======  ===========  ===========  =============  ============  ===============
loader     device  cache        cpu_augment  pixels         augmenter     the cache lives
=========  ======  ===========  ===========  =============  ============  ===============
dali       cuda    none         any          DALI graph     graph (GPU)   –
dali       cpu     none         fused        DALI decoding  fused         –
dali       cpu     none         dali         DALI graph     graph (CPU)   –
dali       cuda    device       any          decoded cache  tensor (GPU)  GPU memory
dali       cuda    host         any          decoded cache  tensor (GPU)  host (pageable)
dali       cpu     host/device  any          decoded cache  fused         host
reference  any     none         any          PIL            reference     –
reference  any     host/device  any          refused: no decoded cache
=========  ======  ===========  ===========  =============  ============  ===============

- DALI graph: ``dali_pipes.train_pipeline`` decodes each step's crop regions and augments
  with ``dali_augment.augment_nodes``; batches are copied into PyTorch's memory on CUDA
  (``handoff.py``).
- DALI decoding: ``dali_pipes.decode_pipeline`` decodes ahead on DALI's threads; the loader
  augments each batch it gets with the step's plan.
- decoded cache: ``cache.py`` (first pass ``dali_decode.py``, memory check ``memory.py``);
  a step gathers its rows and augments them. On CUDA, host rows are gathered into pinned
  memory and copied without waiting.
- PIL: ``reference.py``; its batches are made on the CPU whatever the run's device.

Decoding: raw shards need none; JPEG/PNG are decoded by DALI's CPU decoder on a CPU run, by
nvJPEG (``mixed``) on a CUDA one unless ``DecoderOptions.on`` is ``cpu``
(``route.decoding_on``), by PIL in the reference loader. ``Route`` holds the outcome:
``pixels``, ``augmenter``, ``device``, ``decoder`` and where the cache lives.

The files a new view kind (new per-image augmentation) touches: ``augment.py`` (the
parameter and its draw), ``plan.py`` (which views draw it), the family's four members
(``fused.py``, ``tensor_augment.py``, ``dali_augment.py``, ``reference.py``; and
``dali_graph.py`` if a new GPU operator lacks a kernel for a type) and a case in
``tests/loader/test_augmenters.py``; a new value of ``Views`` also ``vireid/choices.py``.
The routes, loaders, cache and pipelines pass ``AugmentParams`` through untouched.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from vireid.choices import LoaderKind
from vireid.loader.augment import Augmentation
from vireid.loader.settings import EVAL_BATCH_SIZE, Backend, Sampling


@dataclass(frozen=True)
class LoaderEntry:
    train: str  # "module:Class" of the training loader
    evaluation: str  # "module:Class" of the evaluation loader
    eval_backend: bool  # the evaluation loader takes ``Backend`` (the reference: the CPU)
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
                      world_size: int = 1, augmentation: Augmentation | None = None):
    """A training loader of ``kind`` over ``shards`` (a folder or an open ``ShardBytes``),
    on the route ``backend`` and the shards' encoding give it (the table above), with the
    method's ``augmentation`` on the shards' dataset (None: AGW's)."""
    return _load(_entry(kind).train)(shards, sampling, backend, augment=augment, rank=rank,
                                     world_size=world_size, augmentation=augmentation)


def make_eval_loader(kind, shards, samples, *, batch_size: int = EVAL_BATCH_SIZE,
                     size: tuple[int, int] | None = None, shard_id: int = 0,
                     num_shards: int = 1, backend: Backend | None = None):
    """An evaluation loader of ``kind``: the requested samples once each, in storage order."""
    entry = _entry(kind)
    extra = {"backend": backend} if entry.eval_backend else {}
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
