"""The fake trees: real layouts, deterministic, varied, and learnable across modalities."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from vireid.datasets import read_dataset
from vireid.errors import VireidError
from vireid.fake import list_fake_datasets, make_fake


def digest(root) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("dataset", list_fake_datasets())
def test_tree_is_read_by_its_reader_and_deterministic(tmp_path, dataset):
    tree = make_fake(dataset, tmp_path / "a", seed=4)
    images = [p for p in tree.root.rglob("*") if p.suffix in (".jpg", ".bmp")]
    assert len(images) == tree.num_images
    raw = read_dataset(dataset, tree.root)
    assert len(raw.records) == tree.num_images
    assert len({r.pid for r in raw.records}) == tree.num_ids
    assert digest(tree.root) == digest(make_fake(dataset, tmp_path / "b", seed=4).root)
    assert digest(tree.root) != digest(make_fake(dataset, tmp_path / "c", seed=5).root)
    sizes = {Image.open(p).size for p in images[:40]}
    assert len(sizes) > 10  # varied image sizes


def test_sysu_layout_details(tmp_path):
    root = make_fake("sysu", tmp_path / "s", ids=12).root
    assert sorted(p.name for p in root.iterdir()) == ["cam1", "cam2", "cam3", "cam4", "cam5",
                                                      "cam6", "exp"]
    for name in ("train", "val", "test"):
        lines = (root / "exp" / f"{name}_id.txt").read_text().splitlines()
        assert len(lines) == 1 and all(x.isdigit() for x in lines[0].split(","))
    cameras = {}
    for folder in root.glob("cam*/*"):
        assert len(folder.name) == 4 and folder.name.isdigit()
        cameras.setdefault(folder.name, set()).add(folder.parent.name)
    assert any(len(c) < 6 for c in cameras.values())  # some pid misses some camera
    for cams in cameras.values():
        assert cams & {"cam3", "cam6"} and cams & {"cam1", "cam2", "cam4", "cam5"}


def test_regdb_and_llcm_layout_details(tmp_path):
    regdb = make_fake("regdb", tmp_path / "r").root
    for t in range(1, 11):
        for split in ("train", "test"):
            for kind in ("visible", "thermal"):
                lines = (regdb / "idx" / f"{split}_{kind}_{t}.txt").read_text().splitlines()
                assert all(len(line.split(" ")) == 2 for line in lines)
    llcm = make_fake("llcm", tmp_path / "l").root
    assert not (llcm / "test_nir" / "cam3").exists()
    assert sorted(p.name for p in (llcm / "test_nir").iterdir()) == [
        f"cam{c}" for c in (1, 2, 4, 5, 6, 7, 8, 9)]
    assert len((llcm / "idx/test_id.txt").read_text().splitlines()) == 1


def test_bad_arguments(tmp_path):
    with pytest.raises(VireidError, match="unknown dataset"):
        make_fake("market1501", tmp_path / "m")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(VireidError, match="not empty"):
        make_fake("sysu", tmp_path / "full")


def test_identity_is_shared_across_modalities(tmp_path):
    """Nearest neighbour on band profiles matches infrared to visible far above chance."""
    tree = make_fake("sysu", tmp_path / "s", ids=16, images_per_camera=2)
    raw = read_dataset("sysu", tree.root)

    def profile(record):
        with Image.open(tree.root / record.path) as image:
            grey = np.asarray(image.convert("L").resize((8, 32)), dtype=np.float32)
        rows = grey.mean(axis=1)
        return (rows - rows.mean()) / (rows.std() + 1e-6)

    visible = [r for r in raw.records if r.modality.value == "visible"]
    infrared = [r for r in raw.records if r.modality.value == "infrared"]
    gallery = np.stack([profile(r) for r in visible])
    hits = 0
    for record in infrared:
        nearest = visible[int(np.argmin(((gallery - profile(record)) ** 2).sum(axis=1)))]
        hits += nearest.pid == record.pid
    assert hits / len(infrared) > 5 / 16  # chance is 1/16
