"""Where a run reports: a Reporter for humans (progress bars live in the CLI) and the RunLog
for machines (config.json, versions.json, metrics.jsonl, TensorBoard scalars)."""

from __future__ import annotations

import json
import platform
from pathlib import Path


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
    try:
        from nvidia import dali

        versions["nvidia-dali"] = dali.__version__
    except ImportError:
        versions["nvidia-dali"] = None
    return versions


class RunLog:
    """Appends one JSON line per epoch / evaluation and mirrors scalars to TensorBoard."""

    def __init__(self, out: Path, config, versions: dict):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        (self.out / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")
        self._writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out / "tb"))
        except ImportError:  # tensorboard is a dependency; tolerate its absence anyway
            pass

    def _append(self, row: dict) -> None:
        with open(self.out / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(row, sort_keys=True) + "\n")

    def epoch(self, row: dict) -> None:
        self._append({"kind": "epoch", **row})
        if self._writer:
            for key in ("loss", "loss_id", "loss_triplet", "accuracy", "lr", "images_per_s"):
                self._writer.add_scalar(f"train/{key}", row[key], row["epoch"])

    def evaluation(self, row: dict) -> None:
        self._append({"kind": "eval", **row})
        if self._writer and row.get("trial") == "mean":
            prefix = f"eval/{row['protocol']}/{row['feature']}"
            for key in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP"):
                self._writer.add_scalar(f"{prefix}/{key}", row[key], row["epoch"])

    def close(self) -> None:
        if self._writer:
            self._writer.close()
