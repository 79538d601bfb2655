"""``vireid-test``: every trial of a protocol for a saved model, features extracted once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vireid.choices import Amp, Device, LoaderKind
from vireid.errors import VireidError
from vireid.eval.features import check_finite, extract_features
from vireid.eval.protocols import samples_to_extract, score_rows
from vireid.eval.ranklists import plan_rank_lists, write_rank_lists
from vireid.eval.rerank import Rerank
from vireid.eval.saved import check_covers, load_features, save_features
from vireid.fields import check_fields, like, setting
from vireid.loader.settings import Backend
from vireid.loader.source import ShardBytes
from vireid.outputs import check_file_output, check_folder_output, check_outputs
from vireid.shards.checksums import check_checksums
from vireid.train.checkpoint import load_weights
from vireid.train.config import Evaluation, LoaderSettings, RunSettings
from vireid.train.device import resolve_amp, resolve_device
from vireid.train.evaluation import FEATURES, scoring_plan, use_flip
from vireid.train.imported import read_model_checkpoint
from vireid.train.methods import get_method
from vireid.train.run_folder import check_writable_target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationSettings:
    """How ``vireid-test`` evaluates; the fields shared with training are declared there
    once (``like``) and the command's options are made from these fields."""

    protocol: str | None = like(Evaluation, "protocol", flat="protocol", flag=None)
    trial: int | None = setting(
        None, min=0,
        help="Only this trial (RegDB: default the trial the checkpoint was trained on).")
    # the feature rows (the command's --feature): None, the method's (MethodSpec.features)
    kinds: tuple[str, ...] | None = None
    loader: LoaderKind = like(LoaderSettings, "kind", flat="loader")
    device: Device = like(RunSettings, "device")
    amp: Amp = setting(  # float32 features, as the original; mixed precision is opt-in
        Amp.OFF, help="Feature precision: off (float32, as the original) or, opt-in, auto "
        "(fp16 on CUDA), bf16 or fp16.")
    batch_size: int = like(Evaluation, "batch_size", flat="batch_size",
                           help="Images per forward pass (never more than the test images).")
    channels_last: bool = True
    num_threads: int | None = None
    verify: bool = like(RunSettings, "verify")
    rerank: Rerank | None = None  # k-reciprocal re-ranking (opt-in: the command's --rerank)
    flip: bool | None = setting(
        None, flag="--flip/--no-flip",
        help="Combine each image's features with its horizontally mirrored copy's: average "
        "and L2-normalise again (CAJ's test script), or for deen sum them (the authors' "
        "test.py). Default: the checkpoint's method's (caj, deen: on; agw, base: off); the "
        "line naming the checkpoint says which, and flipped rows say (flip).")
    save_features: str | None = setting(
        None, metavar="FILE",
        help="Also write the test features to this .npz file (pool and fc float32, per image "
        "its pid, camera, modality and shard key).")
    rank_lists: int = setting(
        0, min=0, max=1000,
        help="Write PNG rank lists of N queries (evenly spaced over the first scored trial's "
        "queries): the query, then its top-10 gallery images framed green (same identity) or "
        "red, with rank, camera and distance.")
    queries: tuple[str, ...] = setting(
        (), metavar="KEY",
        help="Rank lists of these queries instead (shard keys; repeat the option).")
    lists_out: str | None = None  # their folder (None: RUN/rank-lists beside the checkpoint)
    allow_missing_trials: bool = setting(
        False, flag="--allow-missing-trials",
        help="Score a `--trial all` folder that lacks trials (by default refused); its mean "
        "rows then name the trials they cover.")

    def __post_init__(self):
        check_fields(self)


# the settings that are not options of their own (vireid-test derives them from others)
DERIVED = ("kinds", "channels_last", "num_threads", "rerank", "lists_out")


def check_before_work(shards, *, checkpoint=None, features=None,
                      files: dict[str, Path | None], folders: dict[str, Path | None],
                      device: Device = Device.AUTO, model=None) -> None:
    """What ``vireid-test`` refuses before reading a model or a feature: CUDA without a GPU,
    an output (option → file, or folder: the rank lists') that cannot be written, or that
    is, or lies inside, something the command reads (``model``: an export folder)."""
    from vireid.train.trials import trial_checkpoints

    evaluation_device(device)
    for option, path in files.items():
        if path is not None:
            check_writable_target(path)
            check_file_output(path, option)
    for option, path in folders.items():
        if path is not None:
            check_writable_target(path)
            check_folder_output(path, option)
    reads = {Path(p): what for p, what in ((checkpoint, "the checkpoint"),
                                           (features, "the features file")) if p}
    trees = {Path(shards): "the shard folder"}
    if model is not None:
        trees[Path(model)] = "the exported model"
    if checkpoint is not None and Path(checkpoint).is_dir():
        trees.update({path.parent.parent: f"the run of trial {trial}"
                      for trial, path in trial_checkpoints(checkpoint).items()})
    check_outputs({**files, **folders}, reads, trees)


