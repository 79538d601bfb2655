"""Each setting is declared once (``vireid.fields.setting``): every bound of every field is
refused with the same words from the command line and from a config file, before any work;
the resume rules, config.json names and options all come from the same fields."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vireid.cli.train import app as train_app
from vireid.fields import CHECK, FREE, flat_fields
from vireid.train.config import GROUPS, TrainConfig, checked_on_resume, resume_rule


def bound_cases() -> list[tuple[str, object]]:
    """(flat name, a value just outside one of its bounds) for every bounded field."""
    cases = []
    for name, (_, field) in flat_fields(GROUPS).items():
        if name == "trial":  # the command's own --trial (also "all") checks it first
            continue
        meta = field.metadata
        step = 0.5 if isinstance(field.default, float) else 1
        if meta.get("min") is not None:
            cases.append((name, meta["min"] - step))
        if meta.get("above") is not None:
            cases.append((name, meta["above"]))
        if meta.get("max") is not None and meta["max"] < 1e30:
            cases.append((name, meta["max"] + step))
    return cases


CASES = bound_cases()


def test_the_cases_cover_every_bound():
    names = {name for name, _ in CASES}
    assert {"epochs", "lr", "batch_ids", "seed", "erase_prob", "eval_every", "log_every",
            "eval_batch_size", "prefetch", "hw_decoder_load", "milestones"} <= names


@pytest.mark.parametrize("name, value", CASES, ids=[f"{n}={v}" for n, v in CASES])
def test_a_bound_is_refused_alike_from_the_cli_and_a_config_file(tmp_path, name, value):
    _, field = flat_fields(GROUPS)[name]
    flag = field.metadata.get("flag") or "--" + name.replace("_", "-")
    given = [str(value)] * (2 if name == "milestones" else 1)
    from_cli = CliRunner().invoke(train_app, ["--shards", str(tmp_path), "--out",
                                              str(tmp_path / "run"), flag, *given])
    assert from_cli.exit_code == 2 and "Traceback" not in from_cli.output, from_cli.output
    problem = from_cli.output.strip().splitlines()[-1].split(f"'{flag}': ", 1)[1]
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({name: [value] * 2 if name == "milestones" else value}))
    from_file = CliRunner().invoke(train_app, ["--config", str(config), "--shards",
                                               str(tmp_path), "--out", str(tmp_path / "run")])
    assert from_file.exit_code == 1, from_file.output
    assert from_file.output.strip() == f"error: {config}: {name}: {problem}"
    assert not (tmp_path / "run").exists()


def test_a_config_file_with_a_wrong_type_or_an_unknown_key(tmp_path):
    for content, problem in (({"log_every": "often"}, "log_every: 'often' is not a whole "
                              "number"), ({"lr_typo": 0.1}, "unknown setting 'lr_typo'")):
        config = tmp_path / "settings.json"
        config.write_text(json.dumps(content))
        result = CliRunner().invoke(train_app, ["--config", str(config), "--shards",
                                                str(tmp_path), "--out", str(tmp_path / "run")])
        assert result.exit_code == 1 and problem in result.output, result.output


def test_resume_rules_come_from_the_fields():
    assert resume_rule("epochs") == FREE and resume_rule("decode_on") == FREE
    assert resume_rule("lr") == CHECK and resume_rule("sampler") == CHECK
    assert resume_rule("amp") not in (FREE, CHECK)  # kept: a disagreement is refused
    assert set(checked_on_resume()) >= {"batch_ids", "num_pos", "method", "arch", "seed",
                                        "replace", "sampler", "lr", "milestones",
                                        "erase_prob", "triplet", "views"}


def test_every_setting_is_an_option_with_help_and_round_trips_flat():
    result = CliRunner().invoke(train_app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for name, (_, field) in flat_fields(GROUPS).items():
        if name == "trial":  # the command's own --trial also takes "all"
            continue
        flag = (field.metadata.get("flag") or "--" + name.replace("_", "-")).split("/")[0]
        assert flag in result.output, name
        assert field.metadata.get("help"), f"{name} has no help"
    for panel in ("Run:", "Data and sampling:", "Model:", "Optimisation:", "Loader:",
                  "GPU decoding:", "Evaluation:"):
        assert panel in result.output
    config = TrainConfig.from_flat(shards="s", out="o", lr=0.05, decode_on="cpu")
    assert TrainConfig.from_flat(**config.to_dict()).to_dict() == config.to_dict()
