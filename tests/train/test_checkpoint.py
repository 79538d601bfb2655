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
    with pytest.raises(VireidError, match="junk.pt: not a torch checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(VireidError, match="not a vireid.checkpoint"):
        load_checkpoint(other)


def test_a_full_disk_reported_by_torch_as_runtime_error_is_one_line(tmp_path, monkeypatch):
    """torch.save reports a failed write as RuntimeError: caught, the partial file (which
    would keep the disk full) removed, the previous checkpoint kept."""
    import vireid.train.checkpoint as checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1}, path)
    before = path.read_bytes()
    real = torch.save

    def half_written(obj, handle):
        handle.write(b"x" * 4096)
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter "
                           "failed writing file data/3: file write failed")

    monkeypatch.setattr(torch, "save", half_written)
    monkeypatch.setattr(checkpoint, "_disk_full", lambda path: True)
    with pytest.raises(VireidError, match=r"last.pt: cannot write checkpoint: disk full "
                                          r"\(the previous checkpoint is intact\)$"):
        save_checkpoint({"epoch": 2}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    monkeypatch.setattr(torch, "save", real)


def test_temporary_names_are_per_process(tmp_path, monkeypatch):
    seen = []
    real = torch.save

    def spy(obj, handle):
        seen.append(handle.name)
        real(obj, handle)

    monkeypatch.setattr(torch, "save", spy)
    save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    assert seen == [str(tmp_path / f".last.pt.partial-{__import__('os').getpid()}")]