def evaluation_device(requested: Device) -> torch.device:
    """The device to evaluate on; CUDA without a visible GPU is a one-line error."""
    name = resolve_device(requested)
    if name == "cuda" and torch.cuda.device_count() < 1:
        raise VireidError("CUDA", "no GPU is visible to this process (check "
                          "CUDA_VISIBLE_DEVICES, or evaluate on the CPU)")
    return torch.device(name, 0) if name == "cuda" else torch.device(name)


def check_weights(state: dict, checkpoint) -> None:
    """Refuse a model with NaN or infinite weights: its features would be scored as
    results."""
    for key, value in state["model"].items():
        if torch.is_tensor(value) and value.is_floating_point() and \
                not bool(torch.isfinite(value).all()):
            raise VireidError(checkpoint, f"holds non-finite weights (NaN or inf in {key}): a "
                              "diverged run? nothing to evaluate")


@dataclass(frozen=True)
class Scored:
    """What ``evaluate_model`` scores: a model to build (a checkpoint's, or exported graphs
    behind the same call) and what its rows need to know about it."""

    where: Path  # the checkpoint file or the export folder: what messages and files name
    method: str  # the method whose rows, flip and flip rule apply
    view: str | None  # the training view (a model trained per trial: its trial)
    size: tuple[int, int] | None  # (height, width) it was trained at (None: unknown)
    build: Callable[[torch.device, bool], object]  # (device, channels_last) → the model
    line: str  # the line naming what is evaluated
    labels: Mapping[str, object] = field(default_factory=dict)  # added to every row


