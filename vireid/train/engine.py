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

LOGGED = ("total", "id", "triplet")  # every method's loss terms (DEEN adds cpm, ort)


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
                    max_steps: int | None = None, num_pos: int | None = None,
                    on_log: Callable[[dict], None] | None = None) -> dict:
    """Train over one epoch of ``loader``; returns mean losses (every term the method
    names: ``loss``, ``loss_id``, ``loss_triplet``, DEEN's ``loss_cpm`` and ``loss_ort``),
    accuracy and images/s. ``method``: a method's name or its ``MethodSpec``; ``num_pos``:
    the sampler's K, for losses that read the batch's P×K blocks (DEEN's CPM)."""
    spec = method if isinstance(method, MethodSpec) else get_method(method)  # the loss
    model.train()
    names, sums = LOGGED, None  # the loss terms, then correct
    images = steps = 0
    start = time.perf_counter()
    for batch in loader:
        visible, infrared, labels = _inputs(batch, device, channels_last, amp_dtype)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            pooled, logits = model(visible, infrared)
            losses = spec.losses(pooled, logits, labels, num_pos=num_pos)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses["total"]).backward()
        scaler.step(optimizer)
        scaler.update()
        # logits have ``branches`` rows per image, branch-major: [x; e1; e2] for DEEN
        correct = (logits.detach().argmax(dim=1) == labels.repeat(spec.branches)).sum()
        if sums is None:
            names = tuple(losses)
            sums = torch.zeros(len(names) + 1, device=device)
        sums += torch.stack([*(losses[name].detach() for name in names), correct.float()])
        images += len(labels)
        steps += 1
        if steps % log_every == 0 or steps == len(loader):
            stats = _summary(sums, steps, images, start, optimizer, names, spec.branches)
            _check_finite(stats, batch)
            if on_log:
                on_log({**stats, "step": batch["step"], "steps": len(loader)})
        if max_steps and steps >= max_steps:
            break
    stats = _summary(sums, steps, images, start, optimizer, names, spec.branches)
    _check_finite(stats, batch)
    return stats


def _summary(sums: torch.Tensor | None, steps: int, images: int, start: float, optimizer,
             names: tuple[str, ...] = LOGGED, branches: int = 1) -> dict:
    """Means over the steps so far of every rank (every rank sees the same values).

    Sums are added over ranks and divided once: the losses are means over steps and ranks,
    the accuracy is correct / logit rows of the global batch (``branches`` rows per image),
    as one process holding every rank's images would report. E.g. two ranks with 3 and 1
    correct of 4 images each: 4 / 8 = 0.5.
    """
    if sums is None:  # no step yet
        sums = torch.zeros(len(names) + 1)
    counts = torch.tensor([steps, images], dtype=torch.float64, device=sums.device)
    totals = _sum_over_ranks(torch.cat([sums.detach().double(), counts])).tolist()
    *terms, correct, all_steps, all_images = totals
    all_steps, all_images = max(all_steps, 1), int(all_images)
    seconds = time.perf_counter() - start
    losses = {("loss" if name == "total" else f"loss_{name}"): value / all_steps
              for name, value in zip(names, terms)}
    return {**losses, "accuracy": correct / max(all_images * branches, 1),
            "images": all_images, "images_per_s": all_images / seconds if seconds else 0.0,
            "seconds": seconds, "lr": max(group["lr"] for group in optimizer.param_groups)}


def _sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place); a no-op in a single process."""
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def _check_finite(stats: dict, batch: dict) -> None:
    if not all(_finite(value) for key, value in stats.items() if key.startswith("loss")):
        raise NonFiniteLoss(f"epoch {batch['epoch']} step {batch['step']}",
                            "the loss became NaN or infinite; stopping (the last checkpoint "
                            "is from the previous epoch and is kept). Try a lower learning rate "
                            "or float32 (amp off)")


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")
