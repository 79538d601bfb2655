"""Fake raw trees in the exact layouts of SYSU-MM01, RegDB and LLCM, for tests and demos.

Real datasets are licensed and never enter the repository. ``make_fake`` writes small trees
whose pixels carry a per-identity pattern shared by the visible and infrared renderings, so a
model can learn to match across modalities. The same arguments give byte-identical trees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from vireid.errors import VireidError
from vireid.fake import llcm, regdb, sysu

MAKERS = MappingProxyType({"sysu": sysu, "regdb": regdb, "llcm": llcm})


@dataclass(frozen=True)
class FakeTree:
    dataset: str
    root: Path
    num_images: int
    num_ids: int


def list_fake_datasets() -> list[str]:
    return sorted(MAKERS)


def make_fake(dataset: str, root: Path, *, ids: int | None = None,
              images_per_camera: int | None = None, seed: int = 0) -> FakeTree:
    """Write a fake ``dataset`` tree at ``root`` (which must not exist or be empty)."""
    if dataset not in MAKERS:
        raise VireidError(dataset, f"unknown dataset (choose from {', '.join(MAKERS)})")
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise VireidError(root, "already exists and is not empty")
    module = MAKERS[dataset]
    ids = module.DEFAULT_IDS if ids is None else ids
    images = module.DEFAULT_IMAGES if images_per_camera is None else images_per_camera
    if ids < 4 or images < 1:
        raise VireidError(root, "a fake tree needs at least 4 ids and 1 image per camera")
    root.mkdir(parents=True, exist_ok=True)
    written = module.make(root, ids, images, np.random.default_rng(seed))
    return FakeTree(dataset, root, written, ids + (ids % 2 if dataset == "regdb" else 0))
