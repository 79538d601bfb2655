"""A whole training run: set-up, resume, epochs, checkpoints, evaluation, metrics.jsonl.

RUN_DIR holds everything to reproduce and resume the run: ``config.json``, ``versions.json``,
``metrics.jsonl`` (one JSON line per epoch and per evaluation), ``tb/`` (TensorBoard scalars)
and ``checkpoints/last.pt`` (written atomically after every epoch).
"""

from __future__ import annotations

import contextlib
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
from vireid.train.preflight import DataIdentity, ManifestWatch, check_data, check_same_data
from vireid.train.reporting import Reporter, RunLog, library_versions
from vireid.train.run_folder import RunLock, check_out_dir, checkpoint_path
from vireid.train.schedule import Schedule, make_optimizer, make_scheduler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    evaluations: list[dict]  # rows of the last evaluation (empty on ranks other than 0)
    model: torch.nn.Module  # the trained network, without DDP / compile wrappers


def run_training(config: TrainConfig, reporter: Reporter | None = None) -> RunResult:
    """Train (or resume) as ``config`` says, on one process or every torchrun rank.

    Everything that can be checked is checked before the first step: the run folder, the
    device, the shards (protocol, view, sha256), the weights to start from; then rank 0 holds
    the run folder's lock for the whole run.
    """
    device_type = resolve_device(config.device)
    env = init_distributed(device_type)
    try:
        out = Path(config.out)
        check_out_dir(out, config.resume)
        device = run_device(device_type, env.local_rank)
        identity = check_data(config, verify=config.verify and env.is_main)
        with RunLock(out) if env.is_main else contextlib.nullcontext():
            check_out_dir(out, config.resume)  # again, now that no other run can start
            return _run(config, env, reporter or Reporter(), device, identity)
    finally:
        shutdown()


def _run(config: TrainConfig, env: DistEnv, reporter: Reporter, device: torch.device,
         identity: DataIdentity) -> RunResult:
    out = Path(config.out)
    if device.type == "cuda":
        configure_cuda(config.deterministic)
    saved = load_checkpoint(checkpoint_path(out)) if config.resume else None
    if saved:
        _check_resumable(config, saved, identity)
    mode = _precision(config, device, saved)
    torch.manual_seed(config.seed)  # model initialisation; batches have their own generators
    threads = _threads(config, env)
    loader = make_train_loader(config.loader, config.shards, batch_ids=config.batch_ids,
                               num_pos=config.num_pos, seed=config.seed, trial=config.trial,
                               replace=config.replace, order=config.sampler,
                               device=device.type, device_id=device.index or 0,
                               cpu_augment=config.cpu_augment, num_threads=threads, rank=env.rank,
                               world_size=env.world_size)
    parts = _build(config, loader.num_classes, device, PRECISIONS[mode], env)
    start = _resume(saved, out, *parts, loader, device) if saved else 0
    run = _Run(config, env, device, mode, threads, identity, loader, parts,
               reporter if env.is_main else Reporter())
    return run.epochs(start)


class _Run:
    """The epoch loop of one run, with what it reports and saves."""

    def __init__(self, config, env, device, mode, threads, identity, loader, parts, reporter):
        self.config, self.env, self.device, self.mode = config, env, device, mode
        self.threads, self.identity, self.loader, self.reporter = threads, identity, loader, \
            reporter
        self.model, self.optimizer, self.scheduler, self.scaler = parts
        self.out = Path(config.out)
        self.watch = ManifestWatch(config.shards)
        self.log = RunLog(self.out, config, library_versions(), fresh=not config.resume) \
            if env.is_main else None

    def epochs(self, start: int) -> RunResult:
        evaluations = []
        try:
            for epoch in range(start, self.config.epochs):
                self.watch.check()
                self._train(epoch)
                if (epoch + 1) % self.config.eval_every == 0 or epoch + 1 == self.config.epochs:
                    self.watch.check()
                    evaluations = self._evaluate(epoch)
        finally:
            if self.log:
                self.log.close()
        return RunResult(evaluations, _plain(self.model))

    def _train(self, epoch: int) -> None:
        config, loader = self.config, self.loader
        loader.seek(epoch, 0)  # a no-op unless the previous epoch was cut short
        self.reporter.epoch_start(epoch, config.epochs,
                                  min(len(loader), config.max_steps or 10**9))
        stats = train_one_epoch(self.model, loader, self.optimizer, self.scaler,
                                device=self.device, amp_dtype=PRECISIONS[self.mode],
                                method=config.method, channels_last=config.channels_last,
                                log_every=config.log_every, max_steps=config.max_steps,
                                on_log=self.reporter.log)
        self.scheduler.step()
        loader.seek(epoch + 1, 0)
        if self.env.is_main:
            self._save(epoch)
            self.log.epoch({"epoch": epoch, **stats})
        barrier()
        self.reporter.epoch_end(epoch, stats)

    def _evaluate(self, epoch: int) -> list[dict]:
        plain = _plain(self.model)
        broadcast_buffers(plain, self.env)
        # the plain module: no DDP collective per forward, ranks may run unequal batches
        rows = evaluate_model(plain, self.config, self.device, PRECISIONS[self.mode], self.env,
                              num_threads=self.threads)
        for row in rows:
            self.log.evaluation({"epoch": epoch, **row})
        if rows:
            self.reporter.evaluation(epoch, rows)
        return rows

    def _save(self, epoch: int) -> None:
        config = self.config
        save_checkpoint({
            "epoch": epoch, "config": config.to_dict(), "model": _plain(self.model).state_dict(),
            "num_classes": self.loader.num_classes, "arch": str(config.arch),
            "method": str(config.method), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "loader": self.loader.state_dict(), "precision": self.mode,
            "rng": rng_state(self.device), "data": self.identity.to_dict(),
        }, checkpoint_path(self.out))


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


def _check_resumable(config: TrainConfig, state: dict, identity: DataIdentity) -> None:
    """The checkpoint continues this configuration, on the same data, and is not finished."""
    where = checkpoint_path(config.out)
    check_same_data(identity, state, where, config.shards)
    saved = state["config"]
    for key in config.compatible_keys():
        mine = config.to_dict()[key]
        if saved.get(key) != mine:
            raise VireidError(where, f"was written with {key}={saved.get(key)!r}, this run "
                              f"has {mine!r}")
    if int(state["epoch"]) + 1 >= config.epochs:
        raise VireidError(where, f"the run is finished ({int(state['epoch']) + 1} of "
                          f"{config.epochs} epochs): evaluate it with vireid-test, or pass "
                          "a larger --epochs to train on")


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


def _resume(state, out, model, optimizer, scheduler, scaler, loader, device) -> int:
    load_weights(_plain(model), state, checkpoint_path(out))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_scaler(scaler, state["scaler"])
    loader.load_state_dict(state["loader"])
    restore_rng(state["rng"], device)
    log.info("resuming %s after epoch %d", out, state["epoch"])
    return int(state["epoch"]) + 1
