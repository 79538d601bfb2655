"""The installed commands, run as a user runs them (subprocesses of the venv's scripts).

The happy path builds a tiny fake SYSU tree into shards once, trains two 2-step epochs of
resnet18 on the CPU and tests the checkpoint; ``--help`` must show every option with its
choices; vireid-test refuses each bad option value while parsing (exit 2, no traceback).
"""

from __future__ import annotations

import enum
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import typer

from vireid.cli.export import app as export_app
from vireid.cli.shard import app as shard_app
from vireid.cli.test import app as eval_app
from vireid.cli.train import app as train_app

APPS = {"vireid-shard": shard_app, "vireid-train": train_app, "vireid-test": eval_app,
        "vireid-export": export_app}
TRAIN = ["--arch", "resnet18", "--pretrained", "none", "--epochs", "2", "--batch-ids", "4",
         "--num-pos", "2", "--max-steps", "2", "--eval-every", "1", "--warmup-epochs", "1",
         "--milestones", "2", "3", "--amp", "off", "--device", "cpu"]
METRICS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")


def command(name: str) -> str:
    """The installed script: beside this Python (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def run(name: str, *arguments) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "100"}
    return subprocess.run([command(name), *map(str, arguments)], capture_output=True,
                          text=True, timeout=300, env=environment)


def succeeded(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """``vireid-shard fake`` then ``build``, once (no DALI needed)."""
    work = tmp_path_factory.mktemp("cli")
    raw, shards = work / "raw", work / "shards"
    fake = succeeded(run("vireid-shard", "fake", "sysu", raw, "--ids", 8,
                         "--images-per-camera", 2))
    build = succeeded(run("vireid-shard", "build", "sysu", raw, shards, "--width", 32,
                          "--height", 64))
    return {"work": work, "shards": shards, "fake": fake, "build": build}


@pytest.fixture(scope="module")
def session(built) -> dict:
    """``vireid-train`` on the built shards, then ``vireid-test`` of its checkpoint, once."""
    work, shards, out = built["work"], built["shards"], built["work"] / "run"
    train = succeeded(run("vireid-train", "--shards", shards, "--out", out, *TRAIN))
    test = succeeded(run("vireid-test", "--shards", shards, "--checkpoint",
                         out / "checkpoints" / "last.pt", "--device", "cpu", "--json",
                         work / "rows.json"))
    return {**built, "out": out, "train": train, "test": test}


def table_rows(text: str) -> list[list[str]]:
    """The rows under a table's header line (protocol, feature, trial, six metrics)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("protocol"))
    assert lines[start].split() == ["protocol", "feature", "trial", *METRICS]
    return [line.split() for line in lines[start + 1:] if len(line.split()) == 9]


def test_fake_and_build_write_a_shard_folder(built):
    assert "wrote a fake sysu tree" in built["fake"].stdout
    assert "wrote 82 images" in built["build"].stdout
    shards = built["shards"]
    assert (shards / "manifest.json").is_file()
    tars = sorted(shards.glob("*.tar"))
    assert tars and all(tar.with_suffix(".idx").is_file() for tar in tars)


@pytest.mark.dali
def test_train_writes_its_run_folder_and_prints_a_final_table(session):
    out = session["out"]
    stdout = session["train"].stdout
    assert stdout.lstrip().startswith("final")
    assert table_rows(stdout) and all(row[2] == "mean" for row in table_rows(stdout))
    assert json.loads((out / "config.json").read_text())
    assert (out / "checkpoints" / "last.pt").is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [row for row in rows if row["kind"] == "epoch"]
    evaluations = [row for row in rows if row["kind"] == "eval"]
    assert [row["epoch"] for row in epochs] == [0, 1]
    assert {row["epoch"] for row in evaluations} == {0, 1}  # --eval-every 1
    for row in epochs:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["loss"] > 0
    for row in evaluations:
        assert all(0.0 <= row[metric] <= 1.0 for metric in METRICS)


@pytest.mark.dali
def test_test_prints_a_table_and_writes_json_rows(session):
    assert table_rows(session["test"].stdout)
    rows = json.loads((session["work"] / "rows.json").read_text())
    assert rows and {row["feature"] for row in rows} == {"pool", "fc"}
    assert any(row["trial"] == "mean" for row in rows)
    for row in rows:
        assert all(0.0 <= row[metric] <= 1.0 for metric in ("rank1", "mAP", "mINP"))


def help_commands() -> list:
    """A (script, subcommand words, click command) param for every command with a --help."""
    found = []
    for script, app in APPS.items():
        root = typer.main.get_command(app)
        commands = [((), root), *(((name,), sub) for name, sub in
                                   getattr(root, "commands", {}).items())]
        found += [pytest.param(script, words, cli, id=" ".join([script, *words]))
                  for words, cli in commands]
    return found


def choices_of(hint) -> list[str]:
    """The values of an Enum annotation (``Amp``, ``Amp | None``); none for other types."""
    for kind in (hint, *typing.get_args(hint)):
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            return [member.value for member in kind]
    return []


@pytest.mark.parametrize("script, words, cli", help_commands())
def test_help_lists_every_option_with_its_choices(script, words, cli):
    text = succeeded(run(script, *words, "--help")).stdout
    hints = typing.get_type_hints(inspect.unwrap(cli.callback)) if cli.callback else {}
    for param in cli.params:
        names = [*param.opts, *param.secondary_opts]
        if param.param_type_name == "argument":
            names = [param.name]
        for name in names:
            shown = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)
            assert shown, f"{script} {' '.join(words)} --help lacks {name}"
        choices = choices_of(hints.get(param.name))
        if choices:
            assert f"<{'|'.join(choices)}>" in text, f"{names[0]}: {choices} not shown"


@pytest.mark.parametrize("script", ["vireid-train", "vireid-test"])
def test_help_shows_the_precision_choices(script):
    assert "--amp <auto|bf16|fp16|off>" in succeeded(run(script, "--help")).stdout


@pytest.mark.parametrize("option, value", [
    ("--feature", "both-of-them"), ("--loader", "pil"), ("--device", "gpu"), ("--amp", "fp32"),
    ("--batch-size", "0"), ("--trial", "-1"),
])
def test_vireid_test_refuses_bad_values_while_parsing(tmp_path, option, value):
    result = run("vireid-test", "--shards", tmp_path / "shards", "--checkpoint",
                 tmp_path / "last.pt", option, value)
    assert result.returncode == 2, result.stderr
    assert f"Invalid value for '{option}'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
