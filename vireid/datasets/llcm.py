"""LLCM (Zhang & Wang, CVPR 2023): low-light cross-modality, 9 visible and 8 near-infrared cameras.

Layout: training lists ``idx/train_vis.txt`` / ``idx/train_nir.txt`` (``<relative path> <label>``),
test images ``test_vis/cam{1..9}/<pid>/<file>`` and ``test_nir/cam{1,2,4..9}/<pid>/<file>``
(no ``test_nir/cam3``), test ids in ``idx/test_id.txt``. Camera = digit after ``cam``, pid = the
4-digit folder. Training images keep their list labels; their stored identity is the numeric
parent folder and their camera the ``_c<NN>`` of the file name (0 when absent).

Protocols, trials 0-9 with single-shot draws exactly as SYSU-MM01 (seed = trial):
- ``llcm-ir2vis`` (original ``test_mode [1, 2]``): rows = all ``test_nir`` images, columns =
  single-shot ``test_vis``.
- ``llcm-vis2ir`` (original ``test_mode [2, 1]``): the single-shot set is drawn from
  ``test_nir`` and the full set is ``test_vis``; the original swaps the metric's arguments, so
  the single-shot INFRARED images are the rows and the full visible set the columns. Published
  LLCM VIS→IR numbers were computed this way, so vireid stores it this way.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from vireid.constants import SINGLE_SHOT_TRIALS
from vireid.datasets.base import (
    DatasetBuilder,
    pid_from_parent,
    read_id_list,
    read_labeled_list,
    require_dir,
    require_images,
    scan_camera_tree,
    single_shot,
)
from vireid.records import Modality, RawDataset, Record

NAME = "llcm"
VISIBLE_CAMS = tuple(range(1, 10))
INFRARED_CAMS = (1, 2, 4, 5, 6, 7, 8, 9)
TRAIN_LISTS = {Modality.VISIBLE: "idx/train_vis.txt", Modality.INFRARED: "idx/train_nir.txt"}
TEST_DIRS = {Modality.VISIBLE: "test_vis", Modality.INFRARED: "test_nir"}
TEST_CAMS = {Modality.VISIBLE: VISIBLE_CAMS, Modality.INFRARED: INFRARED_CAMS}
FILE_CAMERA = re.compile(r"_c(\d+)")


def read(root: Path) -> RawDataset:
    require_dir(root, "dataset root")
    builder = DatasetBuilder(NAME, root)
    train = {}
    for modality, relative in TRAIN_LISTS.items():
        train[modality] = read_labeled_list(root / relative, root)
        for entry in train[modality]:
            pid = pid_from_parent(entry.path, entry.where)
            builder.add(Record(entry.path, pid, _file_camera(entry.path), modality), entry.where)
    builder.add_view("train", train[Modality.VISIBLE], train[Modality.INFRARED])

    id_file = root / "idx/test_id.txt"
    test_ids = read_id_list(id_file)
    trees = {}
    for modality, folder in TEST_DIRS.items():
        require_dir(root / folder, f"test folder {folder}")
        cams = {cam: f"{folder}/cam{cam}" for cam in TEST_CAMS[modality]}
        trees[modality] = scan_camera_tree(root, cams, test_ids)
        for (pid, cam), paths in trees[modality].files.items():
            for path in paths:
                builder.add(Record(path, pid, cam, modality), path)
    require_images(trees[Modality.VISIBLE].pids() | trees[Modality.INFRARED].pids(), test_ids,
                   id_file)

    vis, nir = Modality.VISIBLE, Modality.INFRARED
    full = {m: trees[m].flat(test_ids, TEST_CAMS[m]) for m in TEST_DIRS}
    pids = {p: r.pid for p, r in builder.records.items()}
    for name, shot_modality in (("llcm-ir2vis", vis), ("llcm-vis2ir", nir)):
        trials = []
        for trial in range(SINGLE_SHOT_TRIALS):
            shots = single_shot(trees[shot_modality].groups(test_ids, TEST_CAMS[shot_modality]),
                                trial)
            rows, cols = (full[nir], shots) if shot_modality is vis else (shots, full[vis])
            trials.append((trial, rows, [pids[p] for p in rows], cols, [pids[p] for p in cols]))
        builder.add_protocol(name, "llcm", nir, vis, trials)
    return builder.finish(default_protocol="llcm-ir2vis")


def _file_camera(relpath: str) -> int:
    match = FILE_CAMERA.search(posixpath.basename(relpath))
    return int(match.group(1)) if match else 0

