"""A manifest is input too: ``vireid-shard verify`` on an edited manifest refuses, in one line
naming manifest.json and the entry, a shard name that leaves the folder or any index out of
range, before it opens a file."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vireid.cli.shard import app


def set_item(*path_and_value):
    """An edit of the manifest document: ``set_item("shards", 0, "file", "x")``."""
    *path, key, value = path_and_value

    def edit(document):
        node = document
        for part in path:
            node = node[part]
        node[key] = value
    return edit


def first_view(document):
    return next(iter(document["train_views"].values()))


def first_trial(document):
    return next(iter(document["protocols"].values()))["trials"][0]


EDITS = {
    "parent shard name": (set_item("shards", 0, "file", "../../../../etc/passwd"),
                          "shards[0].file '../../../../etc/passwd'"),
    "absolute shard name": (set_item("shards", 1, "file", "/etc/passwd"), "shards[1].file"),
    "index in a sub-folder": (set_item("shards", 0, "index", "sub/vis-00000.idx"),
                              "shards[0].index"),
    "shard range": (set_item("shards", 0, "count", 10**6), "shards[0] covers samples"),
    "sample's shard": (set_item("samples", "shard", 3, 99), "samples.shard[3] = 99"),
    "negative shard": (set_item("samples", "shard", 0, -1), "samples.shard[0] = -1"),
    "text shard": (set_item("samples", "shard", 0, "0"), "samples.shard[0] = '0'"),
    "identity range": (set_item("identities", 2, 3, 10**6), "identities[2] covers samples"),
    "empty identity": (set_item("identities", 1, 3, 0), "identities[1] covers"),
    "view sample": (lambda d: first_view(d)["infrared"]["samples"].__setitem__(1, 10**6),
                    "train_views.train.infrared.samples[1] = 1000000"),
    "view label": (lambda d: first_view(d)["visible"]["labels"].__setitem__(0, 500),
                   "train_views.train.visible.labels[0] = 500"),
    "view lengths": (lambda d: first_view(d)["visible"]["labels"].pop(),
                     "train_views.train.visible.samples has"),
    "query sample": (lambda d: first_trial(d)["query"].__setitem__(0, -3),
                     "protocols.sysu-all.trials[0].query[0] = -3"),
    "gallery sample": (lambda d: first_trial(d)["gallery"].__setitem__(2, 10**6),
                       "protocols.sysu-all.trials[0].gallery[2] = 1000000"),
    "image size": (set_item("image", "width", 0), "image: image size 0x288"),
    "default protocol": (set_item("default_protocol", "nope"), "default_protocol 'nope'"),
    "pixel images": (set_item("pixels", "images", 3), "pixels.images = 3 is not the"),
    "pixel max": (set_item("pixels", "max_abs", 256), "pixels.max_abs = 256 is out of range"),
    "pixel mean": (set_item("pixels", "mean_abs", "0.5"), "pixels.mean_abs = '0.5' is not"),
    "pixel mean above max": (set_item("pixels", "mean_abs", 300.0),
                             "pixels.mean_abs = 300.0 is not a number in 0..max_abs"),
}


@pytest.fixture
def shards(shard_dir, copy_shards):
    return copy_shards(shard_dir("sysu", "jpeg", max_samples=60))


@pytest.mark.parametrize("name", list(EDITS))
def test_verify_refuses_a_manifest_entry_that_breaks_a_rule(shards, name):
    edit, fragment = EDITS[name]
    path = shards / "manifest.json"
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    result = CliRunner().invoke(app, ["verify", str(shards)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}: bad entry: {fragment}"), lines[0]
