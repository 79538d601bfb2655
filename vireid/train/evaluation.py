"""Evaluation of a model on a protocol of its shards: extract once, score every trial."""

from __future__ import annotations

import logging

from vireid.eval.features import extract_features
from vireid.eval.protocols import mean_row, run_protocol, test_samples
from vireid.shards.manifest import load_manifest

FEATURES = ("pool", "fc")
log = logging.getLogger(__name__)


def protocol_trials(manifest, protocol_name: str | None, trial: int | None):
    """The protocol to score and its trials: RegDB scores the trial it trained on."""
    protocol = manifest.protocol(protocol_name or manifest.default_protocol)
    if manifest.dataset == "regdb":
        chosen = 1 if trial is None else trial
        manifest.trial(protocol.name, chosen)
        return protocol, [chosen]
    return protocol, None


def score(manifest, protocol, features, trials, kinds=FEATURES) -> list[dict]:
    """Per-trial rows and the mean row, for each feature kind."""
    rows = []
    for kind in kinds:
        results = run_protocol(manifest, protocol, features, kind, trials)
        rows += [{"protocol": protocol.name, **r.row()} for r in results]
        rows.append({"protocol": protocol.name, **mean_row(results)})
    return rows


def evaluate_model(model, config, device, amp_dtype, env=None, num_threads=None) -> list[dict]:
    """Rows of metrics.jsonl for the run's protocol (both "pool" and "fc" features).

    With several ranks each extracts its slice of the test images; rank 0 gathers the
    features and computes the metrics once (other ranks return no rows).
    """
    from vireid.eval.features import merge_features
    from vireid.train.distributed import DistEnv, gather_to_main

    env = env or DistEnv()
    manifest = load_manifest(config.shards)
    protocol, trials = protocol_trials(manifest, config.eval_protocol, config.trial)
    features = extract_features(
        model, config.shards, test_samples(manifest, protocol, trials), loader=config.loader,
        device=device, amp_dtype=amp_dtype, batch_size=config.eval_batch_size,
        channels_last=config.channels_last, num_threads=num_threads or config.num_threads,
        shard_id=env.rank, num_shards=env.world_size)
    gathered = gather_to_main(features, env)
    if not env.is_main:
        return []
    return score(manifest, protocol, merge_features(gathered), trials)


def test_checkpoint(shards, checkpoint, *, protocol_name=None, trial=None, kinds=FEATURES,
                    loader="dali", device="auto", amp="auto", batch_size=64,
                    channels_last=True, num_threads=None, verify=True) -> list[dict]:
    """``vireid-test``: every trial of a protocol for a saved model, features extracted once.

    The shards' sha256 are checked first (``verify``). Test images are resized to the size the
    model was trained at when the shards hold another size (as the original's test transform
    does), with a warning: scores at a size the model never saw would be silently worse.
    """
    import torch

    from vireid.shards.checksums import check_checksums
    from vireid.train.checkpoint import load_checkpoint
    from vireid.train.device import resolve_amp, resolve_device

    state = load_checkpoint(checkpoint)
    manifest = load_manifest(shards)
    if verify:
        check_checksums(shards, manifest)
    device = torch.device(resolve_device(device))
    model = _model(state, checkpoint, device, channels_last)
    if trial is None and manifest.dataset == "regdb":
        trial = state["config"].get("trial")
    protocol, trials = protocol_trials(manifest, protocol_name, trial)
    if trial is not None and manifest.dataset != "regdb":
        manifest.trial(protocol.name, trial)
        trials = [trial]
    features = extract_features(
        model, shards, test_samples(manifest, protocol, trials), loader=loader, device=device,
        amp_dtype=resolve_amp(amp, device.type), batch_size=batch_size,
        channels_last=channels_last, num_threads=num_threads,
        size=_test_size(state, manifest, shards))
    return score(manifest, protocol, features, trials, kinds)


def _model(state: dict, checkpoint, device, channels_last: bool):
    import torch

    from vireid.model import build_model

    model = build_model(state["num_classes"], arch=state["arch"], method=state["method"],
                        pretrained="none")
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


def load_weights(model, state: dict, where) -> None:
    """Load a checkpoint's weights, or say in one line why they do not fit this model."""
    from vireid.errors import VireidError

    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as error:
        first = str(error).strip().splitlines()[0][:160]
        raise VireidError(where, f"weights do not fit a {state.get('arch')} "
                          f"{state.get('method')} model with {state.get('num_classes')} "
                          f"classes ({first})") from None
