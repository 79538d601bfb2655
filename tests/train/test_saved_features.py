"""``vireid-test --save-features`` then ``--features``: the saved file re-scores to the same rows
without the model, holds the documented arrays, and refuses shards it does not cover."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.model.original_oracle import embed_net, randomise
from vireid.cli.test import app as eval_app
from vireid.eval.saved import ARRAYS
from vireid.loader.source import ShardBytes

pytestmark = pytest.mark.dali

SMALL = {"width": 32, "height": 64}


@pytest.fixture(scope="module")
def shards(shard_dir):
    return shard_dir("sysu", "jpeg", **SMALL)


@pytest.fixture(scope="module")
def saved(shards, tmp_path_factory):
    """A random original-AGW checkpoint, evaluated once with --save-features."""
    work = tmp_path_factory.mktemp("saved")
    classes = ShardBytes(shards).manifest.training_view(None).num_classes
    torch.manual_seed(0)
    net = embed_net(classes)
    randomise(net, torch.Generator().manual_seed(1))
    checkpoint = work / "sysu_agw_p4_n8_lr_0.1_seed_0_best.t"
    torch.save({"net": net.state_dict(), "epoch": 3}, checkpoint)
    result = invoke("--checkpoint", checkpoint, "--shards", shards, "--save-features",
                    work / "features.npz", "--json", work / "rows.json")
    assert result.exit_code == 0, result.output
    return {"checkpoint": checkpoint, "npz": work / "features.npz", "work": work,
            "rows": json.loads((work / "rows.json").read_text()), "output": result.output}


def invoke(*arguments):
    return CliRunner().invoke(eval_app, [*map(str, arguments), "--device", "cpu"])


def table(output: str) -> list[str]:
    lines = output.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("protocol")):]


def test_saved_features_give_the_same_rows_and_table(saved, shards):
    json_path = saved["work"] / "again.json"
    result = invoke("--features", saved["npz"], "--shards", shards, "--json", json_path)
    assert result.exit_code == 0, result.output
    assert json.loads(json_path.read_text()) == saved["rows"]
    assert table(result.output) == table(saved["output"])
    assert all(row["reranked"] is False for row in saved["rows"])


def test_the_file_holds_the_documented_arrays(saved, shards):
    manifest = ShardBytes(shards).manifest
    with np.load(saved["npz"]) as data:
        assert sorted(data.files) == sorted(ARRAYS)
        assert data["pool"].dtype == np.float32 and data["fc"].dtype == np.float32
        samples = data["samples"]
        assert len(data["pool"]) == len(data["fc"]) == len(samples) > 0
        assert list(samples) == sorted(samples)
        stored = [manifest.samples[i] for i in samples]
        assert list(data["pid"]) == [s.pid for s in stored]
        assert list(data["cam"]) == [s.cam for s in stored]
        assert list(data["modality"]) == [s.modality.value for s in stored]
        assert list(data["key"]) == [s.key for s in stored]
        assert str(data["protocol"]) == manifest.default_protocol
        assert str(data["checkpoint"]) == str(saved["checkpoint"])


def test_features_of_other_shards_are_refused(saved, shard_dir):
    other = shard_dir("llcm", "jpeg", **SMALL)  # other images under the same sample numbers
    result = invoke("--features", saved["npz"], "--shards", other, "--protocol", "llcm-ir2vis")
    assert result.exit_code == 1
    assert "does not cover this protocol's test images" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("sources", [("--checkpoint", "--features"), ()])
def test_exactly_one_of_checkpoint_and_features(saved, shards, sources):
    paths = {"--checkpoint": saved["checkpoint"], "--features": saved["npz"]}
    result = invoke("--shards", shards, *[a for s in sources for a in (s, paths[s])])
    assert result.exit_code == 1
    assert "give exactly one of --checkpoint (a model) and --features" in result.output


def test_reranked_rows_say_so(saved, shards):
    json_path = saved["work"] / "reranked.json"
    result = invoke("--features", saved["npz"], "--shards", shards, "--rerank",
                    "--rerank-k1", "4", "--rerank-k2", "2", "--json", json_path)
    assert result.exit_code == 0, result.output
    rows = json.loads(json_path.read_text())
    assert rows and all(row["reranked"] is True for row in rows)
    assert "sysu-all (re-ranked)" in result.output


def test_an_unwritable_target_is_refused_before_the_evaluation(saved, shards):
    target = saved["work"] / "folder"
    target.mkdir()
    result = invoke("--checkpoint", saved["checkpoint"], "--shards", shards, "--save-features",
                    target)
    assert result.exit_code == 1
    assert "is a folder; give a file name for --save-features" in result.output
    assert "evaluating" not in result.output and "protocol" not in result.output
