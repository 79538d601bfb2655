"""``vireid-test``: every trial of a protocol for a saved model, features extracted once."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from vireid.choices import Amp, Device, LoaderKind
from vireid.eval.features import extract_features
from vireid.eval.protocols import samples_to_extract
from vireid.loader.settings import EVAL_BATCH_SIZE, Backend
from vireid.loader.source import ShardBytes
from vireid.shards.checksums import check_checksums
from vireid.train.checkpoint import load_checkpoint, load_weights
from vireid.train.device import resolve_amp, resolve_device
from vireid.train.evaluation import FEATURES, score, scoring_plan
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
    amp: Amp = Amp.AUTO
    batch_size: int = EVAL_BATCH_SIZE
    channels_last: bool = True
    num_threads: int | None = None
    verify: bool = True  # the shards' sha256 first


def evaluate_checkpoint(shards, checkpoint,
                        settings: EvaluationSettings | None = None) -> list[dict]:
    """Rows per trial and their mean for each feature kind.

    The shards' sha256 are checked first (``verify``). Test images are resized to the size the
    model was trained at when the shards hold another size (as the original's test transform
    does), with a warning: scores at a size the model never saw would be silently worse.
    """
    settings = settings or EvaluationSettings()
    state = load_checkpoint(checkpoint)
    with ShardBytes(shards) as source:
        manifest = source.manifest
        if settings.verify:
            check_checksums(shards, manifest)
        device = torch.device(resolve_device(settings.device))
        model = _model(state, checkpoint, device, settings.channels_last)
        protocol, trials = scoring_plan(manifest, settings.protocol, _trained_view(state),
                                        settings.trial)
        features = extract_features(
            model, source, samples_to_extract(manifest, protocol, trials),
            loader=settings.loader, device=device,
            amp_dtype=resolve_amp(settings.amp, device.type), batch_size=settings.batch_size,
            channels_last=settings.channels_last,
            backend=Backend(device.type, device.index or 0, settings.num_threads),
            size=_test_size(state, manifest, shards))
        return score(manifest, protocol, features, trials, settings.kinds)


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
