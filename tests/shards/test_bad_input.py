"""Bad raw input: one line naming the file, exit code 1, no traceback, nothing written."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from vireid.cli.shard import app


def build(raw_root, out, *extra, dataset="sysu"):
    result = CliRunner().invoke(app, ["build", dataset, str(raw_root), str(out), "--workers",
                                      "1", *extra])
    return result


def assert_clean_failure(result, out, *fragments):
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception,
                                                                     SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


@pytest.fixture
def tree(fake_tree, tmp_path):
    """A private copy of a fake tree: ``tree(dataset)``."""
    def make(dataset):
        target = tmp_path / f"raw-{dataset}"
        shutil.copytree(fake_tree(dataset), target)
        return target
    return make


def first(root, pattern):
    return sorted(root.glob(pattern))[0]


def test_missing_root(tmp_path):
    assert_clean_failure(build(tmp_path / "nope", tmp_path / "out"), tmp_path / "out",
                         "nope", "missing dataset root")


def test_missing_split_file(tree, tmp_path):
    root = tree("sysu")
    (root / "exp/val_id.txt").unlink()
    assert_clean_failure(build(root, tmp_path / "out"), tmp_path / "out", "val_id.txt",
                         "missing split file")


def test_misnamed_camera_folder(tree, tmp_path):
    root = tree("sysu")
    (root / "cam6").rename(root / "Cam6")
    assert_clean_failure(build(root, tmp_path / "out"), tmp_path / "out", "cam6",
                         "missing camera folder")


def test_misnamed_identity_folder(tree, tmp_path):
    root = tree("sysu")
    folder = first(root, "cam1/*")
    folder.rename(folder.parent / str(int(folder.name)))
    assert_clean_failure(build(root, tmp_path / "out"), tmp_path / "out",
                         "expected a 4-digit identity folder")


def test_id_listed_with_no_images(tree, tmp_path):
    root = tree("sysu")
    path = root / "exp/test_id.txt"
    path.write_text(path.read_text().strip() + ",9999\n")
    assert_clean_failure(build(root, tmp_path / "out"), tmp_path / "out", "test_id.txt",
                         "id 9999 is listed but has no images")


def test_malformed_split_file(tree, tmp_path):
    root = tree("sysu")
    (root / "exp/train_id.txt").write_text("1,2,x\n")
    assert_clean_failure(build(root, tmp_path / "out"), tmp_path / "out", "train_id.txt:1",
                         "'x' is not an integer id")


@pytest.mark.parametrize("line, problem", [
    ("Visible/1/only_a_path.bmp", "expected '<relative path> <label>'"),
    ("Visible/1/x.bmp seven", "label 'seven' is not an integer"),
    ("Visible/1/not_there.bmp 0", "does not exist"),
])
def test_malformed_index_line(tree, tmp_path, line, problem):
    root = tree("regdb")
    path = root / "idx/train_visible_3.txt"
    lines = path.read_text().splitlines()
    lines.insert(4, line)
    path.write_text("\n".join(lines) + "\n")
    assert_clean_failure(build(root, tmp_path / "out", dataset="regdb"), tmp_path / "out",
                         "train_visible_3.txt:5", problem)


def test_missing_index_file(tree, tmp_path):
    root = tree("llcm")
    (root / "idx/train_nir.txt").unlink()
    assert_clean_failure(build(root, tmp_path / "out", dataset="llcm"), tmp_path / "out",
                         "train_nir.txt", "missing index file")


def test_corrupt_image(tree, tmp_path):
    root = tree("sysu")
    image = first(root, "cam3/*/*.jpg")
    image.write_bytes(image.read_bytes()[:300])
    assert_clean_failure(build(root, tmp_path / "out"), tmp_path / "out",
                         image.relative_to(root).as_posix(), "corrupt or unreadable image")


def test_non_image_file(tree, tmp_path):
    root = tree("llcm")
    folder = first(root, "test_vis/cam*/*")
    (folder / "notes.txt").write_text("not a picture")
    assert_clean_failure(build(root, tmp_path / "out", dataset="llcm"), tmp_path / "out",
                         "notes.txt", "not an image file")


def test_stray_folder_inside_an_identity(tree, tmp_path):
    root = tree("sysu")
    (first(root, "cam2/*") / "extra").mkdir()
    assert_clean_failure(build(root, tmp_path / "out"), tmp_path / "out", "extra",
                         "unexpected entry")


def test_unknown_dataset(tree, tmp_path):
    result = build(tree("sysu"), tmp_path / "out", dataset="market")
    assert_clean_failure(result, tmp_path / "out", "market", "unknown dataset")


def test_skip_records_bad_images_and_drops_them_everywhere(tree, tmp_path):
    from vireid.shards.manifest import load_manifest

    root = tree("sysu")
    bad = first(root, "cam3/*/*.jpg")
    bad.write_bytes(b"garbage")
    stray = first(root, "cam1/*") / "Thumbs.db"
    stray.write_bytes(b"\x00" * 10)
    out = tmp_path / "out"
    result = build(root, out, "--on-bad-image", "skip")
    assert result.exit_code == 0, result.output
    manifest = load_manifest(out)
    skipped = {s.path for s in manifest.skipped}
    assert skipped == {bad.relative_to(root).as_posix(), stray.relative_to(root).as_posix()}
    assert f"skipped {bad.relative_to(root).as_posix()}" in result.output
    kept = {s.path for s in manifest.samples}
    assert not skipped & kept
    for protocol in manifest.protocols:
        for trial in protocol.trials:
            assert len(trial.query) == len(trial.query_pids)
            assert all(manifest.samples[i].path not in skipped for i in trial.query)
    inspect = CliRunner().invoke(app, ["inspect", str(out)])
    assert "skipped" in inspect.output


def test_existing_output_is_kept_without_overwrite(tree, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    result = build(tree("regdb"), out, dataset="regdb")
    assert result.exit_code == 1 and "--overwrite" in result.stderr
    assert (out / "precious.txt").read_text() == "keep me"


def test_skip_that_leaves_a_training_id_without_visible_images_is_refused(tmp_path):
    from vireid.fake import make_fake

    root = make_fake("sysu", tmp_path / "raw", ids=4, images_per_camera=1, seed=3).root
    pid = int((root / "exp/train_id.txt").read_text().split(",")[0])
    visible = [p for cam in (1, 2, 4, 5) for p in root.glob(f"cam{cam}/{pid:04d}/*.jpg")]
    for image in visible:
        image.write_bytes(b"garbage")
    out = tmp_path / "out"
    result = build(root, out, "--on-bad-image", "skip")
    assert_clean_failure(result, out, visible[-1].relative_to(root).as_posix(),
                         f"training id {pid} (view train) has no readable visible image left",
                         f"({len(visible)} unreadable files skipped in all)")
