"""RegDB (Nguyen et al., Sensors 2017): 412 identities, 10 visible + 10 thermal images each.

Layout: ``Visible/...`` and ``Thermal/...`` images below the root (BMP in the real data) and
``idx/{train,test}_{visible,thermal}_{t}.txt`` for trials t = 1..10, lines
``<path relative to root> <label>`` (one space). The identity stored with an image is its
numeric parent folder (``Visible/2/male_back_v_00200_2.bmp`` → 2); the labels used for
training and testing are the list files' own, exactly as the original reads them.

Every trial is its own train/test split (one model per trial). Views ``trial1`` … ``trial10``;
protocols ``regdb-v2t`` (visible queries, thermal gallery) and ``regdb-t2v``, trial t tests on
``test_*_{t}.txt`` in file order. Visible images have camera 1, thermal camera 2.
"""

from __future__ import annotations

from pathlib import Path

from vireid.constants import REGDB_TRIALS
from vireid.datasets.base import DatasetBuilder, pid_from_parent, read_labeled_list, require_dir
from vireid.records import Modality, RawDataset, Record

NAME = "regdb"
LIST_NAMES = {Modality.VISIBLE: "visible", Modality.INFRARED: "thermal"}
CAMERA = {Modality.VISIBLE: 1, Modality.INFRARED: 2}
PROTOCOLS = {
    "regdb-v2t": (Modality.VISIBLE, Modality.INFRARED),
    "regdb-t2v": (Modality.INFRARED, Modality.VISIBLE),
}


def list_path(root: Path, split: str, modality: Modality, trial: int) -> Path:
    return root / "idx" / f"{split}_{LIST_NAMES[modality]}_{trial}.txt"


def read(root: Path) -> RawDataset:
    require_dir(root, "dataset root")
    require_dir(root / "idx", "index folder idx")
    builder = DatasetBuilder(NAME, root)
    lists = {}
    for trial in REGDB_TRIALS:
        for split in ("train", "test"):
            for modality in LIST_NAMES:
                entries = read_labeled_list(list_path(root, split, modality, trial), root)
                for entry in entries:
                    pid = pid_from_parent(entry.path, entry.where)
                    builder.add(Record(entry.path, pid, CAMERA[modality], modality), entry.where)
                lists[split, modality, trial] = entries
    trial_views = tuple((trial, f"trial{trial}") for trial in REGDB_TRIALS)
    for trial, view in trial_views:
        builder.add_view(view, lists["train", Modality.VISIBLE, trial],
                         lists["train", Modality.INFRARED, trial])
    for name, (query_mod, gallery_mod) in PROTOCOLS.items():
        trials = []
        for trial in REGDB_TRIALS:
            query, gallery = lists["test", query_mod, trial], lists["test", gallery_mod, trial]
            trials.append((trial, [e.path for e in query], [e.label for e in query],
                           [e.path for e in gallery], [e.label for e in gallery]))
        builder.add_protocol(name, "regdb", query_mod, gallery_mod, trials)
    return builder.finish(default_protocol="regdb-v2t", trial_views=trial_views)
