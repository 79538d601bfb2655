"""Whole runs on fake shards: learning, exact resume after a kill, failures that lose nothing."""

from __future__ import annotations

import json

import pytest
import torch

from vireid.errors import VireidError
from vireid.train.checkpoint import load_checkpoint
from vireid.train.config import TrainConfig
from vireid.train.reporting import Reporter
from vireid.train.runner import checkpoint_path, run_training

TINY = {"width": 32, "height": 64}


class Recorder(Reporter):
    def __init__(self, stop_at_epoch=None):
        self.steps, self.stop_at_epoch = [], stop_at_epoch

    def epoch_start(self, epoch, epochs, steps):
        if epoch == self.stop_at_epoch:
            raise KeyboardInterrupt  # a kill between epochs

    def log(self, stats):
        self.steps.append((stats["step"], stats["loss"], stats["loss_id"]))


def config(shards, out, **overrides) -> TrainConfig:
    values = dict(shards=str(shards), out=str(out), arch="resnet18", pretrained="none",
                  epochs=3, batch_ids=4, num_pos=2, amp="off", max_steps=3, log_every=1,
                  eval_every=10, warmup_epochs=1, milestones=(2, 3), device="cpu")
    return TrainConfig.from_flat(**{**values, **overrides})


@pytest.fixture(scope="module")
def tiny_shards(shard_dir):
    return shard_dir("sysu", "jpeg", **TINY)


@pytest.mark.dali
def test_resume_after_a_kill_matches_the_uninterrupted_run(tiny_shards, tmp_path):
    straight = Recorder()
    rows = run_training(config(tiny_shards, tmp_path / "a"), straight).evaluations
    killed = Recorder(stop_at_epoch=2)
    with pytest.raises(KeyboardInterrupt):
        run_training(config(tiny_shards, tmp_path / "b"), killed)
    assert load_checkpoint(checkpoint_path(tmp_path / "b"))["epoch"] == 1
    resumed = Recorder()
    rows_b = run_training(config(tiny_shards, tmp_path / "b", resume=True),
                          resumed).evaluations
    assert len(straight.steps) == 9 and killed.steps + resumed.steps == straight.steps
    assert rows == rows_b
    a = load_checkpoint(checkpoint_path(tmp_path / "a"))["model"]
    b = load_checkpoint(checkpoint_path(tmp_path / "b"))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.dali
def test_run_folder_contents(tiny_shards, tmp_path):
    out = tmp_path / "run"
    run_training(config(tiny_shards, out, epochs=2, eval_every=1), Reporter())
    assert json.loads((out / "config.json").read_text())["arch"] == "resnet18"
    assert "torch" in json.loads((out / "versions.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    evaluations = [r for r in rows if r["kind"] == "eval"]
    assert [r["epoch"] for r in epochs] == [0, 1]
    assert {r["epoch"] for r in evaluations} == {0, 1}
    mean = next(r for r in evaluations if r["trial"] == "mean" and r["feature"] == "pool")
    for key in ("epoch", "protocol", "rank1", "rank5", "rank10", "rank20", "mAP", "mINP"):
        assert key in mean
    assert 0 <= mean["rank1"] <= mean["rank5"] <= mean["rank20"] <= 1
    assert list((out / "tb").iterdir())
    checkpoint = torch.load(checkpoint_path(out), weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "loader", "rng"} <= set(checkpoint)


@pytest.mark.dali
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_shards, tmp_path, monkeypatch):
    from vireid.train.methods import MethodSpec

    real = MethodSpec.losses
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        losses = real(*args, **kwargs)
        if calls["n"] > 3:  # the second epoch goes wrong
            losses = {k: v * float("nan") for k, v in losses.items()}
        return losses

    monkeypatch.setattr(MethodSpec, "losses", poisoned)
    out = tmp_path / "run"
    with pytest.raises(VireidError, match="NaN or infinite"):
        run_training(config(tiny_shards, out), Reporter())
    state = load_checkpoint(checkpoint_path(out))
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_bad_inputs(tiny_shards, tmp_path):
    with pytest.raises(VireidError, match="not a shard folder"):
        run_training(config(tmp_path / "nowhere", tmp_path / "x"))
    with pytest.raises(VireidError, match="regdb-v2t: no such protocol"):
        run_training(config(tiny_shards, tmp_path / "p", eval_protocol="regdb-v2t",
                            epochs=1))
    with pytest.raises(VireidError, match="nothing to resume"):
        run_training(config(tiny_shards, tmp_path / "r", resume=True))


@pytest.mark.dali
def test_checkpoint_of_another_model_or_class_count(tiny_shards, tmp_path):
    from vireid.train.checkpoint_eval import EvaluationSettings, evaluate_checkpoint

    out = tmp_path / "run"
    run_training(config(tiny_shards, out, epochs=1, max_steps=1))
    state = load_checkpoint(checkpoint_path(out))
    state["num_classes"] += 3
    torch.save(state, tmp_path / "classes.pt")
    with pytest.raises(VireidError, match="classes.pt: weights do not fit"):
        evaluate_checkpoint(tiny_shards, tmp_path / "classes.pt", EvaluationSettings(device="cpu"))
    state = load_checkpoint(checkpoint_path(out))
    state["arch"] = "resnet50"
    torch.save(state, tmp_path / "arch.pt")
    with pytest.raises(VireidError, match="arch.pt: weights do not fit a resnet50"):
        evaluate_checkpoint(tiny_shards, tmp_path / "arch.pt", EvaluationSettings(device="cpu"))


@pytest.mark.dali
@pytest.mark.slow
def test_a_short_run_learns_far_above_chance(fake_tree, tmp_path):
    from vireid.datasets import read_dataset
    from vireid.fake import make_fake
    from vireid.shards.build import BuildOptions, build_shards
    from vireid.train.checkpoint_eval import EvaluationSettings, evaluate_checkpoint

    tree = make_fake("sysu", tmp_path / "SYSU", ids=32, images_per_camera=3, seed=1)
    shards = tmp_path / "shards"
    build_shards(read_dataset("sysu", tree.root), shards, BuildOptions(**TINY))
    out = tmp_path / "run"
    # float32 training and test: bf16 convolutions take PyTorch's slow generic kernel on CPUs
    # without AVX-512 (twice the time); other tests cover bf16
    rows = run_training(config(shards, out, epochs=8, max_steps=None, amp="off",
                               warmup_epochs=2, milestones=(6, 8), log_every=10)).evaluations
    mean = next(r for r in rows if r["trial"] == "mean" and r["feature"] == "fc")
    test_ids = len((tree.root / "exp/test_id.txt").read_text().split(","))
    assert mean["rank1"] > 4 / test_ids  # chance is 1 / test ids
    tested = evaluate_checkpoint(shards, checkpoint_path(out),
                                 EvaluationSettings(amp="off", device="cpu"))
    again = next(r for r in tested if r["trial"] == "mean" and r["feature"] == "fc")
    assert again["rank1"] == pytest.approx(mean["rank1"])
    assert len([r for r in tested if r["feature"] == "fc"]) == 11  # 10 trials + mean
