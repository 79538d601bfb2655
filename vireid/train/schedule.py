"""The original's learning-rate schedule and SGD set-up (docs/recipe.md, Optimiser; Schedule).

Per epoch e: lr·(e+1)/10 for e < 10 (warm-up), lr for 10 ≤ e < 20, lr·0.1 for 20 ≤ e < 50,
lr·0.01 after (DEEN: milestones 20 and 80, its method's defaults, over 151 epochs). The BNNeck
and classifier use lr, every other parameter 0.1·lr (the model's ``param_groups`` says which
is which).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Schedule:
    warmup_epochs: int = 10
    milestones: tuple[int, int] = (20, 50)
    decay: float = 0.1

    def factor(self, epoch: int) -> float:
        """Multiplier of the base learning rate during ``epoch`` (0-based)."""
        if epoch < self.warmup_epochs:
            return (epoch + 1) / self.warmup_epochs
        return self.decay ** sum(epoch >= m for m in self.milestones)


def make_optimizer(groups: list[dict], *, momentum: float = 0.9, weight_decay: float = 5e-4,
                   nesterov: bool = True) -> torch.optim.SGD:
    return torch.optim.SGD(groups, momentum=momentum, weight_decay=weight_decay,
                           nesterov=nesterov)


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule):
    """A LambdaLR stepped once per epoch; its state goes into checkpoints."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedule.factor)
