"""OUT_DIR's lifetime during a build: locked, built under a temporary name, swapped in last.

``staged_output`` checks the output rules (``vireid.shards.safety``), takes an exclusive
``flock`` on ``.NAME.lock`` beside OUT_DIR (the kernel drops it when its process dies, so a
stale lock file never blocks), removes the temporary folders of dead builds
(``.NAME.partial-PID``, ``.NAME.old-PID``) and creates ``.NAME.partial-PID``, all before any
image is encoded. ``Stage.commit`` re-checks OUT_DIR and renames the temporary folder over it.
Leaving the block any other way removes every trace (temporary folder, lock file, parent
folders it created) and turns an OSError (full disk, read-only place) into one VireidError.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vireid.errors import VireidError
from vireid.shards.safety import (
    check_output,
    check_replaceable,
    create_parents,
    remove_empty,
    write_error,
)
from vireid.shards.signals import signals_held


@dataclass(frozen=True)
class Stage:
    """A build in progress: write into ``partial``, then ``commit()``."""

    out_dir: Path  # as the user named it, for messages
    target: Path  # resolved: what is renamed
    partial: Path
    overwrite: bool

    def commit(self) -> None:
        """Rename ``partial`` to OUT_DIR; without overwrite, refuse an OUT_DIR that appeared."""
        with signals_held():  # an interrupt never leaves OUT_DIR half-swapped
            if not os.path.lexists(self.target):
                os.replace(self.partial, self.target)
                return
            if not self.overwrite:
                raise VireidError(self.out_dir, "appeared while building (written by another "
                                  "program): it was left as it is")
            check_replaceable(self.out_dir)
            old = sibling(self.target, "old")
            os.replace(self.target, old)
            os.replace(self.partial, self.target)
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_output(out_dir: Path, raw_root: Path, overwrite: bool,
                  linked: tuple[Path, ...] = ()) -> Iterator[Stage]:
    """Yield a Stage for ``out_dir``; see the module docstring for what happens around it
    (``linked``: what links in the raw tree lead to, as ``check_output`` takes)."""
    check_output(out_dir, raw_root, overwrite, linked)
    target = out_dir.resolve()
    created: list[Path] = []
    done = False
    try:
        created = _setup(create_parents, target.parent, target.parent)
        with _locked(out_dir, target):
            check_output(out_dir, raw_root, overwrite, linked)  # again, no build interfering now
            stage = Stage(out_dir, target, sibling(target, "partial"), overwrite)
            _setup(_fresh_partial, stage, target.parent)
            try:
                yield stage
            except OSError as error:
                raise write_error(out_dir, error) from None
            finally:
                shutil.rmtree(stage.partial, ignore_errors=True)
        done = True
    finally:
        if not done:
            remove_empty(created)


def sibling(target: Path, kind: str) -> Path:
    """``.NAME.lock``, or ``.NAME.partial-PID`` / ``.NAME.old-PID`` of this process."""
    suffix = "lock" if kind == "lock" else f"{kind}-{os.getpid()}"
    return target.parent / f".{target.name}.{suffix}"


def _setup(step, argument, folder: Path):
    """Run one preparation step; an OSError means nothing can be written in ``folder``."""
    try:
        return step(argument)
    except OSError as error:
        raise VireidError(folder, f"cannot create files in this folder "
                          f"({error.strerror or error})") from None


def _fresh_partial(stage: Stage) -> None:
    _remove_stale(stage.target)
    shutil.rmtree(stage.partial, ignore_errors=True)
    stage.partial.mkdir()


def _remove_stale(target: Path) -> None:
    """Remove ``.NAME.partial-PID`` / ``.NAME.old-PID`` folders whose process is gone."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:partial|old)-(\d+)")
    for entry in target.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # an earlier build of this process; the lock says none runs now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. another user's process
    return True


@contextlib.contextmanager
def _locked(out_dir: Path, target: Path) -> Iterator[None]:
    """Hold ``.NAME.lock`` exclusively; refuse at once when another build holds it."""
    path = sibling(target, "lock")
    handle = _setup(lambda p: os.open(p, os.O_RDWR | os.O_CREAT, 0o644), path, target.parent)
    if not _acquired(handle, path):
        os.close(handle)
        raise VireidError(out_dir, f"another build is writing it right now (it holds {path}): "
                          "wait for it to finish")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # before closing: nobody can lock this file once it is released
        os.close(handle)


def _acquired(handle: int, path: Path) -> bool:
    """Lock the open file; it must still be the one at ``path`` (not one just released)."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return os.fstat(handle).st_ino == os.stat(path).st_ino
    except (BlockingIOError, FileNotFoundError):
        return False
