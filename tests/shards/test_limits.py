"""Bounds checked before any work: stored image sides (``--width``/``--height``), with the
bound in ``--help``; and the smallest fake trees still give a usable build."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.shards.test_bad_input import assert_clean_failure
from vireid.cli.shard import app
from vireid.datasets import read_dataset
from vireid.fake import MIN_IDS, list_fake_datasets, make_fake
from vireid.shards.build import BuildOptions, build_shards
from vireid.shards.manifest import load_manifest


@pytest.mark.parametrize("flag, value", [("--width", "0"), ("--width", "100000"),
                                         ("--height", "15"), ("--height", "2049")])
def test_image_sides_out_of_bounds_are_refused_before_any_work(fake_tree, tmp_path, flag,
                                                               value):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["build", "sysu", str(fake_tree("sysu")), str(out), flag,
                                      value])
    assert_clean_failure(result, out, f"error: {flag}: {value} is out of range (16-2048 pixels)")


def test_help_states_the_bounds():
    result = CliRunner().invoke(app, ["build", "--help"])
    assert result.output.count("(16-2048)") == 2


def test_the_library_refuses_them_too(fake_tree, tmp_path):
    from vireid.errors import VireidError

    raw = read_dataset("sysu", fake_tree("sysu"))
    with pytest.raises(VireidError, match="image size 0x288 is out of range"):
        build_shards(raw, tmp_path / "out", BuildOptions(width=0, workers=1))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dataset", list_fake_datasets())
def test_the_smallest_fake_tree_builds_into_usable_shards(tmp_path, dataset):
    root = make_fake(dataset, tmp_path / "raw", ids=MIN_IDS, images_per_camera=1).root
    result = CliRunner().invoke(app, ["build", dataset, str(root), str(tmp_path / "out"),
                                      "--width", "16", "--height", "32", "--workers", "1"])
    assert result.exit_code == 0, result.output
    manifest = load_manifest(tmp_path / "out")
    for view in manifest.train_views:
        assert view.visible.samples and view.infrared.samples
    for protocol in manifest.protocols:
        assert all(trial.query and trial.gallery for trial in protocol.trials)
