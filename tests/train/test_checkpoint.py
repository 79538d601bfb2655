"""Checkpoints: atomic, weights_only-loadable, and a full disk loses nothing."""

import errno

import pytest
import torch

from vireid.errors import VireidError
from vireid.train.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip_with_weights_only(tmp_path):
    path = tmp_path / "c" / "last.pt"
    save_checkpoint({"epoch": 3, "model": {"w": torch.ones(2)}, "rng": torch.get_rng_state()},
                    path)
    direct = torch.load(path, weights_only=True)
    assert direct["epoch"] == 3
    assert load_checkpoint(path)["model"]["w"].sum() == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1}, path)
    before = path.read_bytes()

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(VireidError, match="disk full.*previous checkpoint is intact"):
        save_checkpoint({"epoch": 2}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_bad_files(tmp_path):
    with pytest.raises(VireidError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    with pytest.raises(VireidError, match="junk.pt: not a readable checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(VireidError, match="not a vireid.checkpoint"):
        load_checkpoint(other)
