"""Multi-process training on PyTorch's own stack: torchrun's environment, NCCL/gloo, DDP.

Launch with ``torchrun --nproc_per_node=N -m vireid.cli.train …`` (or ``vireid-train --nproc
N``, which calls torchrun). Each rank builds its own DALI pipeline on its own device and takes
its share of every global step (the sampler splits the P identities); gradients are averaged
by DistributedDataParallel. As in common re-ID practice the BNNeck statistics and the triplet
loss see the rank's own batch (P/N identities × K images per modality); ``--sync-bn``
synchronises BatchNorm statistics across ranks instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vireid.errors import VireidError
from vireid.train.device import cuda_index


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def from_environment() -> DistEnv:
    """The torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE), if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistEnv(int(os.environ.get("RANK", "0")), world,
                   int(os.environ.get("LOCAL_RANK", "0")),
                   int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))


def init_distributed(device_type: str) -> DistEnv:
    """Join the process group when launched by torchrun: NCCL on GPUs, gloo on CPUs."""
    env = from_environment()
    if env.active and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(cuda_index(env.local_rank, torch.cuda.device_count()))
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return env


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_buffers(module: torch.nn.Module, env: DistEnv) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics drift apart per rank),
    so that all ranks evaluate the model that rank 0 saves."""
    if env.active:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def gather_to_main(value, env: DistEnv) -> list | None:
    """Every rank's ``value`` on rank 0 (in rank order); None elsewhere."""
    if not env.active:
        return [value]
    gathered = [None] * env.world_size if env.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def wrap_model(model, env: DistEnv, device: torch.device, sync_bn: bool):
    """DistributedDataParallel (optionally with SyncBatchNorm) when running on several ranks."""
    if not env.active:
        return model
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def check_split(batch_ids: int, world_size: int) -> None:
    """Each process trains on an equal share of a step's P identities."""
    if batch_ids % world_size:
        raise VireidError("--nproc", f"{world_size} processes cannot share P = {batch_ids} "
                          "identities per step: --batch-ids must be a multiple of the number "
                          "of processes")