def evaluate_checkpoint(shards, checkpoint, settings: EvaluationSettings | None = None,
                        on_checkpoint: Callable[[str], None] | None = None,
                        on_rows: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Rows per trial and their mean for each feature kind (``evaluate_model``); the device,
    then the checkpoint and its weights (finite) are checked first."""
    settings = settings or EvaluationSettings()
    evaluation_device(settings.device)
    state = read_model_checkpoint(checkpoint)
    check_weights(state, checkpoint)
    trained = tuple(state.get("data", {}).get("image_size") or ()) or None
    subject = Scored(Path(checkpoint), state["method"], trained_view(state), trained,
                     lambda device, last: checkpoint_model(state, checkpoint, device, last),
                     describe(state, checkpoint))
    return evaluate_model(shards, subject, settings, on_checkpoint, on_rows)


def evaluate_model(shards, subject: Scored, settings: EvaluationSettings,
                   on_checkpoint: Callable[[str], None] | None = None,
                   on_rows: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Rows per trial and their mean for each feature kind.

    What can be refused is refused before the features are extracted: the device, the
    protocol and trial, the rank lists' queries; then the shards' sha256 are checked
    (``verify``). Test images are resized to the size the model was trained at when the
    shards hold another size (as the original's test transform does), with a warning: scores
    at a size the model never saw would be silently worse. ``on_rows(rows)`` sees the rows
    before any rank list is drawn, so a failure drawing them loses no score.
    """
    device = evaluation_device(settings.device)
    with ShardBytes(shards) as source:
        manifest = source.manifest
        protocol, trials = scoring_plan(manifest, settings.protocol, subject.view,
                                        settings.trial)
        lists = plan_rank_lists(manifest, protocol, trials, settings.rank_lists,
                                settings.queries) if settings.rank_lists or settings.queries \
            else None
        if settings.verify:
            check_checksums(shards, manifest)
        flip = use_flip(settings.flip, subject.method)
        features = _features(subject, source, samples_to_extract(manifest, protocol, trials),
                             device, settings, flip)
        if settings.save_features:
            save_features(settings.save_features, features, manifest, protocol.name,
                          subject.where, subject.view, flip, subject.method)
        rows = [{**row, **subject.labels} for row in score_rows(
            manifest, protocol, features, trials, feature_kinds(settings.kinds, subject.method),
            settings.rerank, device, flip)]
        if on_checkpoint:  # after the work: a failure stays one line
            on_checkpoint(f"{subject.line}; {_flip_note(flip, settings.flip)}")
        if on_rows:
            on_rows(rows)
        if lists:
            write_rank_lists(source, protocol.name, *lists, features,
                             rank_list_folder(subject.where, settings.lists_out),
                             get_method(subject.method).select)
    return rows


def _features(subject: Scored, source, wanted, device, settings, flip: bool):
    """The features of the ``wanted`` test images by the subject's model (finite)."""
    model = subject.build(device, settings.channels_last)
    features = extract_features(
        model, source, wanted, loader=settings.loader, device=device,
        amp_dtype=resolve_amp(settings.amp, device.type), batch_size=settings.batch_size,
        channels_last=settings.channels_last,
        backend=Backend(device.type, device.index or 0, settings.num_threads),
        size=_test_size(subject.size, source.manifest, source.directory), flip=flip,
        flip_rule=get_method(subject.method).flip_rule)
    check_finite(features, subject.where)
    return features


def feature_kinds(kinds: tuple[str, ...] | None, method: str | None) -> tuple[str, ...]:
    """The rows to score: as asked, else the method's (unknown method: pool and fc)."""
    if kinds:
        return tuple(kinds)
    return get_method(method).features if method else FEATURES


def _flip_note(flip: bool, asked: bool | None) -> str:
    """Which test-time flip averaging was used, and why."""
    why = "as asked" if asked is not None else "the method's default"
    return f"flip averaging {'on' if flip else 'off'} ({why})"


def evaluate_saved(shards, path, settings: EvaluationSettings | None = None) -> list[dict]:
    """The rows of ``evaluate_checkpoint`` from features it saved (no model): the protocol's
    trials come from ``shards``, whose test images the saved samples must cover."""
    from vireid.shards.manifest import load_manifest

    settings = settings or EvaluationSettings()
    device = evaluation_device(settings.device)
    manifest = load_manifest(shards)
    saved = load_features(path, max_rows=len(manifest.samples))
    protocol, trials = scoring_plan(manifest, settings.protocol or saved.protocol, saved.view,
                                    settings.trial)
    check_covers(saved, manifest, samples_to_extract(manifest, protocol, trials), path)
    if settings.verify:
        check_checksums(shards, manifest)
    return score_rows(manifest, protocol, saved.features, trials,
                      feature_kinds(settings.kinds, saved.method), settings.rerank, device,
                      saved.flip)


def rank_list_folder(checkpoint, out=None) -> Path:
    """Where rank-list sheets go: ``out``, else RUN/rank-lists for RUN/checkpoints/X.pt, else
    a rank-lists folder beside the checkpoint file."""
    if out:
        return Path(out)
    parent = Path(checkpoint).resolve().parent
    return (parent.parent if parent.name == "checkpoints" else parent) / "rank-lists"


def describe(state: dict, path) -> str:
    """Which model is evaluated: the file, its epoch, and how it was selected."""
    epoch = int(state["epoch"])
    epochs = state.get("config", {}).get("epochs")
    of = f" of {epochs}" if epochs else ""
    selected = state.get("selected_on") or "the last epoch written"
    kind = f"{state['format']} checkpoint " if str(state.get("format")).startswith(
        "original ") else ""
    return f"evaluating {kind}{path}: epoch {epoch + 1}{of} ({selected})"


def trained_view(state: dict) -> str | None:
    """The training view of the checkpoint (older checkpoints: RegDB's trial setting)."""
    if "data" in state:
        return state["data"]["view"]
    trial = state["config"].get("trial")
    return f"trial{trial}" if trial is not None else None


def checkpoint_model(state: dict, checkpoint, device, channels_last: bool):
    """The checkpoint's model (read by ``read_model_checkpoint``) with its weights, on
    ``device``, in eval mode."""
    method = get_method(state["method"])
    model = method.build_model(state["num_classes"], state["arch"], pretrained="none",
                               **state.get("model_options", {}))
    load_weights(model, state, checkpoint)
    model = model.to(device).eval()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _test_size(trained: tuple[int, int] | None, manifest, shards) -> tuple[int, int] | None:
    """The training image size when the shards hold another one (None: use them as stored)."""
    trained = tuple(trained or ())
    stored = (manifest.height, manifest.width)
    if not trained or trained == stored:
        return None
    log.warning("%s: the model was trained on %d×%d images, these shards hold %d×%d: "
                "resizing the test images to %d×%d", shards, trained[1], trained[0],
                stored[1], stored[0], trained[1], trained[0])
    return trained
