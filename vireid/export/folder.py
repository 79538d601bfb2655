"""The output folder of an export: checked before any work, written under a temporary name
beside it (``.NAME.partial-PID``) and renamed into place only after the parity check passed,
so ``--out`` holds a whole export or nothing new.

``--out`` must be new or an empty folder; with ``overwrite`` it may also be an earlier export
(vireid's ``export.json`` and no sub-folder), replaced in one swap. It may not be, lie inside
or hold what the command reads (the checkpoint, the shard folder), with the words of the other
commands' checks (``vireid.outputs``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from vireid.errors import VireidError
from vireid.export.sidecar import SIDECAR, SIDECAR_FORMAT
from vireid.outputs import check_folder_output, check_outputs
from vireid.shards.safety import create_parents, remove_empty, write_error
from vireid.shards.signals import signals_held
from vireid.train.run_folder import check_writable_target


def check_out(out: Path, reads: Mapping[Path, str], trees: Mapping[Path, str],
              overwrite: bool) -> None:
    """Refuse an ``out`` that cannot be written, is a file, is or lies inside an input
    (``reads``: files, ``trees``: folders), holds one, or already holds something that
    ``overwrite`` may not replace."""
    out = Path(out)
    check_outputs({"--out": out}, reads, trees)
    target = Path(os.path.realpath(out))
    for path, what in {**reads, **trees}.items():
        if target in Path(os.path.realpath(path)).parents:
            raise VireidError(out, f"--out holds {what} ({path}), which this command reads: "
                              "choose a place outside it")
    check_writable_target(out)
    check_folder_output(out, "--out")
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:
            raise VireidError(out, "already exists and is not empty: give a new folder, or "
                              "--overwrite to replace an earlier export")
        if not is_export(target):
            raise VireidError(out, f"is not an earlier export (no vireid {SIDECAR}, or "
                              "sub-folders): --overwrite replaces only those")


def is_export(folder: Path) -> bool:
    """Whether ``folder`` holds an export of vireid's (its sidecar, no sub-folder)."""
    try:
        document = json.loads((folder / SIDECAR).read_text())
        entries = list(folder.iterdir())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("format") == SIDECAR_FORMAT and \
        not any(entry.is_dir() for entry in entries)


@contextlib.contextmanager
def staged(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; it becomes ``out`` when the block ends
    without an exception. Any failure removes it (and the parent folders made for it); an
    OSError becomes one line."""
    target = Path(os.path.realpath(out))
    partial = target.parent / f".{target.name}.partial-{os.getpid()}"
    created: list[Path] = []
    try:
        created = create_parents(target.parent)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        yield partial
        _commit(partial, target, Path(out), overwrite)
    except BaseException as error:
        shutil.rmtree(partial, ignore_errors=True)
        remove_empty(created)
        if isinstance(error, OSError):
            raise write_error(Path(out), error) from None
        raise


def _commit(partial: Path, target: Path, out: Path, overwrite: bool) -> None:
    """Rename ``partial`` to ``target``; an earlier export there is swapped out, then
    removed."""
    with signals_held():  # an interrupt never leaves --out half-swapped
        if not os.path.lexists(target) or (target.is_dir() and not any(target.iterdir())):
            os.replace(partial, target)  # over an empty folder too
            return
        if not (overwrite and is_export(target)):
            raise VireidError(out, "appeared while exporting (written by another program): "
                              "it was left as it is, and nothing was kept")
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
        try:
            os.replace(partial, target)
        except OSError:
            os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
