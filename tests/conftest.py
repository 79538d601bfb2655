"""Session-wide fake trees and shard folders, built once and shared by the tests.

Tests that modify files must copy them first (``copy_shards``). Tests that need a GPU or NVIDIA
DALI skip, with the reason, on machines without one.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest

from vireid.datasets import read_dataset
from vireid.shards.build import BuildOptions, build_shards
from vireid.shards.encode import Encoding

DALI_REASON = "needs NVIDIA DALI (pip install 'vireid[cuda130]')"


@functools.cache
def has_dali() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def skip_without_dali(items) -> None:
    """Tests marked `dali` skip where DALI is not importable; a test needs the mark when it
    uses DALI in any way: importing it, the DALI loaders (directly or through vireid-train /
    vireid-test, whose default loader is DALI), or DALI's wds2idx tool. A missing mark is
    caught by tests/test_dali_markers.py, which runs tests with DALI made unimportable."""
    if has_dali():
        return
    for item in items:
        if item.get_closest_marker("dali"):
            item.add_marker(pytest.mark.skip(reason=DALI_REASON))


def pytest_collection_modifyitems(config, items):
    """GPU and DALI tests skip, with a reason, where CUDA or DALI is absent."""
    skip_without_dali(items)
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fake_tree(tmp_path_factory):
    """``fake_tree(dataset)`` → root of a small generated raw tree (cached per dataset)."""
    from vireid.fake import make_fake

    cache: dict[str, Path] = {}

    def make(dataset: str) -> Path:
        if dataset not in cache:
            root = tmp_path_factory.mktemp(f"raw-{dataset}") / dataset
            cache[dataset] = make_fake(dataset, root, seed=0).root
        return cache[dataset]

    return make


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory, fake_tree):
    """``shard_dir(dataset, encoding="jpeg")`` → a built shard folder (cached, read-only)."""
    cache: dict[tuple[str, str], Path] = {}

    def make(dataset: str, encoding: str = "jpeg", **options) -> Path:
        key = (dataset, encoding, tuple(sorted(options.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"shards-{dataset}-{encoding}") / "out"
            build_shards(read_dataset(dataset, fake_tree(dataset)), out,
                         BuildOptions(encoding=Encoding(encoding), workers=1, **options))
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture
def copy_shards(tmp_path):
    """``copy_shards(folder)`` → a private copy that a test may damage."""

    def make(folder: Path) -> Path:
        target = tmp_path / f"copy-{folder.parent.name}"
        shutil.copytree(folder, target)
        return target

    return make
