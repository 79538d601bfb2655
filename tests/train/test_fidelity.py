"""Comparable with the original: its recipe in one switch, the best-on-test checkpoint beside
the last, RegDB's ten trials as one job, and single trials never labelled "mean"."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from vireid.cli.test import app as eval_app
from vireid.cli.train import app as train_app
from vireid.train.config import Evaluation, TrainConfig, checked_on_resume
from vireid.train.run_folder import checkpoint_path

TINY = {"width": 32, "height": 64}
FAST = ["--arch", "resnet18", "--pretrained", "none", "--batch-ids", "4", "--num-pos", "2",
        "--max-steps", "1", "--warmup-epochs", "1", "--milestones", "2", "3", "--device", "cpu"]


def train(*arguments):
    return CliRunner().invoke(train_app, [str(a) for a in arguments])


def rows_of(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_the_original_schedule_evaluates_after_even_zero_based_epochs():
    original = Evaluation(every=2, original_schedule=True)
    assert [e for e in range(81) if original.due(e, 81)] == list(range(2, 81, 2))
    vireid = Evaluation(every=2)
    assert [e for e in range(81) if vireid.due(e, 81)] == [*range(1, 81, 2), 80]


def test_the_recipe_sets_what_differs_and_explicit_options_win():
    config = TrainConfig.with_recipe("original", shards="s", out="o")
    assert (config.sampling.order, config.run.amp) == ("original", "off")
    assert config.evaluation.original_schedule and config.evaluation.first_trial_only
    assert config.to_dict()["recipe"] == "original"
    mine = TrainConfig.with_recipe("original", shards="s", out="o", amp="bf16")
    assert mine.run.amp == "bf16" and mine.sampling.order == "original"
    plain = TrainConfig.with_recipe("vireid", shards="s", out="o", amp=None, sampler=None)
    assert (plain.sampling.order, plain.run.amp) == ("epoch", "auto")
    assert not plain.evaluation.original_schedule


@pytest.mark.dali
def test_recipe_original_keeps_best_on_test_beside_last(shard_dir, tmp_path):
    shards = shard_dir("sysu", "jpeg", **TINY)
    out = tmp_path / "run"
    result = train("--shards", shards, "--out", out, *FAST, "--epochs", "5", "--recipe",
                   "original")
    assert result.exit_code == 0, result.output
    rows = rows_of(out)
    evaluated = sorted({r["epoch"] for r in rows if r["kind"] == "eval"})
    assert evaluated == [2, 4]
    assert {r["trial"] for r in rows if r["kind"] == "eval"} == {0}  # gallery trial 0
    best = [r for r in rows if r["kind"] == "best"]
    assert best and all(r["selected_on"] == "test set" and r["feature"] == "fc" for r in best)
    fc = {r["epoch"]: r["rank1"] for r in rows if r["kind"] == "eval" and r["feature"] == "fc"}
    winner = max(fc, key=lambda e: (fc[e], -e))  # highest Rank-1, the earlier on ties
    assert best[-1]["epoch"] == winner and best[-1]["rank1"] == fc[winner]
    saved = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert saved["epoch"] == winner and "test set" in saved["selected_on"]
    assert torch.load(checkpoint_path(out), weights_only=True)["epoch"] == 4
    config = json.loads((out / "config.json").read_text())
    assert (config["sampler"], config["amp"], config["recipe"]) == ("original", "off",
                                                                    "original")
    tested = CliRunner().invoke(eval_app, ["--shards", str(shards), "--checkpoint",
                                           str(out / "checkpoints" / "best.pt"),
                                           "--device", "cpu"])
    assert tested.exit_code == 0, tested.output
    assert f"best.pt: epoch {winner + 1} of 5 (best fc Rank-1 on the test set" in tested.output


@pytest.mark.dali
def test_regdb_ten_trials_as_one_job_and_one_evaluation(shard_dir, tmp_path):
    shards = shard_dir("regdb", "jpeg", **TINY)
    out = tmp_path / "runs"
    options = [*FAST, "--epochs", "1", "--batch-ids", "2", "--eval-every", "5"]
    first = train("--shards", shards, "--out", out, *options, "--trial", "all")
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", *(f"trial-{t}" for t in range(1, 11))])
    changed = train("--shards", shards, "--out", out, *options, "--trial", "all", "--resume",
                    "--lr", "0.05")  # the job's settings are its config.json's, as one run's
    assert changed.exit_code == 1 and "lr=0.05 is refused" in changed.output, changed.output
    again = train("--shards", shards, "--out", out, *options, "--trial", "all")
    assert again.exit_code == 1 and "holds a `--trial all` job" in again.output
    for trial in range(1, 11):
        rows = rows_of(out / f"trial-{trial}")
        assert {r["trial"] for r in rows if r["kind"] == "eval"} == {trial}  # never "mean"
    again = train("--shards", shards, "--out", out, *options, "--trial", "all", "--resume")
    assert again.exit_code == 0 and again.output.count("finished") == 10
    result = CliRunner().invoke(eval_app, ["--shards", str(shards), "--checkpoint", str(out),
                                           "--device", "cpu", "--json",
                                           str(tmp_path / "all.json")])
    assert result.exit_code == 0, result.output
    scored = json.loads((tmp_path / "all.json").read_text())
    for protocol in ("regdb-v2t", "regdb-t2v"):
        mine = [r for r in scored if r["protocol"] == protocol and r["feature"] == "fc"]
        trials = [r for r in mine if r["trial"] != "mean"]
        assert sorted(r["trial"] for r in trials) == list(range(1, 11))
        (mean,) = [r for r in mine if r["trial"] == "mean"]
        assert mean["rank1"] == pytest.approx(sum(r["rank1"] for r in trials) / 10)


def test_trial_all_on_a_dataset_with_one_training_set_is_refused(shard_dir, tmp_path):
    result = train("--shards", shard_dir("sysu", "jpeg", **TINY), "--out", tmp_path / "r",
                   *FAST, "--epochs", "1", "--trial", "all")
    assert result.exit_code == 1 and "has one training set" in result.output


def test_vireid_test_extracts_float32_features_by_default():
    from vireid.train.checkpoint_eval import EvaluationSettings

    assert EvaluationSettings().amp == "off"


def test_random_erasing_can_be_switched_off_without_moving_other_draws(shard_dir):
    """The published SYSU and RegDB rows come from code without random erasing."""
    from tests.loaders import train_loader

    shards = shard_dir("sysu", "raw", **TINY)
    with_erasing = train_loader("reference", shards, batch_ids=4, num_pos=2, seed=3)
    without = train_loader("reference", shards, batch_ids=4, num_pos=2, seed=3, erase_prob=0.0)
    for step in range(3):
        a, b = with_erasing.plan(0, step).params, without.plan(0, step).params
        assert (b.erase == 0).all()
        assert (a.top == b.top).all() and (a.left == b.left).all() and (a.flip == b.flip).all()
    assert any((with_erasing.plan(0, s).params.erase[:, 2] > 0).any() for s in range(3))
    config = TrainConfig.from_flat(shards="s", out="o", erase_prob=0.0)
    assert config.sampling.erase_prob == 0.0 and "erase_prob" in checked_on_resume()
