"""``vireid-test`` on the folder of a ``vireid-train --trial all`` job: each trial scored with
its own model, in every direction, then the mean over the trials per direction and feature."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from vireid.errors import VireidError
from vireid.train.checkpoint_eval import (
    EvaluationSettings,
    check_weights,
    evaluate_checkpoint,
    evaluation_device,
    trained_view,
)
from vireid.train.imported import read_model_checkpoint


class MissingTrials(VireidError):
    """A ``--trial all`` folder lacks trials and scoring the others was not allowed (the CLI
    names its option)."""


def evaluate_trial_runs(shards, folder, settings: EvaluationSettings | None = None,
                        on_checkpoint: Callable[[str], None] | None = None) -> list[dict]:
    """Each trial of a ``--trial all`` folder scored with its own model, in every direction
    (or ``settings.protocol``), then the mean over the trials per direction and feature.

    Every model is checked before any is evaluated: trained on these shards' dataset, on the
    trial its folder names, finite. A folder lacking trials is refused unless
    ``allow_missing_trials``; then each mean row lists the trials it covers and misses.
    """
    from vireid.shards.manifest import load_manifest

    settings = settings or EvaluationSettings()
    evaluation_device(settings.device)
    manifest = load_manifest(shards)
    runs = check_trial_runs(folder, manifest, shards, settings.allow_missing_trials)
    trials = [trial for trial, _ in manifest.trial_views]
    names = [settings.protocol] if settings.protocol else [p.name for p in manifest.protocols]
    rows = []
    for name in names:
        scored = []
        for trial, checkpoint in runs.items():
            one = dataclasses.replace(settings, protocol=name, trial=trial)
            scored += evaluate_checkpoint(shards, checkpoint, one, on_checkpoint)
            settings = dataclasses.replace(settings, verify=False)  # the shards checked once
        rows += scored + _means(scored, trials)
    return rows


def check_trial_runs(folder, manifest, shards, allow_missing: bool = False) -> dict:
    """The checkpoints of a ``--trial all`` folder by trial, each checked against the shards
    (nothing extracted yet); a missing trial is refused unless ``allow_missing``."""
    from vireid.train.trials import trial_checkpoints

    runs = trial_checkpoints(folder)
    for trial, checkpoint in runs.items():
        state = read_model_checkpoint(checkpoint)
        _check_trial_run(state, trial, checkpoint, manifest, shards)
        check_weights(state, checkpoint)
    expected = [trial for trial, _ in manifest.trial_views]
    missing = [str(trial) for trial in expected if trial not in runs]
    if missing and not allow_missing:
        raise MissingTrials(folder, f"lacks trials {', '.join(missing)} of {len(expected)} "
                            "(no trial-<N>/checkpoints/last.pt): finish them, or score the "
                            "others")
    return runs


def _check_trial_run(state: dict, trial: int, checkpoint, manifest, shards) -> None:
    """The model filed under ``trial-<trial>`` was trained on that trial of this dataset."""
    dataset = state.get("data", {}).get("dataset")
    if dataset and dataset != manifest.dataset:
        raise VireidError(checkpoint, f"was trained on {dataset}, these shards hold "
                          f"{manifest.dataset} ({shards})")
    views = dict(manifest.trial_views)
    if trial not in views:
        known = ", ".join(map(str, views)) or "none: it has one training set"
        raise VireidError(checkpoint, f"is filed under trial {trial}, which {manifest.dataset} "
                          f"lacks (trials {known})")
    view = trained_view(state)
    if view is not None and manifest.trained_trial(view) != trial:
        other = manifest.trained_trial(view)
        raise VireidError(checkpoint, f"is trial {other}'s model (view {view}), filed under "
                          f"trial-{trial}")
    classes = manifest.view(views[trial]).num_classes
    if state["num_classes"] != classes:
        raise VireidError(checkpoint, f"has {state['num_classes']} classes; trial {trial} of "
                          f"{shards} trains {classes}: a model of other data?")


def _means(rows: list[dict], trials: list[int]) -> list[dict]:
    """The mean row of each (protocol, feature) over its trials, naming the trials it covers
    (``trials``) and those of the dataset it lacks (``missing``)."""
    means = []
    for key in dict.fromkeys((r["protocol"], r["feature"]) for r in rows):
        group = [r for r in rows if (r["protocol"], r["feature"]) == key]
        labels = ("protocol", "feature", "trial", "reranked", "flip")
        metrics = [k for k in group[0] if k not in labels]
        covered = [r["trial"] for r in group]
        means.append({"protocol": key[0], "feature": key[1], "trial": "mean",
                      "reranked": group[0]["reranked"], "flip": group[0].get("flip", False),
                      **{k: sum(r[k] for r in group) / len(group) for k in metrics},
                      "trials": covered, "missing": [t for t in trials if t not in covered]})
    return means


def coverage_note(rows: list[dict]) -> str:
    """A line for a table whose mean rows lack trials ("" when none does), e.g. "mean of
    trials 1, 2, 4 (3 of 4; missing 3)"."""
    partial = next((r for r in rows if r.get("missing")), None)
    if partial is None:
        return ""
    covered, missing = partial["trials"], partial["missing"]
    return f"mean of trials {', '.join(map(str, covered))} ({len(covered)} of " \
           f"{len(covered) + len(missing)}; missing {', '.join(map(str, missing))})"
