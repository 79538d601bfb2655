"""A fake SYSU-MM01 tree: ``cam1..cam6/<pid>/<n>.jpg`` and ``exp/{train,val,test}_id.txt``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vireid.datasets.sysu import INFRARED_CAMS, VISIBLE_CAMS
from vireid.fake.render import random_size, render, save

DEFAULT_IDS = 16
DEFAULT_IMAGES = 3


def make(root: Path, ids: int, images_per_camera: int, rng: np.random.Generator) -> int:
    pids = sorted(int(p) for p in rng.choice(np.arange(1, 3 * ids + 1), ids, replace=False))
    order = rng.permutation(pids)
    test_count = max(2, ids * 3 // 8)
    val_count = max(1, ids // 8)
    splits = {"test": order[:test_count], "val": order[test_count:test_count + val_count],
              "train": order[test_count + val_count:]}
    for cam in VISIBLE_CAMS + INFRARED_CAMS:
        (root / f"cam{cam}").mkdir(parents=True, exist_ok=True)
    written = 0
    for number, pid in enumerate(pids):
        for cam in _cameras(rng, force_gap=number == 0):
            for n in range(1, images_per_camera + 1):
                image = render(pid, cam in INFRARED_CAMS, random_size(rng), rng)
                save(image, root / f"cam{cam}" / f"{pid:04d}" / f"{n:04d}.jpg")
                written += 1
    (root / "exp").mkdir()
    for name, members in splits.items():
        text = ",".join(str(p) for p in sorted(int(m) for m in members))
        (root / "exp" / f"{name}_id.txt").write_text(text + "\n")
    return written


def _cameras(rng: np.random.Generator, force_gap: bool) -> list[int]:
    """A random subset with at least one visible and one infrared camera."""
    visible = [c for c in VISIBLE_CAMS if rng.random() < 0.8] or [VISIBLE_CAMS[0]]
    infrared = [c for c in INFRARED_CAMS if rng.random() < 0.8] or [INFRARED_CAMS[0]]
    if force_gap and len(visible) == len(VISIBLE_CAMS):
        visible = visible[:-1]  # guarantee that some pid misses some camera
    return sorted(visible + infrared)
