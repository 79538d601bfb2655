"""A whole training run: pre-flight, set-up, resume, then the epoch loop (``loop.py``).

RUN_DIR holds everything to reproduce and resume the run: ``config.json``, ``versions.json``,
``metrics.jsonl`` (one JSON line per epoch and per evaluation), ``tb/`` (TensorBoard scalars)
and ``checkpoints/last.pt`` (written atomically after every epoch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

import torch

from vireid.errors import VireidError
from vireid.files import available_cores
from vireid.loader import make_train_loader
from vireid.loader.augment import Augmentation
from vireid.loader.source import ShardBytes
from vireid.train.checkpoint import load_checkpoint, load_weights, restore_rng, restore_scaler
from vireid.train.config import TrainConfig, checked_on_resume
from vireid.train.device import (
    PRECISIONS,
    cuda_settings,
    precision,
    resolve_device,
    resume_precision,
    run_device,
)
from vireid.train.distributed import (
    DistEnv,
    check_split,
    init_distributed,
    shutdown,
    wrap_model,
)
from vireid.train.evaluation import RunEvaluation
from vireid.train.imported import init_weights
from vireid.train.loop import EpochLoop, RunParts, RunResult, plain
from vireid.train.methods import get_method
from vireid.train.preflight import DataIdentity, check_data, check_same_data
from vireid.train.reporting import Reporter
from vireid.train.run_folder import RunLock, check_apart, check_out_dir, checkpoint_path
from vireid.train.schedule import Schedule, make_optimizer, make_scheduler

log = logging.getLogger(__name__)
__all__ = ["RunResult", "checkpoint_path", "run_training"]


def run_training(config: TrainConfig, reporter: Reporter | None = None) -> RunResult:
    """Train (or resume) as ``config`` says, on one process or every torchrun rank.

    Everything that can be checked is checked before the first step: the run folder, the
    device, the shards (protocol, view, sha256), the weights to start from; then rank 0 holds
    the run folder's lock for the whole run.
    """
    run = config.run
    device_type = resolve_device(run.device)
    env = init_distributed(device_type)
    try:
        check_split(config.sampling.batch_ids, env.world_size)
        out = Path(run.out)
        check_out_dir(out, run.resume)
        check_apart(out, _inputs(config))
        device = run_device(device_type, env.local_rank)
        identity = check_data(config, verify=run.verify and env.is_main)
        size = get_method(config.model.method).size_warning(*identity.image_size)
        if size and env.is_main:
            log.warning(size)
        with RunLock(out) if env.is_main else contextlib.nullcontext():
            check_out_dir(out, run.resume)  # again, now that no other run can start
            return _run(config, env, reporter or Reporter(), device, identity)
    finally:
        shutdown()


def _inputs(config: TrainConfig) -> dict:
    """What the run reads, which its folder must keep apart from (``check_apart``)."""
    model = config.model
    inputs = {"shard folder": config.run.shards}
    if not config.run.resume:  # a resumed run reads neither: its checkpoint holds the weights
        inputs["--init checkpoint"] = model.init
        if model.pretrained not in ("torchvision", "none"):
            inputs["--pretrained file"] = model.pretrained
    return inputs


def _run(config: TrainConfig, env: DistEnv, reporter: Reporter, device: torch.device,
         identity: DataIdentity) -> RunResult:
    """The run on this device; CUDA's global settings (cuDNN autotuning, deterministic
    kernels) hold for the run only and are restored after it."""
    scope = cuda_settings(config.run.deterministic) if device.type == "cuda" \
        else contextlib.nullcontext()
    with scope:
        return _run_on(config, env, reporter, device, identity)


def _run_on(config: TrainConfig, env: DistEnv, reporter: Reporter, device: torch.device,
            identity: DataIdentity) -> RunResult:
    run = config.run
    saved = load_checkpoint(checkpoint_path(run.out)) if run.resume else None
    if saved:
        _check_resumable(config, saved, identity)
    mode = _precision(config, device, saved)
    torch.manual_seed(config.sampling.seed)  # model initialisation; batches have their own
    backend = config.backend(device.type, device.index or 0, _threads(config, env),
                                    env.local_world_size)
    with ShardBytes(run.shards) as source:  # opened once: training and every evaluation
        loader = make_train_loader(config.loader.kind, source, _sampling(config), backend,
                                   rank=env.rank, world_size=env.world_size,
                                   augmentation=_augmentation(config, identity.dataset))
        with loader:
            parts = _build(config, loader, device, PRECISIONS[mode], env, identity.dataset)
            parts.evaluate = RunEvaluation(source, config, loader.view.name, backend, env)
            start = _resume(saved, run.out, parts, device) if saved else 0
            loop = EpochLoop(config, env, device, mode, identity, parts,
                             reporter if env.is_main else Reporter())
            return loop.run(start)


def _sampling(config: TrainConfig):
    """The sampling settings with the method's views (CAJ: channel-augmented views) unless
    the configuration names views itself."""
    if config.sampling.views is not None:
        return config.sampling
    views = get_method(config.model.method).views
    return dataclasses.replace(config.sampling, views=views)


def _augmentation(config: TrainConfig, dataset: str) -> Augmentation:
    """The method's training augmentation on the data's dataset (DEEN: gray, its erasing);
    a resumed run gets the same, its method and data being checked."""
    return get_method(config.model.method).augmentation(dataset)


def _threads(config: TrainConfig, env: DistEnv) -> int | None:
    """DALI threads per process: the cores divided among this node's ranks under torchrun
    (training and evaluation alike); None lets a single process take the loader's default."""
    threads = config.loader.num_threads
    if threads or not env.active:
        return threads
    return max(1, available_cores() // env.local_world_size)


def _precision(config: TrainConfig, device: torch.device, saved: dict | None) -> str:
    """This run's precision: ``amp`` on ``device``, or for a resumed run the precision it
    was trained in (checkpoints before this field: their ``amp``; ``auto`` read off the
    scaler, which holds state only when fp16 was used)."""
    amp = config.run.amp
    if saved is None:
        return precision(amp, device.type)
    was = saved.get("precision")
    if was is None:
        before = saved["config"].get("amp", "auto")
        was = before if before != "auto" else ("fp16" if saved.get("scaler") else "off")
    return resume_precision(amp, device.type, was)


def _check_resumable(config: TrainConfig, state: dict, identity: DataIdentity) -> None:
    """The checkpoint continues this configuration, on the same data, and is not finished."""
    where = checkpoint_path(config.run.out)
    check_same_data(identity, state, where, config.run.shards)
    saved, mine = state["config"], config.to_dict()
    for key in checked_on_resume():
        if key in saved and saved[key] != mine[key]:  # a setting older runs lack: not checked
            raise VireidError(where, f"was written with {key}={saved.get(key)!r}, this run "
                              f"has {mine[key]!r}")
    if int(state["epoch"]) + 1 >= config.epochs:
        raise VireidError(where, f"the run is finished ({int(state['epoch']) + 1} of "
                          f"{config.epochs} epochs): evaluate it with vireid-test, or "
                          "train on with more epochs")


def _build(config: TrainConfig, loader, device: torch.device, amp_dtype, env: DistEnv,
           dataset: str | None = None) -> RunParts:
    """Model, optimiser, schedule and scaler; ``dataset`` (the training data's) decides the
    method's model options (DEEN: its RegDB variant)."""
    run, optimisation = config.run, config.optimisation
    method = get_method(config.model.method)
    # a resumed run's weights come from its checkpoint: ImageNet and --init weights (the
    # start's, recorded in config.json) are not read again
    model = method.build_model(loader.num_classes, config.model.arch,
                               pretrained="none" if run.resume else config.model.pretrained,
                               **method.model_options(dataset))
    if config.model.init and not run.resume:
        init_weights(model, config.model.init, str(config.model.method))
    model = model.to(device)
    if run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if run.compile:
        model = torch.compile(model)
    model = wrap_model(model, env, device, run.sync_bn)
    optimizer = make_optimizer(plain(model).param_groups(optimisation.lr),
                               momentum=optimisation.momentum,
                               weight_decay=optimisation.weight_decay)
    schedule = Schedule(optimisation.warmup_epochs, tuple(optimisation.milestones))
    scheduler = make_scheduler(optimizer, schedule)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    return RunParts(model, optimizer, scheduler, scaler, loader, None)


def _resume(state: dict, out, parts: RunParts, device) -> int:
    load_weights(plain(parts.model), state, checkpoint_path(out))
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    restore_scaler(parts.scaler, state["scaler"])
    parts.loader.load_state_dict(state["loader"])
    restore_rng(state["rng"], device)
    log.info("resuming %s after epoch %d", out, state["epoch"])
    return int(state["epoch"]) + 1
