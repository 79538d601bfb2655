"""OUT_DIR rules at the CLI: ``--overwrite`` never destroys the raw tree or unrelated files, a
second build into the same folder is refused, and bad output places fail before any work in
one line, leaving nothing behind (and the raw data untouched)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from tests.shards.test_bad_input import assert_clean_failure
from vireid.cli.shard import app
from vireid.fake import make_fake
from vireid.shards.manifest import load_manifest

SMALL = ["--width", "32", "--height", "64", "--workers", "1"]


def build(raw_root, out, *extra):
    return CliRunner().invoke(app, ["build", "sysu", str(raw_root), str(out), *SMALL, *extra])


def digest(root) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_refused(result, *fragments):
    """Exit 1, one ``error:`` line holding every fragment, no traceback."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def no_leftovers(folder, name):
    return not [p for p in folder.iterdir() if p.name.startswith(f".{name}.")]


@pytest.fixture
def raw(tmp_path):
    """A tiny private SYSU tree at ``tmp/wrap/SYSU`` (20 images)."""
    return make_fake("sysu", tmp_path / "wrap" / "SYSU", ids=4, images_per_camera=1).root


@pytest.fixture
def guard(monkeypatch, tmp_path):
    """Fail instead of deleting or renaming anything outside ``tmp_path``."""
    rmtree, replace = shutil.rmtree, os.replace

    def inside(path):
        assert str(os.path.realpath(path)).startswith(str(tmp_path)), path

    monkeypatch.setattr(shutil, "rmtree", lambda p, *a, **k: (inside(p), rmtree(p, *a, **k)))
    monkeypatch.setattr(os, "replace", lambda a, b: (inside(a), inside(b), replace(a, b)))


def test_overwrite_refuses_the_raw_root_itself(raw, guard):
    before = digest(raw)
    assert_refused(build(raw, raw, "--overwrite"), str(raw), "is the raw dataset itself")
    assert digest(raw) == before and no_leftovers(raw.parent, raw.name)


def test_overwrite_refuses_a_folder_that_contains_the_raw_root(raw, guard):
    wrap = raw.parent
    (wrap / "notes.txt").write_text("keep me")
    before = digest(wrap)
    assert_refused(build(raw, wrap, "--overwrite"), "contains the raw dataset")
    assert digest(wrap) == before and no_leftovers(wrap.parent, wrap.name)


def test_output_inside_the_raw_root_is_refused_even_without_overwrite(raw):
    before = digest(raw)
    assert_clean_failure(build(raw, raw / "shards"), raw / "shards", "is inside the raw dataset")
    assert digest(raw) == before


@pytest.mark.parametrize("linked", ["out", "raw"])
def test_symlinks_do_not_hide_the_raw_root(raw, tmp_path, guard, linked):
    link = tmp_path / "link"
    link.symlink_to(raw)
    before = digest(raw)
    out, root = (link, raw) if linked == "out" else (raw, link)
    assert_refused(build(root, out, "--overwrite"), "is the raw dataset itself")
    assert digest(raw) == before


