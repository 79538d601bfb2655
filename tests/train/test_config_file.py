"""`vireid-train --config FILE`: defaults < file < options; `--resume` keeps the run's own
settings and refuses an option that disagrees with them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vireid.cli.train import app as train_app

FAST = ["--arch", "resnet18", "--pretrained", "none", "--batch-ids", "4", "--num-pos", "2",
        "--max-steps", "1", "--warmup-epochs", "1", "--milestones", "2", "3", "--device", "cpu",
        "--eval-every", "5", "--epochs", "1"]


def train(*arguments):
    return CliRunner().invoke(train_app, [str(a) for a in arguments])


@pytest.fixture(scope="module")
def shards(shard_dir):
    return shard_dir("sysu", "jpeg", width=32, height=64)


@pytest.fixture(scope="module")
def first_run(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("first") / "run"
    result = train("--shards", shards, "--out", out, *FAST, "--seed", "3")
    assert result.exit_code == 0, result.output
    return out


def settings(out) -> dict:
    return json.loads((out / "config.json").read_text())


@pytest.mark.dali
def test_a_runs_config_json_repeats_it_and_options_override(first_run, tmp_path):
    out = tmp_path / "again"
    result = train("--config", first_run / "config.json", "--out", out, "--lr", "0.05")
    assert result.exit_code == 0, result.output
    before, after = settings(first_run), settings(out)
    assert {k for k in before if before[k] != after[k]} == {"out", "lr"}
    assert after["seed"] == 3 and after["lr"] == 0.05


@pytest.mark.dali
def test_a_toml_file_and_an_unknown_setting(shards, tmp_path):
    toml = tmp_path / "small.toml"
    toml.write_text(f'shards = "{shards}"\narch = "resnet18"\npretrained = "none"\n'
                    'batch_ids = 4\nnum_pos = 2\nmax_steps = 1\nepochs = 1\nwarmup_epochs = 1\n'
                    'milestones = [2, 3]\ndevice = "cpu"\neval_every = 5\nsampler = "original"\n')
    result = train("--config", toml, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert settings(tmp_path / "run")["sampler"] == "original"
    toml.write_text(toml.read_text() + "learning_rate = 0.1\n")
    result = train("--config", toml, "--out", tmp_path / "other")
    assert result.exit_code == 1
    assert "small.toml: unknown setting 'learning_rate'" in result.output


@pytest.mark.dali
def test_a_config_files_resume_flag_never_resumes_a_new_run(first_run, tmp_path):
    saved = settings(first_run)
    path = tmp_path / "resumed.json"
    path.write_text(json.dumps({**saved, "resume": True}))
    result = train("--config", path, "--out", tmp_path / "new")
    assert result.exit_code == 0, result.output
    assert settings(tmp_path / "new")["resume"] is False


@pytest.mark.dali
def test_resume_keeps_the_runs_settings_and_refuses_a_disagreeing_option(first_run):
    refused = train("--out", first_run, "--resume", "--epochs", "2", "--seed", "4")
    assert refused.exit_code == 1
    assert "the run has seed=3; a resumed run keeps its settings, so seed=4 is refused" in \
        refused.output
    resumed = train("--out", first_run, "--resume", "--epochs", "2")  # no --shards needed
    assert resumed.exit_code == 0, resumed.output
    assert settings(first_run)["epochs"] == 2 and settings(first_run)["seed"] == 3


def test_shards_are_required_without_a_file_or_a_resume(tmp_path):
    result = train("--out", tmp_path / "run", *FAST)
    assert result.exit_code == 1 and "--shards: missing" in result.output
