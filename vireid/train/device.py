"""Where a run computes and in what precision: device, CUDA index, autocast type, cuDNN.

Choices are resolved once, here: ``auto`` never travels further down, and a resumed run
compares what was actually used (the resolved precision), not the words on the command line.
"""

from __future__ import annotations

import os

import torch

from vireid.errors import VireidError

PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def precision(requested: str, device: str) -> str:
    """auto: fp16 on CUDA (with a gradient scaler), off (float32) on a CPU."""
    if requested == "auto":
        return "fp16" if device == "cuda" else "off"
    return str(requested)  # a plain word, also for an Amp choice


def resolve_amp(requested: str, device: str):
    """The autocast dtype for ``requested`` on ``device`` (None: float32, no autocast)."""
    return PRECISIONS[precision(requested, device)]


def resume_precision(requested: str, device: str, saved: str) -> str:
    """The precision a resumed run continues in. ``auto`` keeps the precision the run was
    trained in (a run started on a CPU continues in float32 on a GPU); an explicit ``--amp``
    must name that precision, since changing it mid-run changes the optimisation."""
    if requested == "auto" or precision(requested, device) == saved:
        return saved
    raise VireidError("precision", f"the run was trained in {saved}; resume it in {saved} "
                      f"or auto (this run asks for {requested})")


def cuda_index(local_rank: int, visible: int) -> int:
    """This process's CUDA device: its local rank where it sees every GPU of the node
    (torchrun), device 0 where it sees just its own (SLURM ``--gpus-per-task=1``, a
    ``CUDA_VISIBLE_DEVICES`` per rank); in general the local rank modulo the visible count."""
    if visible < 1:
        raise VireidError("CUDA", "no GPU is visible to this process (check "
                          "CUDA_VISIBLE_DEVICES, or train on the CPU)")
    return local_rank % visible


def run_device(device_type: str, local_rank: int) -> torch.device:
    if device_type != "cuda":
        return torch.device("cpu")
    return torch.device("cuda", cuda_index(local_rank, torch.cuda.device_count()))


def configure_cuda(deterministic: bool) -> None:
    """Fixed input shapes: let cuDNN pick the fastest kernels, unless the run must be
    bitwise repeatable (``deterministic``: deterministic kernels, no autotuning)."""
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by cuBLAS
        torch.use_deterministic_algorithms(True)
