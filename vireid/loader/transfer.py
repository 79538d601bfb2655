"""Host arrays onto a device without the host waiting for it.

A copy from pageable memory to a GPU (``torch.as_tensor(array, device="cuda")``,
``tensor.to("cuda")``) synchronises with the stream: the host waits until every kernel queued
before it has run, e.g. the previous training step's backward pass. Staged in pinned memory
and copied with ``non_blocking=True`` it is queued like a kernel instead, and PyTorch's
caching host allocator keeps the pinned buffer from reuse until the copy that reads it has
run. Per-step data (augmentation parameters, cache rows, labels) goes through ``to_device``.
"""

from __future__ import annotations

import numpy as np
import torch


def to_device(values: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """``values`` on ``device`` without a host synchronisation: staged in pinned memory when
    ``device`` is CUDA and copied with ``non_blocking=True`` (on the CPU: a copy)."""
    device = torch.device(device)
    values = np.asarray(values)
    host = torch.empty(values.shape, dtype=torch.from_numpy(values[:0]).dtype,
                       pin_memory=device.type == "cuda")
    host.numpy()[...] = values
    return host.to(device, non_blocking=True)
