"""Where a run reports: a Reporter for humans (progress bars live in the CLI) and the RunLog
for machines (config.json, versions.json, metrics.jsonl, TensorBoard scalars)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import platform
import shutil
from collections.abc import Iterator
from pathlib import Path

from vireid.errors import VireidError
from vireid.files import replaced_atomically

DALI_DISTRIBUTIONS = ("nvidia-dali-cuda130", "nvidia-dali-cuda120")


@contextlib.contextmanager
def _writing(where: Path) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        raise VireidError(getattr(error, "filename", None) or where,
                          f"cannot write: {error.strerror or error}") from None


def _write(path: Path, value) -> None:
    with replaced_atomically(path) as partial:
        partial.write_text(json.dumps(value, indent=2, default=str) + "\n")


class Reporter:
    """Callbacks of a run; the default reports nothing (the CLI draws progress bars)."""

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def log(self, stats: dict) -> None:
        pass

    def epoch_end(self, epoch: int, stats: dict) -> None:
        pass

    def evaluation(self, epoch: int, rows: list[dict]) -> None:
        pass

    def note(self, line: str) -> None:
        """A one-off line about the run (e.g. the decoded cache's first pass)."""


def library_versions() -> dict:
    import numpy
    import PIL
    import torch
    import torchvision

    from vireid import __version__

    versions = {"vireid": __version__, "python": platform.python_version(),
                "torch": torch.__version__, "torchvision": torchvision.__version__,
                "numpy": numpy.__version__, "pillow": PIL.__version__,
                "cuda": torch.version.cuda}
    versions["nvidia-dali"] = dali_version()
    return versions


def dali_version() -> str | None:
    """The installed DALI wheel's version, read from its metadata: importing DALI is the
    loader's business (and slow), and a run records it even where it never imports it."""
    for distribution in DALI_DISTRIBUTIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(distribution)
    return None


class RunLog:
    """Appends one JSON line per epoch / evaluation and mirrors scalars to TensorBoard.

    A fresh run starts ``metrics.jsonl`` and ``tb/`` empty (a run that died before its first
    checkpoint may have left some); a resumed run appends. A write that fails (full disk,
    read-only folder) is one line naming the file.
    """

    def __init__(self, out: Path, config, versions: dict, fresh: bool = True):
        self.out = Path(out)
        self._writer = None
        with _writing(self.out):
            self.out.mkdir(parents=True, exist_ok=True)
            if fresh:
                (self.out / "metrics.jsonl").unlink(missing_ok=True)
                shutil.rmtree(self.out / "tb", ignore_errors=True)
            _write(self.out / "config.json", config.to_dict())
            _write(self.out / "versions.json", versions)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out / "tb"))
        except ImportError:  # tensorboard is a dependency; tolerate its absence anyway
            pass

    def _append(self, row: dict) -> None:
        path = self.out / "metrics.jsonl"
        with _writing(path), open(path, "a") as handle:
            handle.write(json.dumps(row, sort_keys=True) + "\n")

    def epoch(self, row: dict) -> None:
        self._append({"kind": "epoch", **row})
        if self._writer:
            for key in ("loss", "loss_id", "loss_triplet", "accuracy", "lr", "images_per_s"):
                self._writer.add_scalar(f"train/{key}", row[key], row["epoch"])

    def cache(self, row: dict) -> None:
        """The decoded cache's first pass: images, bytes, where, seconds."""
        self._append({"kind": "cache", **row})

    def best(self, row: dict) -> None:
        """The best evaluation so far on the test set (see ``vireid.train.best``)."""
        self._append(row)

    def evaluation(self, row: dict, summary: bool = False) -> None:
        """One row; ``summary`` rows (the mean, or the one scored trial) also go to
        TensorBoard."""
        self._append({"kind": "eval", **row})
        if self._writer and summary:
            prefix = f"eval/{row['protocol']}/{row['feature']}"
            for key in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP"):
                self._writer.add_scalar(f"{prefix}/{key}", row[key], row["epoch"])

    def close(self) -> None:
        if self._writer:
            self._writer.close()
