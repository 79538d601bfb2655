"""The run folder (``--out``): what may be used as one, and one run at a time in it.

A new run needs a folder that does not exist yet, an empty one, or a run folder whose run
never wrote a checkpoint (a run takes its ``.lock`` before it writes anything, so a folder
without one is not a run folder); a folder holding anything else (the user's own files, even
ones named ``config.json`` or ``metrics.jsonl``) is refused, and so is a folder that is, holds
or lies inside what the run reads (``check_apart``).
While a run is alive it holds an exclusive ``flock`` on ``RUN/.lock``: the operating system
releases it when the process ends, however it ends, so a lock file left by a dead process
never blocks the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from vireid.errors import VireidError

RUN_ENTRIES = frozenset({"config.json", "versions.json", "metrics.jsonl", "tb", "checkpoints",
                         ".lock"})
SYSTEM_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))


def checkpoint_path(out: Path) -> Path:
    return Path(out) / "checkpoints" / "last.pt"


def check_out_dir(out: Path, resume: bool) -> None:
    """Refuse, before any work, an ``out`` that cannot hold this run (nothing is written)."""
    out = Path(out)
    check_writable_target(out)
    if out.exists() and not out.is_dir():
        raise VireidError(out, "is a file, not a run folder")
    if resume:
        if not checkpoint_path(out).is_file():
            raise VireidError(checkpoint_path(out), "nothing to resume (no checkpoint)")
        return
    if checkpoint_path(out).is_file():
        raise VireidError(out, "already holds a run (resume it, or choose another run "
                          "folder)")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    foreign = [name for name in held if name not in RUN_ENTRIES]
    if foreign or (held and ".lock" not in held):  # a run takes its lock before writing
        shown = foreign or held
        raise VireidError(out, f"is not a run folder (it holds {', '.join(shown[:3])}"
                          f"{', …' if len(shown) > 3 else ''}): choose a new or empty run folder")


def check_apart(out: Path, inputs: dict) -> None:
    """``out``, a folder this command writes, neither is, nor lies inside, nor holds any of
    ``inputs`` ({what: path}; None skipped), however the paths are spelled (symlinks, ``..``):
    an output never replaces what the same command reads."""
    target = Path(os.path.realpath(out))
    for what, path in inputs.items():
        if path is None:
            continue
        source = Path(os.path.realpath(path))
        if target == source:
            raise VireidError(out, f"is the {what} this command reads; choose another folder")
        if source in target.parents:
            raise VireidError(out, f"lies inside the {what} ({path}) this command reads; "
                              "choose a folder outside it")
        if target in source.parents:
            raise VireidError(out, f"holds the {what} ({path}) this command reads; choose "
                              "another folder")


def check_writable_target(path: Path) -> None:
    """``path`` can be created or written: not in a system tree, no file on the way, and the
    nearest existing folder is writable."""
    resolved = Path(os.path.abspath(path))
    if any(resolved == tree or tree in resolved.parents for tree in SYSTEM_TREES):
        raise VireidError(path, "is inside a system folder; choose another place")
    existing = resolved
    while not existing.exists():
        existing = existing.parent
    if existing != resolved and not existing.is_dir():
        raise VireidError(path, f"cannot be created: {existing} is a file")
    folder = existing if existing.is_dir() else existing.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise VireidError(path, f"cannot be written: {folder} is read-only for this user")


class RunLock:
    """``with RunLock(out):`` — the run folder exists and this process is its only run."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self._descriptor: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise VireidError(self.out, f"cannot be created ({error.strerror})") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "?"
            os.close(descriptor)
            raise VireidError(self.out, f"is in use by another run (process {holder}); "
                              "wait for it to end or choose another run folder") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self._descriptor = descriptor
        return self

    def __exit__(self, *exc) -> None:
        if self._descriptor is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._descriptor, 0)
            os.close(self._descriptor)  # releases the lock
            self._descriptor = None
