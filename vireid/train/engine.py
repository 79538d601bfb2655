"""One training epoch: forward under autocast, losses, scaled backward, optimiser step.

Loss values stay on the device; ``.item()`` is called only where something is reported
(every ``log_every`` steps and at the end of the epoch), which is also where a non-finite loss
is detected.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.distributed as dist

from vireid.errors import VireidError
from vireid.train.methods import MethodSpec, get_method


class NonFiniteLoss(VireidError):
    pass


def _inputs(batch: dict, device: torch.device, channels_last: bool, amp_dtype):
    def move(tensor):
        tensor = tensor.to(device, non_blocking=True)
        if amp_dtype is None:
            tensor = tensor.float()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return tensor.contiguous(memory_format=fmt)

    labels = torch.cat([batch["labels_visible"], batch["labels_infrared"]]).to(device)
    return move(batch["visible"]), move(batch["infrared"]), labels


def train_one_epoch(model, loader, optimizer, scaler, *, device: torch.device, amp_dtype,
                    method, channels_last: bool, log_every: int = 10,
                    max_steps: int | None = None,
                    on_log: Callable[[dict], None] | None = None) -> dict:
    """Train over one epoch of ``loader``; returns mean losses, accuracy and images/s.
    ``method``: a method's name or its ``MethodSpec``."""
    spec = method if isinstance(method, MethodSpec) else get_method(method)  # the loss
    model.train()
    sums = torch.zeros(4, device=device)  # total, id, triplet, correct
    images = steps = 0
    start = time.perf_counter()
    for batch in loader:
        visible, infrared, labels = _inputs(batch, device, channels_last, amp_dtype)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            pooled, logits = model(visible, infrared)
            losses = spec.losses(pooled, logits, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses["total"]).backward()
        scaler.step(optimizer)
        scaler.update()
        correct = (logits.detach().argmax(dim=1) == labels).sum()
        sums += torch.stack([losses["total"].detach(), losses["id"].detach(),
                             losses["triplet"].detach(), correct.float()])
        images += len(labels)
        steps += 1
        if steps % log_every == 0 or steps == len(loader):
            stats = _summary(sums, steps, images, start, optimizer)
            _check_finite(stats, batch)
            if on_log:
                on_log({**stats, "step": batch["step"], "steps": len(loader)})
        if max_steps and steps >= max_steps:
            break
    stats = _summary(sums, steps, images, start, optimizer)
    _check_finite(stats, batch)
    return stats


def _summary(sums: torch.Tensor, steps: int, images: int, start: float, optimizer) -> dict:
    """Means over the steps so far of every rank (every rank sees the same values).

    Sums are added over ranks and divided once: the losses are means over steps and ranks,
    the accuracy is correct / images of the global batch, as one process holding every rank's
    images would report. E.g. two ranks with 3 and 1 correct of 4 images each: 4 / 8 = 0.5.
    """
    counts = torch.tensor([steps, images], dtype=torch.float64, device=sums.device)
    totals = _sum_over_ranks(torch.cat([sums.detach().double(), counts]))
    total, identity, triplet, correct, all_steps, all_images = totals.tolist()
    all_steps, all_images = max(all_steps, 1), int(all_images)
    seconds = time.perf_counter() - start
    return {"loss": total / all_steps, "loss_id": identity / all_steps,
            "loss_triplet": triplet / all_steps, "accuracy": correct / max(all_images, 1),
            "images": all_images, "images_per_s": all_images / seconds if seconds else 0.0,
            "seconds": seconds, "lr": max(group["lr"] for group in optimizer.param_groups)}


def _sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place); a no-op in a single process."""
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def _check_finite(stats: dict, batch: dict) -> None:
    if not all(map(_finite, (stats["loss"], stats["loss_id"], stats["loss_triplet"]))):
        raise NonFiniteLoss(f"epoch {batch['epoch']} step {batch['step']}",
                            "the loss became NaN or infinite; stopping (the last checkpoint "
                            "is from the previous epoch and is kept). Try a lower learning rate "
                            "or float32 (amp off)")


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")
