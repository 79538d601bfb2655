"""Where a run computes and in what precision: device, CUDA index, autocast type, cuDNN.

Choices are resolved once, here: ``auto`` never travels further down, and a resumed run
compares what was actually used (the resolved precision), not the words on the command line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sysconfig
from collections.abc import Iterator

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
    bitwise repeatable (``deterministic``: deterministic kernels, no autotuning). These are
    process-wide settings: a run sets them inside ``cuda_settings``, which restores them."""
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by cuBLAS
        torch.use_deterministic_algorithms(True)


@contextlib.contextmanager
def cuda_settings(deterministic: bool) -> Iterator[None]:
    """``configure_cuda`` for the length of a run: cuDNN's flags, deterministic algorithms
    (and their warn-only mode) and CUBLAS_WORKSPACE_CONFIG come back as they were when the
    block ends, so one run's settings never leak into the next run of the same process."""
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    configure_cuda(deterministic)
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])
        if saved[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[4]


def compiler_missing() -> str | None:
    """Why ``torch.compile`` cannot build its kernels here (None: a C compiler and Python.h
    are there): Inductor compiles C++/Triton launchers with ``cc`` and the Python headers."""
    compiler = os.environ.get("CC") or next(
        (name for name in ("cc", "gcc", "clang") if shutil.which(name)), None)
    if compiler is None or not shutil.which(compiler):
        return "no C compiler (cc, gcc or clang) on PATH"
    include = sysconfig.get_paths().get("include") or "the interpreter's include folder"
    if not os.path.isfile(os.path.join(include, "Python.h")):
        return f"no Python.h in {include} (the python3-dev package)"
    return None
