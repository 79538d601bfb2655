"""A fake LLCM tree: training lists over ``vis/`` and ``nir/``, test images under
``test_vis/cam1..9`` and ``test_nir/cam{1,2,4..9}`` (there is no ``test_nir/cam3``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vireid.datasets.llcm import INFRARED_CAMS, VISIBLE_CAMS
from vireid.fake.render import random_size, render, save

DEFAULT_IDS = 16
DEFAULT_IMAGES = 2
TAGS = {"vis": VISIBLE_CAMS, "nir": INFRARED_CAMS}


def make(root: Path, ids: int, images_per_camera: int, rng: np.random.Generator) -> int:
    pids = sorted(int(p) for p in rng.choice(np.arange(1, 2 * ids + 1), ids, replace=False))
    order = rng.permutation(pids)
    test = sorted(int(p) for p in order[: max(2, ids // 2)])
    train = sorted(int(p) for p in order[max(2, ids // 2):])
    for tag, cams in TAGS.items():
        for cam in cams:
            (root / f"test_{tag}" / f"cam{cam}").mkdir(parents=True, exist_ok=True)
    written = 0
    lists = {tag: [] for tag in TAGS}
    for pid in train + test:
        for tag, cams in TAGS.items():
            chosen = [int(c) for c in rng.choice(cams, int(rng.integers(1, 4)), replace=False)]
            for cam in sorted(chosen):
                for _ in range(images_per_camera):
                    name = (f"{pid:04d}_c{cam:02d}_s{int(rng.integers(10**5, 10**6))}"
                            f"_f{int(rng.integers(1000, 9999))}_{tag}.jpg")
                    folder = f"{tag}/{pid:04d}" if pid in train else \
                        f"test_{tag}/cam{cam}/{pid:04d}"
                    save(render(pid, tag == "nir", random_size(rng), rng), root / folder / name)
                    written += 1
                    if pid in train:
                        lists[tag].append(f"{folder}/{name} {train.index(pid)}")
    (root / "idx").mkdir()
    for tag, lines in lists.items():
        (root / "idx" / f"train_{tag}.txt").write_text("\n".join(sorted(lines)) + "\n")
    (root / "idx" / "test_id.txt").write_text(",".join(map(str, test)) + "\n")
    return written
