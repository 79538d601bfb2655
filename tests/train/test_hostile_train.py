"""`vireid-train` met by a hostile but realistic user (round 2): settings from files meet the
same checks as options, runs started with --init resume, non-finite weights are never kept,
a `--trial all` job keeps its settings, outputs stay apart from inputs, and torchrun failures
end in the one line that says why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.train.test_bad_input import FAST, TINY, one_line_error, train
from vireid.train.run_folder import checkpoint_path

# FAST as config-file settings
FAST_SETTINGS = {"arch": "resnet18", "pretrained": "none", "epochs": 1, "batch_ids": 4,
                 "num_pos": 2, "amp": "off", "max_steps": 1, "eval_every": 5,
                 "warmup_epochs": 1, "milestones": [2, 3], "device": "cpu"}


@pytest.fixture(scope="module")
def shards(shard_dir):
    return shard_dir("sysu", "jpeg", **TINY)


@pytest.mark.parametrize("setting, value, problem", [
    ("epochs", 0, "epochs: 0 is less than 1"),
    ("lr", -1, "lr: -1 must be greater than 0"),
    ("lr", "abc", "lr: 'abc' is not a number"),
    ("batch_ids", 0, "batch_ids: 0 is less than 1"),
    ("seed", -3, "seed: -3 is less than 0"),
    ("erase_prob", 7, "erase_prob: 7 is more than 1"),
    ("milestones", [50, 20], "milestones: must increase (got 50 20)"),
    ("eval_batch_size", 0, "eval_batch_size: 0 is less than 1"),
    ("eval_every", 0, "eval_every: 0 is less than 1"),
    ("log_every", 0, "log_every: 0 is less than 1"),
    ("num_pos", 2.5, "num_pos: 2.5 is not a whole number"),
    ("loader", "fast", "loader: 'fast' is not one of dali, reference"),
])
def test_config_file_values_meet_the_option_checks(shards, tmp_path, setting, value, problem):
    """A value from --config is refused like the option would be, naming the file, before
    anything is written."""
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({**FAST_SETTINGS, setting: value}))
    result = train("--config", config, "--shards", shards, "--out", tmp_path / "run")
    line = one_line_error(result)
    assert line == f"error: {config}: {problem}", line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content, problem", [
    (b"\xff\xfe{\"lr\": 1}", "not UTF-8 text"),
    (b"[" * 100_000 + b"]" * 100_000, "not a JSON settings file"),
])
def test_unreadable_config_files_are_one_line(shards, tmp_path, content, problem):
    config = tmp_path / "settings.json"
    config.write_bytes(content)
    result = train("--config", config, "--shards", shards, "--out", tmp_path / "run", *FAST)
    assert problem in one_line_error(result)


@pytest.mark.parametrize("lr", ["inf", "nan", "1e300"])
def test_a_learning_rate_sgd_cannot_take_is_refused_while_parsing(shards, tmp_path, lr):
    result = train("--shards", shards, "--out", tmp_path / "run", *FAST, "--lr", lr)
    assert result.exit_code == 2 and "--lr" in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.dali
def test_non_finite_weights_are_never_checkpointed_or_scored(shards, tmp_path):
    """A learning rate that blows the weights up in one step: the loss of that step is
    finite, its update is not. The run stops in one line; no checkpoint, no scores."""
    out = tmp_path / "run"
    result = train("--shards", shards, "--out", out, *FAST, "--lr", "3e38",
                   "--eval-every", "1")
    line = one_line_error(result)
    assert "weights became NaN or infinite" in line, line
    assert not checkpoint_path(out).exists() and not (out / "checkpoints" / "best.pt").exists()
    metrics = (out / "metrics.jsonl").read_text() if (out / "metrics.jsonl").exists() else ""
    assert '"kind": "eval"' not in metrics


@pytest.mark.dali
def test_a_run_started_from_init_weights_resumes(shards, tmp_path):
    first = tmp_path / "first"
    assert train("--shards", shards, "--out", first, *FAST).exit_code == 0
    tuned = tmp_path / "tuned"
    started = train("--shards", shards, "--out", tuned, *FAST, "--init",
                    checkpoint_path(first))
    assert started.exit_code == 0, started.output
    assert json.loads((tuned / "config.json").read_text())["init"] == str(
        checkpoint_path(first))
    resumed = train("--shards", shards, "--out", tuned, *FAST, "--epochs", "2", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert torch.load(checkpoint_path(tuned), weights_only=True)["epoch"] == 1
    other = train("--shards", shards, "--out", tuned, *FAST, "--epochs", "3", "--resume",
                  "--init", checkpoint_path(tuned))
    assert "a resumed run keeps its settings" in one_line_error(other)


def test_a_folder_of_the_users_own_config_files_is_not_a_run_folder(shards, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"note": "my own"}\n')
    (out / "metrics.jsonl").write_text("{}\n")
    result = train("--shards", shards, "--out", out, *FAST)
    assert "is not a run folder" in one_line_error(result)
    assert (out / "config.json").read_text() == '{"note": "my own"}\n'
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.jsonl"]


def test_a_run_folder_inside_the_shards_is_refused(shard_dir, copy_shards, tmp_path):
    shards = copy_shards(shard_dir("sysu", "jpeg", **TINY))
    before = sorted(p.name for p in shards.iterdir())
    link = tmp_path / "link"
    link.symlink_to(shards)
    for out in (shards / "run", link / "run"):
        result = train("--shards", shards, "--out", out, *FAST)
        assert "lies inside the shard folder" in one_line_error(result)
    assert sorted(p.name for p in shards.iterdir()) == before


def test_a_process_count_that_cannot_split_the_batch_is_refused_before_launching(
        shards, tmp_path):
    result = subprocess.run(
        [_command("vireid-train"), "--shards", str(shards), "--out", str(tmp_path / "run"),
         *FAST, "--batch-ids", "4", "--nproc", "3"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["error: --nproc: 3 processes cannot share P = 4 identities per step: "
                     "--batch-ids must be a multiple of the number of processes"]
    assert not (tmp_path / "run").exists()


def test_a_failing_torchrun_process_ends_in_its_own_line(shards, tmp_path):
    """torchrun's own report (a ChildFailedError traceback per process) stays out."""
    a_file = tmp_path / "a-file"
    a_file.write_text("mine\n")
    result = subprocess.run(
        [_command("vireid-train"), "--shards", str(shards), "--out", str(a_file), *FAST,
         "--nproc", "2"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "ChildFailedError" not in result.stderr
    errors = {line for line in result.stderr.splitlines() if line.startswith("error:")}
    assert errors == {f"error: {a_file}: is a file, not a run folder"}, result.stderr
    assert a_file.read_text() == "mine\n"


def _command(name: str) -> str:
    return str(Path(sys.executable).parent / name)
