"""``--method caj`` end to end on fake shards: three image groups per step, exact resume, a run
through the installed command that learns, and flip averaging at test (docs/methods.md)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch

from tests.test_cli import command, succeeded
from tests.train.test_runner import TINY, Recorder, config
from vireid.choices import Views
from vireid.train.checkpoint import load_checkpoint
from vireid.train.checkpoint_eval import EvaluationSettings, evaluate_checkpoint
from vireid.train.methods import get_method, list_methods
from vireid.train.runner import checkpoint_path, run_training


class Counter(Recorder):
    def __init__(self, stop_at_epoch=None):
        super().__init__(stop_at_epoch)
        self.images = []

    def log(self, stats):
        super().log(stats)
        self.images.append(stats["images"])


@pytest.fixture(scope="module")
def tiny_shards(shard_dir):
    return shard_dir("sysu", "jpeg", **TINY)


@pytest.fixture(scope="module")
def straight(tiny_shards, tmp_path_factory):
    """An uninterrupted 3-epoch CAJ run (3 steps an epoch), once."""
    out = tmp_path_factory.mktemp("caj") / "straight"
    recorder = Counter()
    rows = run_training(config(tiny_shards, out, method="caj"), recorder).evaluations
    return {"out": out, "recorder": recorder, "rows": rows}


def run(name: str, *arguments) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "2", "COLUMNS": "100"}
    return subprocess.run([command(name), *map(str, arguments)], capture_output=True,
                          text=True, timeout=540, env=environment)


def test_caj_is_registered_with_its_recipe():
    spec = get_method("caj")
    assert "caj" in list_methods()
    assert (spec.views, spec.flip, spec.epochs, spec.pooling, spec.non_local) == \
        (Views.CHANNEL, True, 100, "gem", True)
    assert (get_method("agw").views, get_method("agw").flip) == (Views.SINGLE, False)
    text = succeeded(run("vireid-train", "--method", "caj", "--help")).stdout
    assert "caj: AGW's network on channel-augmented" in " ".join(text.split())
    assert "--eval-flip" in text


@pytest.mark.dali
def test_caj_steps_hold_two_visible_views_and_the_infrared_one(straight):
    # P·K = 4·2: visible view 0, visible view 1, infrared per step
    assert straight["recorder"].images[:3] == [24, 48, 72]
    assert all(row["flip"] for row in straight["rows"])  # CAJ evaluates flip-averaged


@pytest.mark.dali
def test_views_given_explicitly_win_over_the_method(tiny_shards, tmp_path):
    recorder = Counter()
    run_training(config(tiny_shards, tmp_path / "run", method="caj", views="single", epochs=1,
                        max_steps=2, eval_flip=False), recorder)
    assert recorder.images == [16, 32]


@pytest.mark.dali
def test_caj_resume_after_a_kill_matches_the_uninterrupted_run(tiny_shards, straight, tmp_path):
    killed = Counter(stop_at_epoch=2)
    with pytest.raises(KeyboardInterrupt):
        run_training(config(tiny_shards, tmp_path / "b", method="caj"), killed)
    assert load_checkpoint(checkpoint_path(tmp_path / "b"))["epoch"] == 1
    resumed = Counter()
    rows = run_training(config(tiny_shards, tmp_path / "b", method="caj", resume=True),
                        resumed).evaluations
    assert len(straight["recorder"].steps) == 9
    assert killed.steps + resumed.steps == straight["recorder"].steps
    assert rows == straight["rows"]
    a = load_checkpoint(checkpoint_path(straight["out"]))["model"]
    b = load_checkpoint(checkpoint_path(tmp_path / "b"))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.dali
def test_vireid_test_flips_by_the_checkpoint_method_unless_told(tiny_shards, straight, tmp_path):
    caj = checkpoint_path(straight["out"])
    state = load_checkpoint(caj)
    state["method"] = "agw"  # the same network: only the default differs
    agw = tmp_path / "agw.pt"
    torch.save(state, agw)
    said = []
    cpu = EvaluationSettings(device="cpu", verify=False)
    default = evaluate_checkpoint(tiny_shards, caj, cpu, on_checkpoint=said.append)
    assert default == straight["rows"]  # as evaluated in training: flip on
    assert said[-1].endswith("flip averaging on (the method's default)")
    assert not any(r["flip"] for r in evaluate_checkpoint(tiny_shards, agw, cpu, said.append))
    assert said[-1].endswith("flip averaging off (the method's default)")
    result = succeeded(run("vireid-test", "--shards", tiny_shards, "--checkpoint", agw,
                           "--flip", "--device", "cpu", "--json", tmp_path / "rows.json"))
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert all(r["flip"] for r in rows) and "sysu-all (flip)" in result.stdout
    assert "flip averaging on (as asked)" in result.stderr
    assert [r["rank1"] for r in rows] == [r["rank1"] for r in default]  # same weights


@pytest.mark.dali
def test_saved_features_remember_flip(tiny_shards, straight, tmp_path):
    from vireid.eval.saved import load_features

    npz = tmp_path / "features.npz"
    evaluate_checkpoint(tiny_shards, checkpoint_path(straight["out"]),
                        EvaluationSettings(device="cpu", verify=False, flip=False,
                                           save_features=str(npz)))
    assert load_features(npz).flip is False
    result = succeeded(run("vireid-test", "--shards", tiny_shards, "--checkpoint",
                           checkpoint_path(straight["out"]), "--device", "cpu",
                           "--save-features", npz))
    assert load_features(npz).flip is True and "(flip)" in result.stdout
    again = succeeded(run("vireid-test", "--shards", tiny_shards, "--features", npz,
                          "--device", "cpu"))
    assert again.stdout.splitlines()[-3:] == result.stdout.splitlines()[-3:]


@pytest.mark.dali
@pytest.mark.slow
def test_caj_through_the_installed_command_learns(tmp_path):
    """Six epochs of 20 steps, resnet18 at 64×32: ~40 s on 2 free cores with AVX-512, several
    minutes on AVX2-only cores (float32: bf16 convolutions there take the slow generic kernel,
    about twice as long); Rank-1 ~55 %."""
    raw, shards, out = tmp_path / "raw", tmp_path / "shards", tmp_path / "run"
    succeeded(run("vireid-shard", "fake", "sysu", raw, "--ids", 32, "--images-per-camera", 3,
                  "--seed", 1))
    succeeded(run("vireid-shard", "build", "sysu", raw, shards, "--width", 32, "--height", 64))
    train = succeeded(run("vireid-train", "--method", "caj", "--shards", shards, "--out", out,
                          "--arch", "resnet18", "--pretrained", "none", "--epochs", 6,
                          "--batch-ids", 4, "--num-pos", 2, "--warmup-epochs", 2,
                          "--milestones", 4, 6, "--eval-every", 6, "--amp", "off",
                          "--device", "cpu"))
    assert "(flip)" in train.stdout
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    mean = next(r for r in metrics if r["kind"] == "eval" and r["trial"] == "mean"
                and r["feature"] == "fc")
    test_ids = len((raw / "exp/test_id.txt").read_text().split(","))
    assert mean["flip"] and mean["rank1"] > 4 / test_ids  # chance is 1 / test ids
    assert json.loads((out / "config.json").read_text())["method"] == "caj"


def test_flip_settings_by_flat_name_and_recipe():
    from vireid.train.config import TrainConfig

    plain = TrainConfig.from_flat(shards="s", out="o", eval_flip=True, views="channel")
    assert plain.evaluation.flip is True and plain.sampling.views is Views.CHANNEL
    assert plain.to_dict()["eval_flip"] is True and plain.to_dict()["views"] == "channel"
    original = TrainConfig.with_recipe("original", shards="s", out="o", method="caj")
    assert original.evaluation.flip is False  # the original's training script: no flip
    asked = TrainConfig.with_recipe("original", shards="s", out="o", eval_flip=True)
    assert asked.evaluation.flip is True
    assert TrainConfig.from_flat(shards="s", out="o").evaluation.flip is None


@pytest.mark.dali
def test_triplet_option_swaps_only_the_metric_loss(tiny_shards, straight, tmp_path):
    from vireid.train.losses import adp_triplet, weighted_regularized_triplet

    assert get_method("caj", "wrt").metric_loss is weighted_regularized_triplet
    assert get_method("agw", "adp").metric_loss is adp_triplet
    assert get_method("caj", "wrt").views is Views.CHANNEL
    first = {}
    for triplet in ("adp", "wrt"):
        recorder = Counter()
        run_training(config(tiny_shards, tmp_path / triplet, method="caj", triplet=triplet,
                            epochs=1, max_steps=1), recorder)
        first[triplet] = recorder.steps[0]
    assert first["adp"] == straight["recorder"].steps[0]  # adp is caj's own
    assert first["wrt"][2] == first["adp"][2] and first["wrt"][1] != first["adp"][1]
