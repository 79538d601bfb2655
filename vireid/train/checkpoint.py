"""Checkpoints that hold everything needed to resume, written atomically.

``last.pt`` is replaced only by a complete new file (write to a temporary file in the same
folder, flush to disk, rename): a full disk or a kill while saving leaves the previous
checkpoint intact. Every value is a tensor, a number, a string or a container of those, so
``torch.load(path, weights_only=True)`` reads it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import torch

from vireid.errors import VireidError
from vireid.files import replaced_atomically
from vireid.model.original import read_original

CHECKPOINT_FORMAT = "vireid.checkpoint/1"


def rng_state(device: torch.device) -> dict:
    """The random state to resume with: the CPU generator, and the generator of the one
    GPU this process uses (nothing in the model draws from it today, but a resumed run must
    not depend on how many GPUs the machine shows)."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def cuda_rng_for(saved, index: int):
    """The saved CUDA generator state for device ``index``: one tensor (this format), or a
    list with one per visible GPU (older checkpoints: the entry of ``index`` if it exists,
    else the first). None when the run was on a CPU."""
    if isinstance(saved, (list, tuple)):
        return saved[index] if index < len(saved) else (saved[0] if saved else None)
    return saved


def restore_rng(state: dict, device: torch.device) -> None:
    """Restore what ``rng_state`` saved onto this process's devices (any GPU count)."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda":
        cuda = cuda_rng_for(state.get("cuda"), device.index or 0)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)


def restore_scaler(scaler, saved: dict) -> None:
    """Load a gradient scaler's state where there is one to load. A scaler that was disabled
    (float32 or bf16, e.g. a CPU run) saved an empty state: an enabled scaler then keeps its
    fresh state, and a disabled one ignores whatever was saved."""
    if saved and scaler.is_enabled():
        scaler.load_state_dict(saved)


def save_checkpoint(payload: dict, path: Path) -> None:
    """Atomically write ``payload`` (plus the format tag) to ``path``.

    Through ``vireid.files.replaced_atomically``, flushed to disk before the rename. Any
    failure (``torch.save`` reports a full disk as a RuntimeError, the file system as
    OSError) removes the temporary file and is one line.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(path) as partial, open(partial, "wb") as handle:
            torch.save({"format": CHECKPOINT_FORMAT, **payload}, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except (OSError, RuntimeError) as error:
        kept = " (the previous checkpoint is intact)" if path.exists() else ""
        raise VireidError(path, f"cannot write checkpoint: {_reason(error, path)}{kept}") \
            from None


def _reason(error: Exception, path: Path) -> str:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC or _disk_full(path):
        return "disk full"
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error).strip().splitlines()[0][:160] if str(error).strip() else "write failed"


def _disk_full(path: Path) -> bool:
    """Whether the file system of ``path`` has (almost) no space left."""
    try:
        stats = os.statvfs(path.parent)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < 1 << 20


def load_checkpoint(path: Path) -> dict:
    """Read a vireid checkpoint (``weights_only``, through the one safe reader of
    ``vireid.model.original``); anything else is a VireidError."""
    payload = read_original(path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise VireidError(path, f"not a {CHECKPOINT_FORMAT} checkpoint")
    return payload


def load_weights(model, state: dict, where) -> None:
    """Load a checkpoint's weights, or say in one line why they do not fit this model."""
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as error:
        first = str(error).strip().splitlines()[0][:160]
        raise VireidError(where, f"weights do not fit a {state.get('arch')} "
                          f"{state.get('method')} model with {state.get('num_classes')} "
                          f"classes ({first})") from None
