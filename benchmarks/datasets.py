"""Benchmark inputs: fake SYSU-MM01 trees and their shards, cached under one work folder."""

from __future__ import annotations

from pathlib import Path

from vireid.datasets import read_dataset
from vireid.fake import make_fake
from vireid.shards.build import BuildOptions, build_shards
from vireid.shards.encode import Encoding
from vireid.shards.manifest import load_manifest


def fake_sysu(work: Path, ids: int, images_per_camera: int) -> Path:
    root = work / f"SYSU-{ids}x{images_per_camera}"
    if not root.exists():
        make_fake("sysu", root, ids=ids, images_per_camera=images_per_camera, seed=0)
    return root


def shards_of(root: Path, encoding: str, work: Path) -> Path:
    out = work / f"{root.name}-{encoding}"
    if not (out / "manifest.json").exists():
        build_shards(read_dataset("sysu", root), out,
                     BuildOptions(encoding=Encoding(encoding), overwrite=True))
    return out


def mean_encoded_kb(shards: Path) -> float:
    manifest = load_manifest(shards)
    from vireid.loader.source import ShardBytes

    sizes = ShardBytes(shards, manifest).sizes
    return float(sizes.mean() / 1024)


def training_arrays(root: Path, height: int = 288, width: int = 144):
    """The original's in-RAM training set: (vis images, vis labels, ir images, ir labels)."""
    import numpy as np

    from benchmarks.original.loader import load_all

    raw = read_dataset("sysu", root)
    view = raw.train_views[0]
    arrays = []
    for part in (view.visible, view.infrared):
        paths = [root / raw.records[i].path for i in part.samples]
        arrays += [load_all(paths, height, width), np.array(part.labels)]
    return tuple(arrays)
