"""The epoch loop of a run: train an epoch, checkpoint, log, evaluate when due."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from vireid.train.best import BestOnTest
from vireid.train.checkpoint import rng_state, save_checkpoint
from vireid.train.device import PRECISIONS
from vireid.train.distributed import barrier, broadcast_buffers
from vireid.train.engine import NonFiniteLoss, train_one_epoch
from vireid.train.evaluation import summary_rows
from vireid.train.methods import get_method
from vireid.train.preflight import ManifestWatch
from vireid.train.report_plot import write_report
from vireid.train.reporting import RunLog, library_versions
from vireid.train.run_folder import checkpoint_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    evaluations: list[dict]  # rows of the last evaluation (empty on ranks other than 0)
    model: torch.nn.Module  # the trained network, without DDP / compile wrappers


@dataclass
class RunParts:
    """What a run trains with, built by the runner."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    loader: object
    evaluate: object  # RunEvaluation


def plain(model):
    """The module behind DDP / torch.compile wrappers (for state dicts)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def check_finite_weights(model: torch.nn.Module, epoch: int) -> None:
    """Refuse to keep (checkpoint, evaluate, select as best) weights that are NaN or
    infinite: the loss of the epoch's last step can be finite while its update is not."""
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise NonFiniteLoss(f"epoch {epoch + 1}", f"the weights became NaN or infinite "
                                f"({name}); stopping, the last checkpoint is kept. Try a lower "
                                "learning rate or float32 (amp off)")


class EpochLoop:
    """Epochs ``start`` … the last, on one rank; rank 0 saves and logs."""

    def __init__(self, config, env, device, mode: str, identity, parts: RunParts, reporter):
        self.config, self.env, self.device, self.mode = config, env, device, mode
        self.identity, self.parts, self.reporter = identity, parts, reporter
        self.out = Path(config.run.out)
        self.watch = ManifestWatch(config.run.shards)
        self.log = RunLog(self.out, config, library_versions(), fresh=not config.run.resume) \
            if env.is_main else None
        self.method = get_method(config.model.method, config.model.triplet)
        self.best = BestOnTest(self.out, config.run.resume, self.method.select) \
            if env.is_main else None
        self._payload: dict = {}
        self._cache_reported = False

    def run(self, start: int) -> RunResult:
        evaluations, epochs = [], self.config.epochs
        try:
            for epoch in range(start, epochs):
                self.watch.check()
                self._train(epoch)
                if self.config.evaluation.due(epoch, epochs):
                    self.watch.check()
                    evaluations = self._evaluate(epoch)
        finally:
            if self.log:
                self.log.close()
        return RunResult(evaluations, plain(self.parts.model))

    def _train(self, epoch: int) -> None:
        run, parts = self.config.run, self.parts
        parts.loader.seek(epoch, 0)  # a no-op unless the previous epoch was cut short
        self.reporter.epoch_start(epoch, self.config.epochs,
                                  min(len(parts.loader), run.max_steps or 10**9))
        stats = train_one_epoch(parts.model, parts.loader, parts.optimizer, parts.scaler,
                                device=self.device, amp_dtype=PRECISIONS[self.mode],
                                method=self.method, channels_last=run.channels_last,
                                log_every=run.log_every, max_steps=run.max_steps,
                                num_pos=self.config.sampling.num_pos, on_log=self.reporter.log)
        parts.scheduler.step()
        parts.loader.seek(epoch + 1, 0)
        check_finite_weights(plain(parts.model), epoch)  # every rank: the same weights
        if self.env.is_main:
            self._save(epoch)
            self.log.epoch({"epoch": epoch, **stats})
        barrier()
        self.reporter.epoch_end(epoch, stats)
        self._report_cache(epoch)

    def _report_cache(self, epoch: int) -> None:
        """Once, after the epoch that built the decoded cache: the loader's first-pass
        figures as one line for humans and one metrics.jsonl row."""
        first = None if self._cache_reported else self.parts.loader.first_pass()
        if first is None:
            return
        self._cache_reported = True
        self.reporter.note(f"cache: {first.summary()}")
        if self.log:
            self.log.cache({"epoch": epoch, **first.report()})

    def _evaluate(self, epoch: int) -> list[dict]:
        model = plain(self.parts.model)
        broadcast_buffers(model, self.env)
        # the plain module: no DDP collective per forward, ranks may run unequal batches
        rows = self.parts.evaluate(model, self.device, PRECISIONS[self.mode])
        shown = summary_rows(rows)
        for row in rows:
            self.log.evaluation({"epoch": epoch, **row}, summary=row in shown)
        if rows:
            self.reporter.evaluation(epoch, rows)
            best = self.best.update(epoch, rows, self._payload)
            if best:
                self.log.best(best)
        if self.log:
            self._report()
        return rows

    def _report(self) -> None:
        """Redraw RUN/report.png; a plot that fails costs a warning, never the run."""
        try:
            write_report(self.out)
        except Exception as error:  # matplotlib, a full disk, a font: all only cosmetic
            log.warning("run report not drawn: %s: %s", type(error).__name__, error)

    def _save(self, epoch: int) -> None:
        config, parts = self.config, self.parts
        self._payload = {
            "epoch": epoch, "config": config.to_dict(), "model": plain(parts.model).state_dict(),
            "num_classes": parts.loader.num_classes, "arch": str(config.model.arch),
            "method": str(config.model.method),
            "model_options": self.method.model_options(self.identity.dataset),
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(), "scaler": parts.scaler.state_dict(),
            "loader": parts.loader.state_dict(), "precision": self.mode,
            "rng": rng_state(self.device), "data": self.identity.to_dict(),
        }
        save_checkpoint(self._payload, checkpoint_path(self.out))
