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

CHECKPOINT_FORMAT = "vireid.checkpoint/1"


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(payload: dict, path: Path) -> None:
    """Atomically write ``payload`` (plus the format tag) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as handle:
            torch.save({"format": CHECKPOINT_FORMAT, **payload}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        reason = "disk full" if error.errno == errno.ENOSPC else error.strerror or str(error)
        kept = " (the previous checkpoint is intact)" if path.exists() else ""
        raise VireidError(path, f"cannot write checkpoint: {reason}{kept}") from None


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Read a vireid checkpoint with ``weights_only=True``; anything else is a VireidError."""
    path = Path(path)
    if not path.is_file():
        raise VireidError(path, "checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for bad files
        raise VireidError(path, f"not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise VireidError(path, f"not a {CHECKPOINT_FORMAT} checkpoint")
    return payload
