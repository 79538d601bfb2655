"""The resolved training configuration: built at the CLI edge, passed down as plain values."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class TrainConfig:
    shards: str
    out: str
    trial: int | None = None
    epochs: int = 81
    batch_ids: int = 8
    num_pos: int = 4
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 10
    milestones: tuple[int, int] = (20, 50)
    method: str = "agw"
    arch: str = "resnet50"
    pretrained: str = "torchvision"
    amp: str = "auto"
    channels_last: bool = True
    sync_bn: bool = False
    compile: bool = False
    deterministic: bool = False  # deterministic CUDA kernels, no cuDNN autotuning
    seed: int = 0
    replace: bool = True
    sampler: str = "epoch"
    eval_every: int = 2
    eval_protocol: str | None = None
    eval_batch_size: int = 64
    loader: str = "dali"
    device: str = "auto"
    cpu_augment: str = "fused"
    num_threads: int | None = None
    log_every: int = 10
    max_steps: int | None = None  # cut every epoch short (smoke runs and tests)
    resume: bool = False
    verify: bool = True  # shards' sha256 against the manifest before training

    def to_dict(self) -> dict:
        """Plain values only (choices as their words): JSON and ``weights_only`` loads."""
        values = {k: v.value if isinstance(v, Enum) else v
                  for k, v in dataclasses.asdict(self).items()}
        values["milestones"] = list(self.milestones)
        return values

    def compatible_keys(self) -> tuple[str, ...]:
        """Settings a resumed run must share with the run that wrote the checkpoint (the data
        itself is compared by its identity: dataset, manifest hash, view)."""
        return ("batch_ids", "num_pos", "method", "arch", "seed", "replace",
                "sampler", "lr", "momentum", "weight_decay", "warmup_epochs", "milestones",
                "max_steps")

