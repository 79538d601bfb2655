"""Datasets trained per trial (RegDB): the ten models of a published figure, as one job.

``vireid-train --trial all`` trains one model per trial into ``OUT/trial-<N>``; with
``--resume`` finished trials are skipped, an interrupted one continues and the rest start, so
the whole job resumes like one run. ``vireid-test --checkpoint OUT`` scores each trial with its
own model, in every direction, and averages the trials, as RegDB's published numbers do.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path

from vireid.errors import VireidError
from vireid.files import replaced_atomically
from vireid.shards.manifest import load_manifest
from vireid.train.checkpoint import load_checkpoint
from vireid.train.run_folder import check_apart, check_writable_target, checkpoint_path

log = logging.getLogger(__name__)


def trial_folder(out, trial: int) -> Path:
    return Path(out) / f"trial-{trial}"


def per_trial(shards) -> list[int]:
    """The trials of a dataset trained per trial; a one-line error for the others."""
    manifest = load_manifest(shards)
    if not manifest.trial_views:
        raise VireidError(shards, f"{manifest.dataset} has one training set: every trial is "
                          "trained by one run (train without a trial)")
    return [trial for trial, _ in manifest.trial_views]


def train_every_trial(config, train: Callable, say: Callable[[str], None] = log.info) -> dict:
    """``train(config)`` for each trial into its own folder; returns {trial: result}.

    A new job needs a new or empty ``OUT`` and records its settings in ``OUT/config.json``
    first, so that ``--resume`` compares the job's settings as a single run does (every
    trial trains with the same recipe)."""
    trials = per_trial(config.run.shards)
    if not config.run.resume:
        start_job(Path(config.run.out), config)
    results = {}
    for trial in trials:
        out = trial_folder(config.run.out, trial)
        resume = config.run.resume and checkpoint_path(out).is_file()
        if resume and _finished(out, config.epochs):
            say(f"trial {trial}: finished ({out}), skipped")
            continue
        say(f"trial {trial}: {'resuming' if resume else 'training'} into {out}")
        results[trial] = train(_for_trial(config, trial, out, resume))
    return results


def start_job(out: Path, config) -> None:
    """A new ``--trial all`` job in ``out`` (new or empty): its ``config.json``."""
    check_writable_target(out)
    check_apart(out, {"shard folder": config.run.shards})
    if out.exists() and not out.is_dir():
        raise VireidError(out, "is a file, not a folder for a `--trial all` job")
    if out.is_dir() and any(out.iterdir()):
        held = "holds a `--trial all` job (resume it with --resume)" \
            if (out / "config.json").is_file() else "is not empty"
        raise VireidError(out, f"{held}: a new job needs a new or empty folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(out / "config.json") as partial:
            partial.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    except OSError as error:
        raise VireidError(out, f"cannot write ({error.strerror or error})") from None


def _for_trial(config, trial: int, out: Path, resume: bool):
    run = dataclasses.replace(config.run, out=str(out), resume=resume)
    sampling = dataclasses.replace(config.sampling, trial=trial)
    return dataclasses.replace(config, run=run, sampling=sampling)


def _finished(out: Path, epochs: int) -> bool:
    return int(load_checkpoint(checkpoint_path(out))["epoch"]) + 1 >= epochs


def trial_checkpoints(folder) -> dict[int, Path]:
    """``FOLDER/trial-<N>/checkpoints/last.pt`` of a ``--trial all`` job, by trial."""
    found = {}
    for path in sorted(Path(folder).glob("trial-*")):
        number = path.name.removeprefix("trial-")
        if number.isdigit() and checkpoint_path(path).is_file():
            found[int(number)] = checkpoint_path(path)
    if not found:
        raise VireidError(folder, "holds no trial-<N>/checkpoints/last.pt (a `--trial all` "
                          "training folder)")
    return dict(sorted(found.items()))
