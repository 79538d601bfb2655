"""The augmenter family: uint8 N×H×W×3 images + per-image ``AugmentParams`` → float16
N×H×W×3 (docs/recipe.md, Augmentation; docs/methods.md, Views).

Every route of a training batch (``vireid.loader.route``) ends in one member:

- ``fused``: the numba kernel (``fused.py``; threads and buffers in ``fused_augment.py``),
  CPU. The DALI-decoded route and the cached routes of a CPU run.
- ``tensor``: batched torch operations (``tensor_augment.py``), CPU or GPU. The cached
  routes of a CUDA run.
- ``graph``: DALI's operators (``dali_augment.py``), CPU or GPU. Inside the DALI graph of
  the graph routes (``dali_pipes.train_pipeline``).
- ``reference``: PIL + torchvision (``reference.py``), CPU. The reference loader, and the
  oracle of the others.

Every member applies the same ``AugmentParams``: crop, flip, erase box and fill, CAJ's
channel mixing and DEEN's gray. DEEN's gray is PIL's ``convert('L')`` (the authors'
RandomGrayscale on a PIL image) computed in integers on the uint8 pixels before
normalisation, ``(19595·R + 38470·G + 7471·B + 32768) >> 16``, so every member gives PIL's
value exactly: the fused kernel and the tensor ops in integer arithmetic, the DALI graph
with exact float32 integer sums (``dali_augment``), the reference with PIL itself.

``tests/loader/test_augmenters.py`` runs every member on the same images and parameters and
compares each with the reference, bit for bit (CAJ's gray channel mix of normalised values
may round one float16 step apart: each member normalises in its own float32 arithmetic);
``tests/loader/test_deen_augment.py`` checks the gray against PIL on every colour.

A new view kind (new per-image parameters, as DEEN's gray flag was) touches: ``augment.py``
(an ``AugmentParams`` field and its draw), ``plan.py`` (which views or which method's
``Augmentation`` draw it), the four members (``fused.py``, ``tensor_augment.py``,
``dali_augment.py``, ``reference.py``) and a case in ``tests/loader/test_augmenters.py``. The
routes, the loaders, the decoded cache and the pipelines pass ``AugmentParams`` through
untouched.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from vireid.loader.augment import AugmentParams
from vireid.loader.route import AugmenterKind


class Augmenter(Protocol):
    """``augmenter(images, params, rows)`` → float16 N×H×W×3 tensor on the augmenter's
    device. ``images``: uint8 N×H×W×3 (numpy or torch, host or the augmenter's device);
    with ``rows`` (int64 indices) the batch is ``images[rows]``, gathered where the member
    does it cheapest. ``close()`` releases threads or pipelines."""

    def __call__(self, images, params: AugmentParams,
                 rows: np.ndarray | None = None) -> torch.Tensor: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class AugmenterEntry:
    target: str  # "module:Class", imported when made (the reference never imports DALI)
    devices: tuple[str, ...]  # where it runs
    dali: bool = False  # needs NVIDIA DALI


AUGMENTERS: dict[AugmenterKind, AugmenterEntry] = {
    AugmenterKind.FUSED: AugmenterEntry("vireid.loader.fused_augment:FusedAugmenter",
                                        ("cpu",)),
    AugmenterKind.TENSOR: AugmenterEntry("vireid.loader.tensor_augment:TensorAugmenter",
                                         ("cpu", "cuda")),
    AugmenterKind.GRAPH: AugmenterEntry("vireid.loader.dali_augment:GraphAugmenter",
                                        ("cpu", "cuda"), dali=True),
    AugmenterKind.REFERENCE: AugmenterEntry("vireid.loader.reference:ReferenceAugmenter",
                                            ("cpu",)),
}


def list_augmenters() -> list[str]:
    return [kind.value for kind in AUGMENTERS]


def make_augmenter(kind, *, device: str = "cpu", device_id: int = 0,
                   threads: int = 1) -> Augmenter:
    """A member of the family on ``device``, with ``threads`` worker threads where it has
    any."""
    kind = AugmenterKind.parse(kind, "augmenter")
    entry = AUGMENTERS[kind]
    if device not in entry.devices:
        raise ValueError(f"the {kind} augmenter runs on {' or '.join(entry.devices)}, "
                         f"not {device}")
    module, name = entry.target.split(":")
    made = getattr(importlib.import_module(module), name)
    return made(device=device, device_id=device_id, threads=threads)


def gathered(images, rows: np.ndarray | None) -> np.ndarray:
    """A CPU member's batch: ``images`` (or its ``rows``) as one uint8 numpy array."""
    array = images.numpy() if torch.is_tensor(images) else np.asarray(images)
    return array if rows is None else array[np.asarray(rows, np.int64)]
