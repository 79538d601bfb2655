"""SYSU-MM01 (Wu et al., ICCV 2017): 491 identities, 4 visible and 2 near-infrared cameras.

Layout: ``cam1`` … ``cam6/<pid 4 digits>/<n 4 digits>.jpg`` and ``exp/{train,val,test}_id.txt``
(one line of comma separated pids). Cameras 1, 2, 4, 5 are visible, 3 and 6 infrared.

Training view ``train``: train + val ids (the original merges them), files in (pid, camera,
file) order; labels = rank of the pid among the training ids that have infrared images
(ascending), as ``pre_process_sysu.py`` assigns them.

Protocols ``sysu-all`` / ``sysu-indoor``, trials 0-9: query = every infrared image of the test
ids; gallery = for each test pid, for each visible camera (1,2,4,5 or indoor 1,2) whose folder
exists, one ``random.choice`` after ``random.seed(trial)``. Example: trial 0, pid 6, cameras
1 and 2 present → two draws from the seeded generator, in that order.
"""

from __future__ import annotations

from pathlib import Path

from vireid.constants import SINGLE_SHOT_TRIALS
from vireid.datasets.base import (
    DatasetBuilder,
    ListedImage,
    id_order,
    read_id_list,
    require_dir,
    require_images,
    scan_camera_tree,
    single_shot,
)
from vireid.errors import VireidError
from vireid.records import Modality, RawDataset, Record

NAME = "sysu"
VISIBLE_CAMS = (1, 2, 4, 5)
INFRARED_CAMS = (3, 6)
INDOOR_CAMS = (1, 2)
SPLIT_FILES = ("exp/train_id.txt", "exp/val_id.txt", "exp/test_id.txt")
PROTOCOLS = {"sysu-all": VISIBLE_CAMS, "sysu-indoor": INDOOR_CAMS}


def modality_of(cam: int) -> Modality:
    return Modality.INFRARED if cam in INFRARED_CAMS else Modality.VISIBLE


def read(root: Path) -> RawDataset:
    require_dir(root, "dataset root")
    train, val, test = (read_id_list(root / name) for name in SPLIT_FILES)
    _check_disjoint(root, (train, val, test))
    cams = {cam: f"cam{cam}" for cam in sorted(VISIBLE_CAMS + INFRARED_CAMS)}
    tree = scan_camera_tree(root, cams, train + val + test)
    for ids, split in ((train, SPLIT_FILES[0]), (val, SPLIT_FILES[1]), (test, SPLIT_FILES[2])):
        require_images(tree.pids(), ids, root / split)

    builder = DatasetBuilder(NAME, root)
    for (pid, cam), paths in tree.files.items():
        for path in paths:
            builder.add(Record(path, pid, cam, modality_of(cam)), path)
    builder.add_view("train", *_train_view(tree, train + val, root))
    query = tree.flat(test, INFRARED_CAMS)
    query_pids = [builder.records[p].pid for p in query]
    for name, gallery_cams in PROTOCOLS.items():
        trials = []
        for trial in range(SINGLE_SHOT_TRIALS):
            gallery = single_shot(tree.groups(test, gallery_cams), trial)
            gallery_pids = [builder.records[p].pid for p in gallery]
            trials.append((trial, query, query_pids, gallery, gallery_pids))
        builder.add_protocol(name, "sysu", Modality.INFRARED, Modality.VISIBLE, trials)
    return builder.finish(default_protocol="sysu-all")


def _train_view(tree, ids, root) -> tuple[list[ListedImage], list[ListedImage]]:
    visible = tree.flat(ids, VISIBLE_CAMS)
    infrared = tree.flat(ids, INFRARED_CAMS)
    have_vis = {p for (p, c) in tree.files if c in VISIBLE_CAMS}
    have_ir = {p for (p, c) in tree.files if c in INFRARED_CAMS}
    for pid in id_order(ids):
        for have, what in ((have_vis, "visible"), (have_ir, "infrared")):
            if pid not in have:
                raise VireidError(root / "exp", f"training id {pid} has no {what} images")
    label = {pid: i for i, pid in enumerate(sorted(have_ir & set(ids)))}
    return (
        [ListedImage(p, label[_pid(p)], p) for p in visible],
        [ListedImage(p, label[_pid(p)], p) for p in infrared],
    )


def _pid(relpath: str) -> int:
    return int(relpath.split("/")[1])


def _check_disjoint(root: Path, splits: tuple[list[int], ...]) -> None:
    for i, later in enumerate(splits[1:], start=1):
        for earlier, name in zip(splits[:i], SPLIT_FILES):
            overlap = sorted(set(earlier) & set(later))
            if overlap:
                raise VireidError(root / SPLIT_FILES[i], f"id {overlap[0]} is also in {name}")
