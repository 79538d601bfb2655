"""Configuration files: ``vireid-train --config FILE`` and what ``--resume`` keeps.

A file holds flat settings under the names of ``RUN/config.json`` (the command-line options
with ``_`` for ``-``; ``eval_protocol`` for ``--protocol``), as JSON or TOML: a run's own
``config.json`` works as it is. Precedence: the defaults, then the file, then the options given
on the command line. A resumed run takes its ``config.json``; an option given explicitly that
disagrees with it is refused (it would otherwise be silently used or silently ignored), except
the few that may change between sessions of one run (declared ``resume=FREE`` with the
setting: its length, the machine, how fast it reads and logs, where the shards are).

Example: ``vireid-train --config runs/a/config.json --out runs/b --lr 0.05`` repeats run ``a``
with another learning rate.
"""

from __future__ import annotations

import json
from pathlib import Path

import tomllib

from vireid.choices import Recipe
from vireid.errors import VireidError
from vireid.fields import FREE
from vireid.train.config import TrainConfig, resume_rule
from vireid.train.run_folder import checkpoint_path


def read_config_file(path) -> dict:
    """Flat settings from a JSON or TOML file; unknown names are a one-line error."""
    path = Path(path)
    kind = "TOML" if path.suffix == ".toml" else "JSON"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise VireidError(path, f"cannot read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise VireidError(path, f"not a {kind} settings file (not UTF-8 text: byte "
                          f"{error.start})") from None
    try:
        values = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise VireidError(path, f"not a {kind} settings file "
                          f"({str(error).splitlines()[0][:100]})") from None
    except RecursionError:
        raise VireidError(path, f"not a {kind} settings file (nested too deeply)") from None
    if not isinstance(values, dict):
        raise VireidError(path, "must hold a table of settings")
    known = set(TrainConfig.from_flat(shards="", out="").to_dict())
    unknown = sorted(set(values) - known)
    if unknown:
        raise VireidError(path, f"unknown setting {unknown[0]!r} (settings are named as in a "
                          "run's config.json)")
    return values


def resumed_settings(out, explicit: dict, job: bool = False) -> tuple[dict, dict]:
    """The run's own settings (``OUT/config.json``), and those merged with the explicitly
    given ones, refusing a disagreement. ``job``: a ``--trial all`` job folder, whose
    config.json holds the settings every trial shares."""
    saved_path = Path(out) / "config.json"
    if not saved_path.is_file():
        if checkpoint_path(out).is_file() or (job and any(Path(out).glob("trial-*"))):
            return {}, explicit  # a folder from before config files: the checkpoints decide
        raise VireidError(checkpoint_path(out), "nothing to resume (no checkpoint)")
    saved = read_config_file(saved_path)
    for name, value in explicit.items():
        if name not in saved or resume_rule(name) == FREE:
            continue
        if _plain(value) != _plain(saved[name]):
            raise VireidError(saved_path, f"the run has {name}={saved[name]!r}; a resumed run "
                              f"keeps its settings, so {name}={_plain(value)!r} is refused "
                              "(start a new run to change it)")
    return saved, {**saved, **explicit, "resume": True}


def config_from(values: dict, origins: dict) -> TrainConfig:
    """``TrainConfig`` from flat ``values`` (with their ``recipe``); a refused setting that
    came from a file (``origins``: name → path) names that file first."""
    values = dict(values)
    try:
        return TrainConfig.with_recipe(values.pop("recipe", Recipe.VIREID), **values)
    except VireidError as error:
        source = origins.get(error.where)
        if source is None:
            raise
        raise VireidError(source, f"{error.where}: {error.problem}") from None


def _plain(value):
    """Comparable form: choices as words, paths as text, tuples as lists."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return getattr(value, "value", value) if not isinstance(value, Path) else str(value)
