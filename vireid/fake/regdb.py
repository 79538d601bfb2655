"""A fake RegDB tree: ``Visible/<pid>/*.bmp``, ``Thermal/<pid>/*.bmp`` and ten trials of
``idx/{train,test}_{visible,thermal}_{t}.txt``, each a random half/half split of the ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vireid.constants import REGDB_TRIALS
from vireid.fake.render import random_size, render, save

DEFAULT_IDS = 12
DEFAULT_IMAGES = 10
FOLDERS = {"visible": ("Visible", "v"), "thermal": ("Thermal", "t")}


def make(root: Path, ids: int, images_per_camera: int, rng: np.random.Generator) -> int:
    ids += ids % 2  # an even number splits in halves
    pids = list(range(1, ids + 1))
    files = {kind: {} for kind in FOLDERS}
    serial = 0
    for pid in pids:
        sex = "male" if rng.random() < 0.5 else "female"
        pose = "front" if rng.random() < 0.5 else "back"
        for kind, (folder, tag) in FOLDERS.items():
            names = []
            for _ in range(images_per_camera):
                serial += 1
                name = f"{folder}/{pid}/{sex}_{pose}_{tag}_{serial:05d}_{pid}.bmp"
                save(render(pid, kind == "thermal", random_size(rng), rng), root / name)
                names.append(name)
            files[kind][pid] = names
    (root / "idx").mkdir()
    for trial in REGDB_TRIALS:
        order = rng.permutation(pids)
        halves = {"train": sorted(order[:ids // 2]), "test": sorted(order[ids // 2:])}
        for split, members in halves.items():
            for kind in FOLDERS:
                lines = [f"{name} {label}" for label, pid in enumerate(members)
                         for name in files[kind][pid]]
                (root / "idx" / f"{split}_{kind}_{trial}.txt").write_text("\n".join(lines) + "\n")
    return 2 * ids * images_per_camera
