"""Fake raw trees in the exact layouts of SYSU-MM01, RegDB and LLCM, for tests and demos.

Real datasets are licensed and never enter the repository. ``make_fake`` writes small trees
that ``vireid.datasets.read_dataset`` reads like the real ones, whose pixels carry a
per-identity pattern shared by the visible and infrared renderings (so a model can learn to
match across modalities). The same arguments give byte-identical trees: every random choice
comes from one ``numpy.random.Generator`` seeded with ``seed`` and passed down.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from vireid.errors import VireidError
from vireid.fake import llcm, regdb, sysu
from vireid.shards.safety import check_creatable, create_parents, remove_empty, write_error

MAKERS = MappingProxyType({"sysu": sysu, "regdb": regdb, "llcm": llcm})
MIN_IDS = 4  # the fewest that give every layout a non-empty train and test split
# Per identity and camera folder; real trees hold about 10-25. Bounded so that a typo cannot
# start an hours-long run.
MAX_IMAGES_PER_CAMERA = 100


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


def max_ids() -> dict[str, int]:
    """The most identities each layout can hold (its pids must fit the reader's rules)."""
    return {name: MAKERS[name].MAX_IDS for name in list_fake_datasets()}


def make_fake(dataset: str, root: Path, *, ids: int | None = None,
              images_per_camera: int | None = None, seed: int = 0) -> FakeTree:
    """Write a fake ``dataset`` tree at ``root``, which must not exist or be empty.

    ``images_per_camera`` is per identity and camera folder (RegDB: per identity and
    modality). ``None`` picks each dataset's small default (SYSU 16 ids × 3, RegDB 12 × 10,
    LLCM 16 × 2).
    """
    if dataset not in MAKERS:
        raise VireidError(dataset, f"unknown dataset (choose from {', '.join(MAKERS)})")
    maker, root = MAKERS[dataset], Path(root)
    ids = maker.DEFAULT_IDS if ids is None else ids
    images = maker.DEFAULT_IMAGES if images_per_camera is None else images_per_camera
    _check_size(dataset, root, ids, images)
    _check_root(root)
    rng = np.random.default_rng(seed)
    written = _write_tree(root, lambda: maker.make(root, ids, images, rng))
    return FakeTree(dataset, root, written, ids)


def _check_size(dataset: str, root: Path, ids: int, images: int) -> None:
    """Bounds before any work: the layout's ids must fit the reader, and the run be short."""
    maker = MAKERS[dataset]
    if not MIN_IDS <= ids <= maker.MAX_IDS or not 1 <= images <= MAX_IMAGES_PER_CAMERA:
        raise VireidError(root, f"a fake {dataset} tree needs at least {MIN_IDS} ids and at "
                          f"most {maker.MAX_IDS} ({maker.IDS_LIMIT}), and 1 to "
                          f"{MAX_IMAGES_PER_CAMERA} images per camera (got {ids} ids, "
                          f"{images} images)")


def _check_root(root: Path) -> None:
    """``root`` must be new or an empty folder, and creatable (no file on its way)."""
    try:
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise VireidError(root, "already exists and is not empty")
    except OSError as error:
        raise VireidError(root, f"cannot list it ({error.strerror})") from None
    check_creatable(root)


def _write_tree(root: Path, write: Callable[[], int]) -> int:
    """Create ``root`` and run ``write``; on any failure (a full disk, a read-only place,
    Ctrl-C) remove everything written, the folders created included."""
    created: list[Path] = []
    try:
        created = create_parents(root)
        return write()
    except BaseException as error:
        _empty(root)
        remove_empty(created)
        if isinstance(error, OSError):
            raise write_error(root, error) from None
        raise


def _empty(root: Path) -> None:
    """Remove what ``root`` holds (it was empty or new before the tree was written)."""
    for entry in root.iterdir() if root.is_dir() else ():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
