"""A fake LLCM tree: training images ``vis/<pid>/`` and ``nir/<pid>/`` listed in
``idx/train_vis.txt`` / ``idx/train_nir.txt``, test images under ``test_vis/cam1..9/<pid>/`` and
``test_nir/cam{1,2,4..9}/<pid>/`` (there is no ``test_nir/cam3``), ``idx/test_id.txt``.

File names follow the real ones: ``0001_c04_s200226_f6720_vis.jpg`` = pid, camera, session,
frame, modality. Pids are drawn from 1..2·ids; ids // 2 of them are test ids, the rest (disjoint)
training ids, labelled 0..n-1 by ascending pid. Every pid is seen by one to three random cameras
per modality, so some test camera folders stay empty, as they may in the real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vireid.datasets.llcm import INFRARED_CAMS, VISIBLE_CAMS
from vireid.fake.render import random_size, render, save, write_lines

DEFAULT_IDS = 16
DEFAULT_IMAGES = 2
MAX_IDS = 9999 // 2
IDS_LIMIT = "its pids, drawn from 1..2·ids, are 4-digit folder names"
TAGS = {"vis": VISIBLE_CAMS, "nir": INFRARED_CAMS}
MAX_CAMERAS = 3  # per pid and modality


def make(root: Path, ids: int, images_per_camera: int, rng: np.random.Generator) -> int:
    """Write the tree; return the number of images."""
    pids = [int(p) for p in rng.choice(np.arange(1, 2 * ids + 1), ids, replace=False)]
    test, train = sorted(pids[:ids // 2]), sorted(pids[ids // 2:])
    for tag, cams in TAGS.items():
        for cam in cams:
            (root / f"test_{tag}" / f"cam{cam}").mkdir(parents=True)
    lists = {tag: [] for tag in TAGS}
    for label, pid in enumerate(train):
        for tag in TAGS:
            paths = write_pid(root, pid, tag, f"{tag}/{pid:04d}", images_per_camera, rng)
            lists[tag].extend(f"{path} {label}" for path in paths)
    written = sum(len(lines) for lines in lists.values())
    for pid in test:
        for tag in TAGS:
            written += len(write_pid(root, pid, tag, None, images_per_camera, rng))
    for tag, lines in lists.items():
        write_lines(root / "idx" / f"train_{tag}.txt", lines)
    write_lines(root / "idx" / "test_id.txt", [",".join(map(str, test))])
    return written


def write_pid(root: Path, pid: int, tag: str, folder: str | None, count: int,
              rng: np.random.Generator) -> list[str]:
    """Images of one pid in one modality from random cameras; ``folder`` None = the test tree.

    Returns the relative paths, sorted. Frame numbers increase within a camera's session, so
    names never collide.
    """
    cams = TAGS[tag]
    chosen = sorted(int(c) for c in rng.choice(cams, int(rng.integers(1, MAX_CAMERAS + 1)),
                                               replace=False))
    paths = []
    for cam in chosen:
        where = folder or f"test_{tag}/cam{cam}/{pid:04d}"
        session = int(rng.integers(100_000, 240_000))
        frame = int(rng.integers(1_000, 5_000))
        for _ in range(count):
            frame += int(rng.integers(1, 400))
            path = f"{where}/{pid:04d}_c{cam:02d}_s{session}_f{frame}_{tag}.jpg"
            save(render(pid, tag == "nir", random_size(rng), rng), root / path)
            paths.append(path)
    return sorted(paths)
