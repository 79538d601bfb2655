"""Outputs that must not be inputs: a command refuses, before any work, to write over what it
reads.

Paths are compared resolved (symlinks followed, ``..`` collapsed) and, where both exist, by
inode, so a symlink or a hard link cannot smuggle an input past the check. Example:
``vireid-test --checkpoint run/checkpoints/last.pt --json run/x/../checkpoints/last.pt`` is
refused, and so is ``--save-features`` into the shard folder the test images come from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from vireid.errors import VireidError


def check_outputs(outputs: Mapping[str, Path | None], reads: Mapping[Path, str],
                  trees: Mapping[Path, str] | None = None) -> None:
    """Refuse an output (option → path; None: not asked) that is a file this command reads
    (``reads``: path → what it is), lies inside a folder it reads (``trees``), or is given to
    two options."""
    given = {option: Path(path) for option, path in outputs.items() if path is not None}
    seen: dict[Path, str] = {}
    for option, path in given.items():
        resolved = _resolved(path)
        if resolved in seen:
            raise VireidError(path, f"given to both {seen[resolved]} and {option}: choose "
                              "one file each")
        seen[resolved] = option
        for read, what in reads.items():
            if _same_file(path, resolved, Path(read)):
                raise VireidError(path, f"{option} would write over {what} ({read}), which "
                                  "this command reads: choose another file")
        for folder, what in (trees or {}).items():
            inside = _resolved(Path(folder))
            if resolved == inside or inside in resolved.parents or _linked_into(path, inside):
                raise VireidError(path, f"{option} would write inside {what} ({folder}), "
                                  "which this command reads: choose a place outside it")


def check_file_output(path: Path, option: str) -> None:
    """A file to be written: not a folder, and its folder exists (found before the work,
    not after it)."""
    path = Path(path)
    if path.is_dir():
        raise VireidError(path, f"is a folder; give a file name for {option}")
    folder = Path(os.path.abspath(path)).parent
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise VireidError(path, f"cannot be written: its folder {folder} {problem}")


def check_folder_output(path: Path, option: str) -> None:
    """A folder to be created or filled: not an existing file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise VireidError(path, f"is a file; give a folder for {option}")


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _linked_into(path: Path, folder: Path) -> bool:
    """``path`` is a hard link to a file under ``folder`` (looked for only when the file has
    several links)."""
    try:
        stat = os.stat(path)
    except OSError:
        return False
    if stat.st_nlink < 2 or not folder.is_dir():
        return False
    inode = (stat.st_dev, stat.st_ino)
    return any(p.is_file() and (p.stat().st_dev, p.stat().st_ino) == inode
               for p in folder.rglob("*"))


def _same_file(path: Path, resolved: Path, other: Path) -> bool:
    if resolved == _resolved(other):
        return True
    try:
        return os.path.samefile(path, other)  # hard links
    except OSError:  # either does not exist
        return False
