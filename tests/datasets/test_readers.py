"""Readers on generated trees; protocol lists recomputed independently, the original's way."""

from __future__ import annotations

import os
import random

import pytest

from vireid.datasets import list_datasets, read_dataset
from vireid.records import MODALITIES, Modality


def original_ids(path) -> list[str]:
    with open(path) as handle:
        return ["%04d" % int(y) for y in handle.read().splitlines()[0].split(",")]  # noqa: UP031


def original_files(root, cameras, ids) -> list[str]:
    """The original's folder walk: for id in sorted ids, for camera, sorted(listdir)."""
    files = []
    for pid in sorted(ids):
        for cam in cameras:
            folder = os.path.join(root, cam, pid)
            if os.path.isdir(folder):
                files.extend(sorted(folder + "/" + name for name in os.listdir(folder)))
    return files


def original_single_shot(root, cameras, ids, trial) -> list[str]:
    random.seed(trial)  # the global RNG, exactly as the original
    files = []
    for pid in sorted(ids):
        for cam in cameras:
            folder = os.path.join(root, cam, pid)
            if os.path.isdir(folder):
                files.append(random.choice(sorted(folder + "/" + n for n in os.listdir(folder))))
    return files


def paths(raw, refs) -> list[str]:
    return [str(raw.root / raw.records[i].path) for i in refs]


@pytest.mark.parametrize("dataset", list_datasets())
def test_records_are_every_file_once_in_storage_order(fake_tree, dataset):
    root = fake_tree(dataset)
    raw = read_dataset(dataset, root)
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*")
               if p.is_file() and p.suffix in (".jpg", ".bmp")}
    assert {r.path for r in raw.records} == on_disk
    assert list(raw.records) == sorted(raw.records, key=lambda r: r.sort_key())
    modalities = [r.modality for r in raw.records]
    assert modalities == sorted(modalities, key=MODALITIES.index)


def test_sysu(fake_tree):
    root = str(fake_tree("sysu"))
    raw = read_dataset("sysu", fake_tree("sysu"))
    for record in raw.records:
        cam, pid, _ = record.path.split("/")
        assert record.cam == int(cam[3:]) and record.pid == int(pid)
        assert (record.modality is Modality.INFRARED) == (record.cam in (3, 6))
    train_ids = original_ids(f"{root}/exp/train_id.txt") + original_ids(f"{root}/exp/val_id.txt")
    test_ids = original_ids(f"{root}/exp/test_id.txt")
    view = raw.train_views[0]
    assert paths(raw, view.visible.samples) == original_files(root, ["cam1", "cam2", "cam4",
                                                                     "cam5"], train_ids)
    assert paths(raw, view.infrared.samples) == original_files(root, ["cam3", "cam6"],
                                                               train_ids)
    label = {pid: i for i, pid in enumerate(sorted(int(p) for p in train_ids))}
    assert list(view.visible.labels) == [label[raw.records[i].pid]
                                         for i in view.visible.samples]
    for name, cams in (("sysu-all", ["cam1", "cam2", "cam4", "cam5"]),
                       ("sysu-indoor", ["cam1", "cam2"])):
        protocol = next(p for p in raw.protocols if p.name == name)
        assert [t.trial for t in protocol.trials] == list(range(10))
        for trial in protocol.trials:
            assert paths(raw, trial.query) == original_files(root, ["cam3", "cam6"], test_ids)
            assert paths(raw, trial.gallery) == original_single_shot(root, cams, test_ids,
                                                                     trial.trial)
            assert list(trial.gallery_pids) == [int(p.split("/")[-2]) for p in
                                                paths(raw, trial.gallery)]
    galleries = {tuple(t.gallery) for t in raw.protocols[0].trials}
    assert len(galleries) > 1  # trials differ


def test_regdb(fake_tree):
    root = fake_tree("regdb")
    raw = read_dataset("regdb", root)
    assert [v.name for v in raw.train_views] == [f"trial{t}" for t in range(1, 11)]
    for record in raw.records:
        assert record.cam == (1 if record.modality is Modality.VISIBLE else 2)
        assert record.pid == int(record.path.split("/")[1])

    def listed(name):
        lines = (root / "idx" / name).read_text().splitlines()
        return [str(root / line.split(" ")[0]) for line in lines], \
            [int(line.split(" ")[1]) for line in lines]

    for t in range(1, 11):
        view = raw.train_views[t - 1]
        assert (paths(raw, view.visible.samples), list(view.visible.labels)) == \
            listed(f"train_visible_{t}.txt")
        assert (paths(raw, view.infrared.samples), list(view.infrared.labels)) == \
            listed(f"train_thermal_{t}.txt")
    v2t, t2v = raw.protocols
    assert (v2t.name, t2v.name) == ("regdb-v2t", "regdb-t2v")
    for t in range(1, 11):
        forward, backward = v2t.trials[t - 1], t2v.trials[t - 1]
        assert forward.trial == t
        assert (paths(raw, forward.query), list(forward.query_pids)) == \
            listed(f"test_visible_{t}.txt")
        assert (paths(raw, forward.gallery), list(forward.gallery_pids)) == \
            listed(f"test_thermal_{t}.txt")
        assert forward.query == backward.gallery and forward.gallery == backward.query
    # one set of records for all ten trials
    assert len(raw.records) == len({r.path for r in raw.records})


def test_llcm(fake_tree):
    root = fake_tree("llcm")
    raw = read_dataset("llcm", root)
    test_ids = original_ids(root / "idx/test_id.txt")
    vis_cams = [f"test_vis/cam{c}" for c in range(1, 10)]
    nir_cams = [f"test_nir/cam{c}" for c in (1, 2, 4, 5, 6, 7, 8, 9)]
    assert not (root / "test_nir/cam3").exists()
    ir2vis = next(p for p in raw.protocols if p.name == "llcm-ir2vis")
    vis2ir = next(p for p in raw.protocols if p.name == "llcm-vis2ir")
    all_vis = original_files(str(root), vis_cams, test_ids)
    all_nir = original_files(str(root), nir_cams, test_ids)
    for trial in ir2vis.trials:
        assert paths(raw, trial.query) == all_nir
        assert paths(raw, trial.gallery) == original_single_shot(str(root), vis_cams,
                                                                 test_ids, trial.trial)
    for trial in vis2ir.trials:  # the original's swap: single-shot INFRARED rows
        assert paths(raw, trial.query) == original_single_shot(str(root), nir_cams,
                                                               test_ids, trial.trial)
        assert paths(raw, trial.gallery) == all_vis
    for refs in (ir2vis.trials[0].query, ir2vis.trials[0].gallery):
        for i in refs:
            record = raw.records[i]
            assert record.cam == int(record.path.split("/")[1][3:])
            assert record.pid == int(record.path.split("/")[2])
    view = raw.train_views[0]
    lines = (root / "idx/train_vis.txt").read_text().splitlines()
    assert paths(raw, view.visible.samples) == [str(root / x.split(" ")[0]) for x in lines]
    assert list(view.visible.labels) == [int(x.split(" ")[1]) for x in lines]


def test_parent_folders_named_cam_do_not_confuse_parsing(tmp_path):
    """The original parses fixed string offsets; vireid parses the path below the root."""
    from vireid.fake import make_fake

    tree = make_fake("sysu", tmp_path / "cam9_data" / "cam1" / "SYSU", ids=4,
                     images_per_camera=1)
    raw = read_dataset("sysu", tree.root)
    assert all(r.cam in (1, 2, 3, 4, 5, 6) for r in raw.records)