@pytest.mark.parametrize("target", [".", "/"])
def test_dot_and_slash_are_refused(raw, tmp_path, monkeypatch, guard, target):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    monkeypatch.chdir(work)
    assert_refused(build(raw, target, "--overwrite"), target)
    assert (work / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("content, problem", [
    ({"notes.txt": "keep me"}, "is not a vireid shard folder"),
    ({"manifest.json": '{"schema": "someone.else"}'}, "is not a vireid shard folder"),
    ({"manifest.json": '{"schema": "vireid.shards", "version": 0}', "sub/x": "keep me"},
     "holds no sub-folders"),
])
def test_overwrite_refuses_folders_that_are_not_shard_folders(raw, tmp_path, content,
                                                              problem):
    out = tmp_path / "out"
    for name, text in content.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = digest(out)
    assert_refused(build(raw, out, "--overwrite"), problem)
    assert digest(out) == before and no_leftovers(tmp_path, "out")


def test_overwrite_refuses_a_file(raw, tmp_path):
    out = tmp_path / "out"
    out.write_text("keep me")
    assert_refused(build(raw, out, "--overwrite"), "is not a folder")
    assert out.read_text() == "keep me"


def test_overwrite_replaces_shard_folders_of_any_version_and_empty_folders(raw, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert build(raw, out, "--overwrite").exit_code == 0
    (out / "manifest.json").write_text('{"schema": "vireid.shards", "version": 0}')
    result = build(raw, out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert load_manifest(out).samples and no_leftovers(tmp_path, "out")


def test_a_second_build_is_refused_while_one_holds_the_lock(raw, tmp_path):
    out = tmp_path / "out"
    with open(tmp_path / ".out.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert_refused(build(raw, out), str(out), "another build is writing it")
        assert (tmp_path / ".out.lock").exists()  # the holder's lock is left alone
        assert not out.exists()
    assert build(raw, out).exit_code == 0  # a stale lock file blocks nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "wrap"]


def test_output_that_appears_during_the_build_is_left_alone(raw, tmp_path, monkeypatch):
    from vireid.shards import build as build_module

    out = tmp_path / "out"
    write_manifest = build_module.write_manifest

    def meanwhile(manifest, folder):
        out.mkdir()
        (out / "theirs.txt").write_text("keep me")
        return write_manifest(manifest, folder)

    monkeypatch.setattr(build_module, "write_manifest", meanwhile)
    assert_refused(build(raw, out), str(out), "appeared while building")
    assert digest(out) == {"theirs.txt": hashlib.sha256(b"keep me").hexdigest()}
    assert no_leftovers(tmp_path, "out")


def test_temporary_folders_of_dead_builds_are_removed(raw, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [tmp_path / f".out.partial-{dead.pid}", tmp_path / f".out.old-{dead.pid}"]
    alive = tmp_path / f".out.partial-{os.getppid()}"
    for folder in (*stale, alive):
        folder.mkdir()
        (folder / "x.tar").write_bytes(b"x")
    assert build(raw, tmp_path / "out").exit_code == 0
    assert not any(p.exists() for p in stale)
    assert (alive / "x.tar").exists()  # a running process's folder is not touched


def test_output_under_a_regular_file(raw, tmp_path):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "out"
    assert_refused(build(raw, out), "file", "is a file, not a folder")
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("place", ["/proc", "/sys"])
def test_output_under_proc_or_sys(raw, place):
    assert_refused(build(raw, f"{place}/vireid-test-out"), place, "cannot")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_output_in_a_read_only_folder(raw, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert_refused(build(raw, folder / "new" / "out"), str(folder), "Permission denied")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_full_disk_during_the_build(raw, tmp_path, monkeypatch):
    from vireid.shards.tario import TarWriter

    add = TarWriter.add
    calls = []

    def add_until_full(self, name, data):
        calls.append(name)
        if len(calls) > 6:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        add(self, name, data)

    monkeypatch.setattr(TarWriter, "add", add_until_full)
    out = tmp_path / "new" / "deeper" / "out"
    assert_refused(build(raw, out), str(out), "No space left on device", "nothing was kept")
    assert not (tmp_path / "new").exists()  # the parents it created are gone too


@pytest.fixture
def linked(raw, tmp_path):
    """``raw`` whose cam1 folder and first cam2 image live in ``tmp/elsewhere``, linked back
    (data kept on another disk); returns (cam1's folder, the folder of the image)."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "images").mkdir(parents=True)
    shutil.move(raw / "cam1", elsewhere / "cam1")
    (raw / "cam1").symlink_to(elsewhere / "cam1")
    image = sorted((raw / "cam2").rglob("*.jpg"))[0]
    shutil.move(image, elsewhere / "images" / "0001.jpg")
    image.symlink_to(elsewhere / "images" / "0001.jpg")
    return elsewhere / "cam1", elsewhere / "images"


@pytest.mark.parametrize("place", ["inside-a-linked-folder", "deep-inside-a-linked-folder",
                                   "around-a-linked-image"])
def test_links_inside_the_raw_tree_do_not_hide_its_images(raw, tmp_path, linked, guard,
                                                          place):
    """What a link in the raw tree leads to is part of it: OUT_DIR may not be inside it
    (shards inside cam1 would break the next read of the tree) nor around it (with
    ``--overwrite``, an old shard folder holding a linked image would replace the image)."""
    folder, images = linked
    (images / "manifest.json").write_text('{"schema": "vireid.shards", "version": 1}')
    out = {"inside-a-linked-folder": folder / "shards",
           "deep-inside-a-linked-folder": folder / "0006" / "shards",
           "around-a-linked-image": images}[place]
    before = digest(tmp_path / "elsewhere")
    assert_refused(build(raw, out, "--overwrite"), str(out), "part of the raw dataset")
    assert digest(tmp_path / "elsewhere") == before
    assert no_leftovers(out.parent, out.name)
