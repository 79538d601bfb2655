"""A fake SYSU-MM01 tree: ``cam1..cam6/<pid 4 digits>/<n 4 digits>.jpg`` and
``exp/{train,val,test}_id.txt`` (one line of comma separated pids each).

Pids are drawn from 1..3·ids so they have gaps like the real ones; the split is about
half train, an eighth val and three eighths test (16 ids → 8 / 2 / 6). Every pid gets a random
subset of the cameras with at least one visible and one infrared camera, and the first pid
always misses a visible camera, so the "not every pid has every camera" case is always present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vireid.datasets.sysu import INFRARED_CAMS, VISIBLE_CAMS
from vireid.fake.render import random_size, render, save, write_lines

DEFAULT_IDS = 16
DEFAULT_IMAGES = 3
MAX_IDS = 9999 // 3
IDS_LIMIT = "its pids, drawn from 1..3·ids, are 4-digit folder names"
CAMERA_PROBABILITY = 0.75


def make(root: Path, ids: int, images_per_camera: int, rng: np.random.Generator) -> int:
    """Write the tree; return the number of images."""
    pids = sorted(int(p) for p in rng.choice(np.arange(1, 3 * ids + 1), ids, replace=False))
    for cam in sorted(VISIBLE_CAMS + INFRARED_CAMS):
        (root / f"cam{cam}").mkdir(parents=True)
    written = 0
    for number, pid in enumerate(pids):
        for cam in cameras(rng, force_gap=number == 0):
            for n in range(1, images_per_camera + 1):
                image = render(pid, cam in INFRARED_CAMS, random_size(rng), rng)
                save(image, root / f"cam{cam}" / f"{pid:04d}" / f"{n:04d}.jpg")
                written += 1
    for name, members in split(pids, rng).items():
        write_lines(root / "exp" / f"{name}_id.txt", [",".join(map(str, members))])
    return written


def split(pids: list[int], rng: np.random.Generator) -> dict[str, list[int]]:
    """Random disjoint train / val / test id lists, each sorted and non-empty (ids ≥ 4)."""
    order = [int(p) for p in rng.permutation(pids)]
    test = max(2, round(len(pids) * 3 / 8))
    val = max(1, len(pids) // 8)
    return {"train": sorted(order[test + val:]), "val": sorted(order[test:test + val]),
            "test": sorted(order[:test])}


def cameras(rng: np.random.Generator, force_gap: bool) -> list[int]:
    """A random camera subset with at least one visible and one infrared camera."""
    visible = [c for c in VISIBLE_CAMS if rng.random() < CAMERA_PROBABILITY]
    infrared = [c for c in INFRARED_CAMS if rng.random() < CAMERA_PROBABILITY]
    visible = visible or [VISIBLE_CAMS[int(rng.integers(len(VISIBLE_CAMS)))]]
    infrared = infrared or [INFRARED_CAMS[int(rng.integers(len(INFRARED_CAMS)))]]
    if force_gap and len(visible) == len(VISIBLE_CAMS):
        visible.pop(int(rng.integers(len(visible))))
    return sorted(visible + infrared)
