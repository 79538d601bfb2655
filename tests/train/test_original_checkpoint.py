"""A checkpoint written by the original AGW code, end to end: `vireid-test` on fake SYSU shards
with exact pixels gives the table that an oracle of the original network computes on the same
pixels with the original's per-query metric loop; `vireid-train --init` fine-tunes from it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from benchmarks.original_metrics import original_eval
from tests.model.original_oracle import embed_net, randomise
from vireid.cli.test import app as eval_app
from vireid.cli.train import app as train_app
from vireid.constants import IMAGENET_MEAN, IMAGENET_STD
from vireid.loader.source import ShardBytes
from vireid.records import Modality

SMALL = {"width": 32, "height": 64}


@pytest.fixture(scope="module")
def shards(shard_dir):
    return shard_dir("sysu", "raw", **SMALL)  # exact pixels: both sides see the same input


@pytest.fixture(scope="module")
def original(shards, tmp_path_factory):
    """The oracle network with random weights, saved as the original's train.py saves."""
    classes = ShardBytes(shards).manifest.training_view(None).num_classes
    torch.manual_seed(0)
    net = embed_net(classes)
    randomise(net, torch.Generator().manual_seed(1))
    path = tmp_path_factory.mktemp("original") / "sysu_agw_p4_n8_lr_0.1_seed_0_best.t"
    torch.save({"net": net.state_dict(), "cmc": np.zeros(20, np.float32),
                "mAP": np.float64(0.5), "mINP": np.float64(0.4), "epoch": 40}, path)
    return net.eval(), path


def oracle_features(net, shards, numbers,
                    flip: bool = False) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """pool and fc features of these stored images, through the original's eval forward;
    ``flip``: as CAJ's testa.py, the mean of the image's and its mirror's (each L2-normalised
    by the network), L2-normalised again."""
    with ShardBytes(shards) as source:
        manifest = source.manifest
        mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
        features = {}
        for number in sorted(numbers):
            sample = manifest.samples[number]
            pixels = source.read(number).reshape(manifest.height, manifest.width, 3) / 255.0
            image = torch.tensor(((pixels - mean) / std).transpose(2, 0, 1)[None],
                                 dtype=torch.float32)
            modal = 1 if sample.modality is Modality.VISIBLE else 2
            with torch.no_grad():
                pool, fc = net(image, image, modal=modal)
                if flip:
                    mirror = torch.flip(image, dims=[3])
                    pool_flip, fc_flip = net(mirror, mirror, modal=modal)
                    pool = F.normalize((pool + pool_flip) / 2, dim=1)
                    fc = F.normalize((fc + fc_flip) / 2, dim=1)
            features[number] = (pool[0].numpy(), fc[0].numpy())
    return features


@pytest.mark.dali
@pytest.mark.parametrize("flip", [False, True], ids=["test.py", "CAJ testa.py (--flip)"])
def test_vireid_test_on_an_original_checkpoint_equals_the_oracle(shards, original, tmp_path,
                                                                 flip):
    net, path = original
    result = CliRunner().invoke(eval_app, ["--shards", str(shards), "--checkpoint", str(path),
                                           "--device", "cpu", "--json",
                                           str(tmp_path / "rows.json")]
                                + (["--flip"] if flip else []))
    assert result.exit_code == 0, result.output
    assert f"evaluating original AGW checkpoint {path}: epoch 41" in result.output
    rows = json.loads((tmp_path / "rows.json").read_text())
    manifest = ShardBytes(shards).manifest
    cams = np.array([s.cam for s in manifest.samples])
    protocol = manifest.protocol(manifest.default_protocol)
    tested = {i for t in protocol.trials for i in (*t.query, *t.gallery)}
    features = oracle_features(net, shards, tested, flip)
    for kind, column in (("pool", 0), ("fc", 1)):
        for trial in protocol.trials:
            query = np.stack([features[i][column] for i in trial.query])
            gallery = np.stack([features[i][column] for i in trial.gallery])
            cmc, mean_ap, minp = original_eval(
                -(query @ gallery.T), np.array(trial.query_pids), np.array(trial.gallery_pids),
                cams[list(trial.query)], cams[list(trial.gallery)], "sysu")
            (ours,) = [r for r in rows if r["feature"] == kind and r["trial"] == trial.trial]
            assert ours["rank1"] == pytest.approx(float(cmc[0]), abs=1e-6)
            assert ours["rank5"] == pytest.approx(float(cmc[4]), abs=1e-6)
            assert ours["mAP"] == pytest.approx(mean_ap, abs=1e-5)
            assert ours["mINP"] == pytest.approx(minp, abs=1e-5)


@pytest.mark.dali
def test_init_fine_tunes_from_an_original_checkpoint(shard_dir, original, tmp_path, caplog):
    """Another dataset (another class count): the classifier starts afresh, one line says so,
    and every other weight is the original's at the start."""
    _, path = original
    regdb = shard_dir("regdb", "raw", **SMALL)
    out = tmp_path / "run"
    result = CliRunner().invoke(train_app, [
        "--shards", str(regdb), "--out", str(out), "--init", str(path), "--pretrained", "none",
        "--epochs", "1", "--max-steps", "1", "--batch-ids", "2", "--num-pos", "2",
        "--warmup-epochs", "1", "--milestones", "2", "3", "--device", "cpu", "--amp", "off",
        "--eval-every", "5", "--lr", "1e-9"])
    assert result.exit_code == 0, result.output
    assert "classes, this run has" in caplog.text and "classifier is re-initialised" in \
        caplog.text
    trained = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    net = torch.load(path, weights_only=False)["net"]
    stem = net["visible_module.visible.conv1.weight"]
    assert torch.allclose(trained["backbone.visible_stem.0.weight"], stem, atol=1e-6)


def test_init_and_resume_exclude_each_other(shards, original, tmp_path):
    _, path = original
    result = CliRunner().invoke(train_app, ["--shards", str(shards), "--out",
                                            str(tmp_path / "r"), "--init", str(path),
                                            "--resume", "--device", "cpu"])
    assert result.exit_code == 1
