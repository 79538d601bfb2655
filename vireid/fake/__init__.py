"""Fake raw trees in the exact layouts of SYSU-MM01, RegDB and LLCM, for tests and demos.

Real datasets are licensed and never enter the repository. ``make_fake`` writes small trees
that ``vireid.datasets.read_dataset`` reads like the real ones, whose pixels carry a
per-identity pattern shared by the visible and infrared renderings (so a model can learn to
match across modalities). The same arguments give byte-identical trees: every random choice
comes from one ``numpy.random.Generator`` seeded with ``seed`` and passed down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from vireid.errors import VireidError
from vireid.fake import llcm, regdb, sysu

MAKERS = MappingProxyType({"sysu": sysu, "regdb": regdb, "llcm": llcm})
MIN_IDS = 4  # enough for a non-empty train and test split in every layout


@dataclass(frozen=True)
class FakeTree:
    """What ``make_fake`` wrote: ``num_images`` image files of ``num_ids`` identities."""

    dataset: str
    root: Path
    num_images: int
    num_ids: int


def list_fake_datasets() -> list[str]:
    """Names ``make_fake`` accepts (the same as ``vireid.datasets.list_datasets``)."""
    return sorted(MAKERS)


def make_fake(dataset: str, root: Path, *, ids: int | None = None,
              images_per_camera: int | None = None, seed: int = 0) -> FakeTree:
    """Write a fake ``dataset`` tree at ``root``, which must not exist or be empty.

    ``images_per_camera`` is per identity and camera folder (RegDB: per identity and
    modality). ``None`` picks each dataset's small default (SYSU 16 ids × 3, RegDB 12 × 10,
    LLCM 16 × 2).
    """
    if dataset not in MAKERS:
        raise VireidError(dataset, f"unknown dataset (choose from {', '.join(MAKERS)})")
    maker = MAKERS[dataset]
    ids = maker.DEFAULT_IDS if ids is None else ids
    images = maker.DEFAULT_IMAGES if images_per_camera is None else images_per_camera
    if ids < MIN_IDS or images < 1:
        raise VireidError(root, f"a fake tree needs at least {MIN_IDS} ids and 1 image per "
                                f"camera (got {ids} ids, {images} images)")
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise VireidError(root, "already exists and is not empty")
    root.mkdir(parents=True, exist_ok=True)
    written = maker.make(root, ids, images, np.random.default_rng(seed))
    return FakeTree(dataset, root, written, ids)
