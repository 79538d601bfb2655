"""A fake RegDB tree: ``Visible/<pid>/*.bmp``, ``Thermal/<pid>/*.bmp`` and ten trials of
``idx/{train,test}_{visible,thermal}_{t}.txt``.

File names follow the real ones (``Visible/2/male_back_v_00200_2.bmp``, ``..._t_...`` for
thermal). Each trial is a random split of the ids: ids // 2 for training, the rest for testing.
Within each list file the labels are 0..n-1 by ascending pid, so the visible and thermal files
of one trial agree. Example: trial split train = {3, 7, 9} → lines of pid 3 get label 0, pid 7
label 1 and pid 9 label 2 in both ``train_visible_t.txt`` and ``train_thermal_t.txt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vireid.constants import REGDB_TRIALS
from vireid.fake.render import random_size, render, save, write_lines

DEFAULT_IDS = 12
DEFAULT_IMAGES = 10  # per identity and modality, as in the real data
MAX_IDS = 9999
IDS_LIMIT = "pids 1..ids; kept to 4 digits like the other layouts"
KINDS = {"visible": ("Visible", "v"), "thermal": ("Thermal", "t")}


def make(root: Path, ids: int, images_per_camera: int, rng: np.random.Generator) -> int:
    """Write the tree; ``images_per_camera`` = images per identity and modality."""
    pids = list(range(1, ids + 1))
    files = write_images(root, pids, images_per_camera, rng)
    for trial in REGDB_TRIALS:
        order = [int(p) for p in rng.permutation(pids)]
        halves = {"train": sorted(order[:ids // 2]), "test": sorted(order[ids // 2:])}
        for split, members in halves.items():
            for kind in KINDS:
                lines = [f"{name} {label}" for label, pid in enumerate(members)
                         for name in files[kind, pid]]
                write_lines(root / "idx" / f"{split}_{kind}_{trial}.txt", lines)
    return sum(len(names) for names in files.values())


def write_images(root: Path, pids: list[int], count: int,
                 rng: np.random.Generator) -> dict[tuple[str, int], list[str]]:
    """Render ``count`` images per pid and modality; relative paths by (kind, pid)."""
    files = {}
    serial = 0
    for pid in pids:
        sex = ("male", "female")[int(rng.integers(2))]
        pose = ("front", "back")[int(rng.integers(2))]
        for kind, (folder, tag) in KINDS.items():
            files[kind, pid] = []
            for _ in range(count):
                serial += 1
                name = f"{folder}/{pid}/{sex}_{pose}_{tag}_{serial:05d}_{pid}.bmp"
                save(render(pid, kind == "thermal", random_size(rng), rng), root / name)
                files[kind, pid].append(name)
    return files
