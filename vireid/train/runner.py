"""A whole training run: set-up, resume, epochs, checkpoints, evaluation, metrics.jsonl.

RUN_DIR holds everything to reproduce and resume the run: ``config.json``, ``versions.json``,
``metrics.jsonl`` (one JSON line per epoch and per evaluation), ``tb/`` (TensorBoard scalars)
and ``checkpoints/last.pt`` (written atomically after every epoch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from vireid.errors import VireidError
from vireid.loader import make_train_loader
from vireid.loader.train_base import default_threads
from vireid.train.checkpoint import (
    load_checkpoint,
    restore_rng,
    restore_scaler,
    rng_state,
    save_checkpoint,
)
from vireid.train.config import TrainConfig
from vireid.train.device import (
    PRECISIONS,
    configure_cuda,
    precision,
    resolve_device,
    resume_precision,
    run_device,
)
from vireid.train.distributed import (
    DistEnv,
    barrier,
    broadcast_buffers,
    init_distributed,
    shutdown,
    wrap_model,
)
from vireid.train.engine import train_one_epoch
from vireid.train.evaluation import evaluate_model, load_weights
from vireid.train.reporting import Reporter, RunLog, library_versions
from vireid.train.schedule import Schedule, make_optimizer, make_scheduler

log = logging.getLogger(__name__)


def checkpoint_path(out: Path) -> Path:
    return Path(out) / "checkpoints" / "last.pt"


@dataclass(frozen=True)
class RunResult:
    evaluations: list[dict]  # rows of the last evaluation (empty on ranks other than 0)
    model: torch.nn.Module  # the trained network, without DDP / compile wrappers


def run_training(config: TrainConfig, reporter: Reporter | None = None) -> RunResult:
    """Train (or resume) as ``config`` says, on one process or every torchrun rank."""
    device_type = resolve_device(config.device)
    env = init_distributed(device_type)
    try:
        return _run(config, env, reporter or Reporter())
    finally:
        shutdown()


def _run(config: TrainConfig, env: DistEnv, reporter: Reporter) -> RunResult:
    out = Path(config.out)
    _check_out_dir(out, config)
    device = run_device(resolve_device(config.device), env.local_rank)
    if device.type == "cuda":
        configure_cuda(config.deterministic)
    saved = load_checkpoint(checkpoint_path(out)) if config.resume else None
    mode = _precision(config, device, saved)
    amp_dtype = PRECISIONS[mode]
    torch.manual_seed(config.seed)  # model initialisation; batches have their own generators
    threads = _threads(config, env)
    loader = make_train_loader(config.loader, config.shards, batch_ids=config.batch_ids,
                               num_pos=config.num_pos, seed=config.seed, trial=config.trial,
                               replace=config.replace, order=config.sampler,
                               device=device.type, device_id=device.index or 0,
                               cpu_augment=config.cpu_augment, num_threads=threads, rank=env.rank,
                               world_size=env.world_size)
    model, optimizer, scheduler, scaler = _build(config, loader.num_classes, device, amp_dtype,
                                                 env)
    start = _resume(config, saved, out, model, optimizer, scheduler, scaler, loader, device) \
        if saved else 0
    if not env.is_main:
        reporter = Reporter()
    run_log = RunLog(out, config, library_versions()) if env.is_main else None
    evaluations = []
    for epoch in range(start, config.epochs):
        loader.seek(epoch, 0)  # a no-op unless the previous epoch was cut short
        reporter.epoch_start(epoch, config.epochs, min(len(loader), config.max_steps or 10**9))
        stats = train_one_epoch(model, loader, optimizer, scaler, device=device,
                                amp_dtype=amp_dtype, method=config.method,
                                channels_last=config.channels_last, log_every=config.log_every,
                                max_steps=config.max_steps, on_log=reporter.log)
        scheduler.step()
        loader.seek(epoch + 1, 0)
        if env.is_main:
            _save(out, config, epoch, model, optimizer, scheduler, scaler, loader,
                  {"precision": mode, "rng": rng_state(device)})
            run_log.epoch({"epoch": epoch, **stats})
        barrier()
        reporter.epoch_end(epoch, stats)
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
            broadcast_buffers(_plain(model), env)
            # the plain module: no DDP collective per forward, ranks may run unequal batches
            evaluations = evaluate_model(_plain(model), config, device, amp_dtype, env,
                                         num_threads=threads)
            for row in evaluations:
                run_log.evaluation({"epoch": epoch, **row})
            if evaluations:
                reporter.evaluation(epoch, evaluations)
    if run_log:
        run_log.close()
    return RunResult(evaluations, _plain(model))


def _threads(config: TrainConfig, env: DistEnv) -> int | None:
    """DALI threads per process: the cores divided among this node's ranks under torchrun
    (training and evaluation alike); None lets a single process take the loader's default."""
    if config.num_threads or not env.active:
        return config.num_threads
    return max(1, default_threads() // env.local_world_size)


def _precision(config: TrainConfig, device: torch.device, saved: dict | None) -> str:
    """This run's precision: ``--amp`` on ``device``, or for a resumed run the precision it
    was trained in (checkpoints before this field: its ``--amp``, ``auto`` read off the
    scaler, which holds state only when fp16 was used)."""
    if saved is None:
        return precision(config.amp, device.type)
    was = saved.get("precision")
    if was is None:
        amp = saved["config"].get("amp", "auto")
        was = amp if amp != "auto" else ("fp16" if saved.get("scaler") else "off")
    return resume_precision(config.amp, device.type, was)


def _check_out_dir(out: Path, config: TrainConfig) -> None:
    if config.resume and not checkpoint_path(out).is_file():
        raise VireidError(checkpoint_path(out), "nothing to resume (no checkpoint)")
    if not config.resume and checkpoint_path(out).is_file():
        raise VireidError(out, "already holds a run (pass --resume to continue it, or choose "
                          "another --out)")


def _build(config: TrainConfig, num_classes: int, device: torch.device, amp_dtype,
           env: DistEnv):
    from vireid.model import build_model

    model = build_model(num_classes, arch=config.arch, method=config.method,
                        pretrained=config.pretrained).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.compile:
        model = torch.compile(model)
    model = wrap_model(model, env, device, config.sync_bn)
    optimizer = make_optimizer(_plain(model).param_groups(config.lr),
                               momentum=config.momentum, weight_decay=config.weight_decay)
    schedule = Schedule(config.warmup_epochs, tuple(config.milestones))
    scheduler = make_scheduler(optimizer, schedule)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    return model, optimizer, scheduler, scaler


def _plain(model):
    """The module behind DDP / torch.compile wrappers (for state dicts)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def _save(out, config, epoch, model, optimizer, scheduler, scaler, loader, extra) -> None:
    save_checkpoint({
        "epoch": epoch, "config": config.to_dict(), "model": _plain(model).state_dict(),
        "num_classes": loader.num_classes, "arch": config.arch, "method": config.method,
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(), "loader": loader.state_dict(), **extra,
    }, checkpoint_path(out))


def _resume(config, state, out, model, optimizer, scheduler, scaler, loader, device) -> int:
    saved = state["config"]
    for key in config.compatible_keys():
        mine = config.to_dict()[key]
        if saved.get(key) != mine:
            raise VireidError(checkpoint_path(out), f"was written with {key}={saved.get(key)!r}"
                              f", this run has {mine!r}")
    load_weights(_plain(model), state, checkpoint_path(out))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_scaler(scaler, state["scaler"])
    loader.load_state_dict(state["loader"])
    restore_rng(state["rng"], device)
    log.info("resuming %s after epoch %d", out, state["epoch"])
    return int(state["epoch"]) + 1
