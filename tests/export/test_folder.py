"""The export folder on its own (no model): written under a temporary name and renamed into
place, over an empty folder too; a failure removes the temporary folder and the parents made
for it; only an earlier export counts as one."""

from __future__ import annotations

import json

import pytest

from vireid.export.folder import is_export, staged
from vireid.export.sidecar import SIDECAR, SIDECAR_FORMAT


def test_a_staged_folder_appears_whole_over_an_empty_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with staged(out, overwrite=False) as partial:
        assert partial.parent == tmp_path and partial.name.startswith(".out.partial-")
        (partial / "visible.onnx").write_bytes(b"graph")
        assert list(out.iterdir()) == []  # nothing shows before the end
    assert [p.name for p in out.iterdir()] == ["visible.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failure_removes_the_temporary_folder_and_the_parents_made_for_it(tmp_path):
    out = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(RuntimeError), staged(out, overwrite=False) as partial:
        (partial / "visible.onnx").write_bytes(b"half")
        raise RuntimeError("the parity check failed")
    assert list(tmp_path.iterdir()) == []


def test_only_an_export_of_vireids_is_an_export(tmp_path):
    (tmp_path / SIDECAR).write_text(json.dumps({"format": SIDECAR_FORMAT}))
    assert is_export(tmp_path)
    (tmp_path / "sub").mkdir()
    assert not is_export(tmp_path)  # a sub-folder: not what an export writes
    (tmp_path / "sub").rmdir()
    (tmp_path / SIDECAR).write_text(json.dumps({"format": "something else"}))
    assert not is_export(tmp_path)
