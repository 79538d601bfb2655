"""What a build may write to, and what ``--overwrite`` may replace.

A typo in OUT_DIR must cost nothing: a build never writes into, over or around its raw tree,
and ``--overwrite`` replaces only an empty folder or a vireid shard folder (a ``manifest.json``
of schema ``vireid.shards`` and no sub-folders). Paths are compared resolved, so a symlink
cannot smuggle the raw tree past the rules, and what a link inside the raw tree leads to
(``linked_inputs``) counts as part of it. Example: ``build sysu wrap/SYSU wrap
--overwrite`` is refused (``wrap`` contains the raw root), and so are ``.`` and ``/`` unless
they are shard folders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vireid.constants import MANIFEST_NAME, MANIFEST_SCHEMA
from vireid.errors import VireidError


class OutputExists(VireidError):
    """OUT_DIR exists and overwriting was not allowed (the CLI names its option)."""


def check_output(out_dir: Path, raw_root: Path, overwrite: bool,
                 linked: tuple[Path, ...] = ()) -> None:
    """Refuse an OUT_DIR that overlaps the raw tree or what a link inside it leads to
    (``linked_inputs``), exists (without ``overwrite``), may not be replaced, or
    cannot be created (a file on its way)."""
    out, raw = out_dir.resolve(), raw_root.resolve()
    if out == raw:
        raise VireidError(out_dir, "is the raw dataset itself: write the shards elsewhere")
    if raw in out.parents:
        raise VireidError(out_dir, f"is inside the raw dataset {raw_root}: write the shards "
                          "elsewhere")
    if out in raw.parents:
        raise VireidError(out_dir, f"contains the raw dataset {raw_root}: write the shards "
                          "elsewhere")
    for folder in linked:
        _check_linked(out_dir, out, folder, raw_root)
    if out.parent == out:
        raise VireidError(out_dir, "is the file-system root: not a shard folder")
    if os.path.lexists(out):
        if not overwrite:
            raise OutputExists(out_dir, "already exists (allow overwriting to replace it)")
        check_replaceable(out_dir)
    check_creatable(out.parent)


def linked_inputs(raw_root: Path, paths: list[str]) -> tuple[Path, ...]:
    """Where the links inside the raw tree that its images are read through lead, when that
    is outside it (a camera folder kept on another disk, a linked image file), resolved.

    Example: with ``SYSU/cam1 -> /disk2/cam1``, OUT_DIR may not be ``/disk2/cam1``, be inside
    it or contain it. One ``lstat`` per image and folder: quick on 100k images.
    """
    raw = raw_root.resolve()
    seen: set[str] = set()
    found = set()
    for path in paths:
        parts = path.split("/")
        for prefix in ("/".join(parts[:end]) for end in range(1, len(parts) + 1)):
            if prefix in seen:
                continue
            seen.add(prefix)
            if os.path.islink(raw_root / prefix):
                target = (raw_root / prefix).resolve()
                if target != raw and raw not in target.parents:
                    found.add(target)
    return tuple(sorted(found))


def _check_linked(out_dir: Path, out: Path, linked: Path, raw_root: Path) -> None:
    part = f"part of the raw dataset {raw_root} through a link in it: write the shards " \
           "elsewhere"
    if out == linked:
        raise VireidError(out_dir, f"is {part}")
    if linked in out.parents:
        raise VireidError(out_dir, f"is inside {linked}, {part}")
    if out in linked.parents:
        raise VireidError(out_dir, f"contains {linked}, {part}")


def check_replaceable(out_dir: Path) -> None:
    """``--overwrite`` replaces only an empty folder or a vireid shard folder."""
    if not out_dir.is_dir():
        raise VireidError(out_dir, "exists and is not a folder: refusing to replace it")
    entries = _entries(out_dir)
    if not entries:
        return
    if not is_shard_folder(out_dir):
        raise VireidError(out_dir, f"is not a vireid shard folder (no vireid {MANIFEST_NAME}): "
                          "overwriting only replaces shard folders and empty folders")
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            raise VireidError(entry, "a shard folder holds no sub-folders: refusing to replace "
                              f"{out_dir}")


def is_shard_folder(folder: Path) -> bool:
    """True when ``folder/manifest.json`` is a vireid manifest (of any version)."""
    try:
        document = json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("schema") == MANIFEST_SCHEMA


def check_creatable(folder: Path) -> None:
    """The nearest existing ancestor of ``folder`` must be a folder, not a file."""
    existing = next(p for p in (folder, *folder.parents) if os.path.lexists(p))
    if not existing.is_dir():
        raise VireidError(existing, "is a file, not a folder: nothing can be created inside it")


def create_parents(folder: Path) -> list[Path]:
    """``mkdir -p folder``; return the folders created, deepest first (none on failure)."""
    missing = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]
    created: list[Path] = []
    try:
        for path in reversed(missing):
            path.mkdir()
            created.insert(0, path)
    except BaseException:
        remove_empty(created)
        raise
    return created


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) where they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


def write_error(where: Path, error: OSError) -> VireidError:
    """A failed write (full disk, read-only place, /proc …) as one line; nothing is kept."""
    return VireidError(where, f"cannot write here ({error.strerror or error}): nothing was kept")


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as error:
        raise VireidError(folder, f"cannot list it ({error.strerror})") from None
