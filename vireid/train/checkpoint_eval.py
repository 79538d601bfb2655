"""``vireid-test``: every trial of a protocol for a saved model, features extracted once."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vireid.choices import Amp, Device, LoaderKind
from vireid.eval.features import extract_features
from vireid.eval.protocols import samples_to_extract, score_rows
from vireid.eval.rerank import Rerank
from vireid.eval.saved import check_covers, load_features, save_features
from vireid.loader.settings import EVAL_BATCH_SIZE, Backend
from vireid.loader.source import ShardBytes
from vireid.shards.checksums import check_checksums
from vireid.train.checkpoint import load_weights
from vireid.train.device import resolve_amp, resolve_device
from vireid.train.evaluation import FEATURES, scoring_plan, use_flip
from vireid.train.imported import read_model_checkpoint
from vireid.train.methods import get_method

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationSettings:
    """How ``vireid-test`` evaluates (its defaults are the command's)."""

    protocol: str | None = None  # None: the dataset's default
    trial: int | None = None  # per-trial datasets: the checkpoint's own; else all trials
    kinds: tuple[str, ...] = FEATURES
    loader: LoaderKind = LoaderKind.DALI
    device: Device = Device.AUTO
    amp: Amp = Amp.OFF  # float32 features, as the original; mixed precision is opt-in
    batch_size: int = EVAL_BATCH_SIZE
    channels_last: bool = True
    num_threads: int | None = None
    verify: bool = True  # the shards' sha256 first
    rerank: Rerank | None = None  # k-reciprocal re-ranking (opt-in)
    flip: bool | None = None  # average with the mirrored images' features; None: the method's
    save_features: str | None = None  # also write the extracted features to this .npz
    rank_lists: int = 0  # PNG rank-list sheets of this many queries (0: none)
    queries: tuple[str, ...] = ()  # or of these queries, by shard key
    lists_out: str | None = None  # their folder (None: RUN/rank-lists beside the checkpoint)


def evaluate_checkpoint(shards, checkpoint, settings: EvaluationSettings | None = None,
                        on_checkpoint: Callable[[str], None] | None = None) -> list[dict]:
    """Rows per trial and their mean for each feature kind.

    The shards' sha256 are checked first (``verify``). Test images are resized to the size the
    model was trained at when the shards hold another size (as the original's test transform
    does), with a warning: scores at a size the model never saw would be silently worse.
    """
    settings = settings or EvaluationSettings()
    state = read_model_checkpoint(checkpoint)
    with ShardBytes(shards) as source:
        manifest = source.manifest
        if settings.verify:
            check_checksums(shards, manifest)
        device = torch.device(resolve_device(settings.device))
        model = _model(state, checkpoint, device, settings.channels_last)
        view = _trained_view(state)
        flip = use_flip(settings.flip, state["method"])
        protocol, trials = scoring_plan(manifest, settings.protocol, view, settings.trial)
        features = extract_features(
            model, source, samples_to_extract(manifest, protocol, trials),
            loader=settings.loader, device=device,
            amp_dtype=resolve_amp(settings.amp, device.type), batch_size=settings.batch_size,
            channels_last=settings.channels_last,
            backend=Backend(device.type, device.index or 0, settings.num_threads),
            size=_test_size(state, manifest, shards), flip=flip)
        if settings.save_features:
            save_features(settings.save_features, features, manifest, protocol.name,
                          checkpoint, view, flip)
        rows = score_rows(manifest, protocol, features, trials, settings.kinds,
                          settings.rerank, device, flip)
        if settings.rank_lists or settings.queries:
            _rank_lists(source, protocol, trials, features, settings, checkpoint)
    if on_checkpoint:  # after the work: a failure stays one line
        on_checkpoint(f"{describe(state, checkpoint)}; {_flip_note(flip, settings.flip)}")
    return rows


def _flip_note(flip: bool, asked: bool | None) -> str:
    """Which test-time flip averaging was used, and why."""
    why = "as asked" if asked is not None else "the method's default"
    return f"flip averaging {'on' if flip else 'off'} ({why})"


def evaluate_saved(shards, path, settings: EvaluationSettings | None = None) -> list[dict]:
    """The rows of ``evaluate_checkpoint`` from features it saved (no model): the protocol's
    trials come from ``shards``, whose test images the saved samples must cover."""
    from vireid.shards.manifest import load_manifest

    settings = settings or EvaluationSettings()
    saved = load_features(path)
    manifest = load_manifest(shards)
    if settings.verify:
        check_checksums(shards, manifest)
    protocol, trials = scoring_plan(manifest, settings.protocol or saved.protocol, saved.view,
                                    settings.trial)
    check_covers(saved, manifest, samples_to_extract(manifest, protocol, trials), path)
    device = torch.device(resolve_device(settings.device))
    return score_rows(manifest, protocol, saved.features, trials, settings.kinds,
                      settings.rerank, device, saved.flip)


def rank_list_folder(checkpoint, out=None) -> Path:
    """Where rank-list sheets go: ``out``, else RUN/rank-lists for RUN/checkpoints/X.pt, else
    a rank-lists folder beside the checkpoint file."""
    if out:
        return Path(out)
    parent = Path(checkpoint).resolve().parent
    return (parent.parent if parent.name == "checkpoints" else parent) / "rank-lists"


def _rank_lists(source, protocol, trials, features, settings, checkpoint) -> None:
    """One sheet per chosen query of the first scored trial (fc feature, as the original)."""
    from vireid.eval.ranklists import choose_queries, draw, rank
    from vireid.loader.reference import read_image

    manifest = source.manifest
    trial = manifest.trial(protocol.name, (trials or [protocol.trials[0].trial])[0])
    chosen = choose_queries(trial, manifest, settings.rank_lists, settings.queries)
    folder = rank_list_folder(checkpoint, settings.lists_out)
    for ranked in rank(features, trial, chosen):
        key = manifest.samples[ranked.query].key
        draw(ranked, manifest, lambda s: np.asarray(read_image(source, s).convert("RGB")),
             folder / f"{protocol.name}-trial{trial.trial}-{key}.png")


def describe(state: dict, path) -> str:
    """Which model is evaluated: the file, its epoch, and how it was selected."""
    epoch = int(state["epoch"])
    epochs = state.get("config", {}).get("epochs")
    of = f" of {epochs}" if epochs else ""
    selected = state.get("selected_on") or "the last epoch written"
    kind = f"{state['format']} checkpoint " if state.get("format") == "original AGW" else ""
    return f"evaluating {kind}{path}: epoch {epoch + 1}{of} ({selected})"


def _trained_view(state: dict) -> str | None:
    """The training view of the checkpoint (older checkpoints: RegDB's trial setting)."""
    if "data" in state:
        return state["data"]["view"]
    trial = state["config"].get("trial")
    return f"trial{trial}" if trial is not None else None


def _model(state: dict, checkpoint, device, channels_last: bool):
    method = get_method(state["method"])
    model = method.build_model(state["num_classes"], state["arch"], pretrained="none")
    load_weights(model, state, checkpoint)
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _test_size(state: dict, manifest, shards) -> tuple[int, int] | None:
    """The training image size when the shards hold another one (None: use them as stored)."""
    trained = tuple(state.get("data", {}).get("image_size") or ())
    stored = (manifest.height, manifest.width)
    if not trained or trained == stored:
        return None
    log.warning("%s: the model was trained on %d×%d images, these shards hold %d×%d: "
                "resizing the test images to %d×%d", shards, trained[1], trained[0],
                stored[1], stored[0], trained[1], trained[0])
    return trained


def evaluate_trial_runs(shards, folder, settings: EvaluationSettings | None = None,
                        on_checkpoint: Callable[[str], None] | None = None) -> list[dict]:
    """Each trial of a ``--trial all`` folder scored with its own model, in every direction
    (or ``settings.protocol``), then the mean over the trials per direction and feature."""
    from vireid.shards.manifest import load_manifest
    from vireid.train.trials import trial_checkpoints

    settings = settings or EvaluationSettings()
    manifest = load_manifest(shards)
    names = [settings.protocol] if settings.protocol else [p.name for p in manifest.protocols]
    rows = []
    for name in names:
        scored = []
        for trial, checkpoint in trial_checkpoints(folder).items():
            one = dataclasses.replace(settings, protocol=name, trial=trial)
            scored += evaluate_checkpoint(shards, checkpoint, one, on_checkpoint)
            settings = dataclasses.replace(settings, verify=False)  # the shards checked once
        rows += scored + _means(scored)
    return rows


def _means(rows: list[dict]) -> list[dict]:
    """The mean row of each (protocol, feature) over its trials."""
    means = []
    for key in dict.fromkeys((r["protocol"], r["feature"]) for r in rows):
        group = [r for r in rows if (r["protocol"], r["feature"]) == key]
        labels = ("protocol", "feature", "trial", "reranked", "flip")
        metrics = [k for k in group[0] if k not in labels]
        means.append({"protocol": key[0], "feature": key[1], "trial": "mean",
                      "reranked": group[0]["reranked"], "flip": group[0].get("flip", False),
                      **{k: sum(r[k] for r in group) / len(group) for k in metrics}})
    return means
