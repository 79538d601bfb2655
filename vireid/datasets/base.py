"""Helpers shared by the raw-layout readers: split files, folder listings, single-shot draws.

Readers collect records and refer to them by relative path; ``DatasetBuilder.finish`` sorts the
records into storage order and turns every path reference into a record index.
"""

from __future__ import annotations

import os
import posixpath
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vireid.errors import VireidError
from vireid.records import (
    LabeledSamples,
    Modality,
    Protocol,
    RawDataset,
    Record,
    TrainView,
    Trial,
)

PID_FOLDER = re.compile(r"^\d{4}$")


def require_dir(path: Path, what: str = "folder") -> Path:
    if not path.is_dir():
        raise VireidError(path, f"missing {what}")
    return path


def read_id_list(path: Path) -> list[int]:
    """Read a split file of ONE line of comma separated integer ids (``1,2,4,5``)."""
    if not path.is_file():
        raise VireidError(path, "missing split file")
    lines = _read_text(path).splitlines()
    if not lines or not lines[0].strip():
        raise VireidError(path, "empty split file (expected one line of comma separated ids)")
    ids = []
    for token in lines[0].split(","):
        try:
            ids.append(int(token))
        except ValueError:
            raise VireidError(f"{path}:1", f"{token!r} is not an integer id") from None
    seen = set()
    for pid in ids:
        if pid in seen:
            raise VireidError(f"{path}:1", f"id {pid} is listed twice")
        seen.add(pid)
    return ids


@dataclass(frozen=True)
class ListedImage:
    """One line ``<relative path> <label>`` of an index list file."""

    path: str
    label: int
    where: str


def read_labeled_list(path: Path, root: Path) -> list[ListedImage]:
    """Read ``<path relative to root> <label>`` lines (one space), checking each file exists."""
    if not path.is_file():
        raise VireidError(path, "missing index file")
    entries = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        where = f"{path}:{number}"
        parts = line.split(" ")
        if len(parts) < 2 or not parts[0]:
            raise VireidError(where, f"expected '<relative path> <label>', got {line!r}")
        try:
            label = int(parts[1])
        except ValueError:
            raise VireidError(where, f"label {parts[1]!r} is not an integer") from None
        relpath = normalise_relpath(parts[0], where)
        if not (root / relpath).is_file():
            raise VireidError(where, f"listed image {root / relpath} does not exist")
        entries.append(ListedImage(relpath, label, where))
    if not entries:
        raise VireidError(path, "empty index file")
    return entries


def normalise_relpath(relpath: str, where: str) -> str:
    norm = posixpath.normpath(relpath.replace("\\", "/"))
    if norm.startswith("../") or norm == ".." or posixpath.isabs(norm):
        raise VireidError(where, f"path {relpath!r} leaves the dataset root")
    return norm


def pid_from_parent(relpath: str, where: str) -> int:
    """Identity = the numeric folder that holds the image (``Visible/2/x.bmp`` → 2)."""
    parent = posixpath.basename(posixpath.dirname(relpath))
    if not parent.isdigit():
        raise VireidError(where, f"cannot read an identity from folder {parent!r} of {relpath}")
    return int(parent)


def list_files(folder: Path, root: Path) -> list[str]:
    """Sorted relative paths of the files in ``folder``; a sub-folder is an error."""
    names = sorted(os.listdir(folder))
    for name in names:
        if not (folder / name).is_file():
            raise VireidError(folder / name, "unexpected entry (expected image files only)")
    rel = folder.relative_to(root).as_posix()
    return [f"{rel}/{name}" for name in names]


def pid_folders(camera_dir: Path) -> dict[int, Path]:
    """The 4-digit identity folders of a camera folder; any other name is an error."""
    found = {}
    for entry in sorted(os.listdir(camera_dir)):
        if not PID_FOLDER.match(entry) or not (camera_dir / entry).is_dir():
            raise VireidError(camera_dir / entry, "expected a 4-digit identity folder")
        found[int(entry)] = camera_dir / entry
    return found


def id_order(ids: Iterable[int]) -> list[int]:
    """The original's order: ids formatted as ``%04d`` strings, sorted as strings."""
    return sorted(ids, key=lambda pid: f"{pid:04d}")


def single_shot(
    groups: Sequence[Sequence[str]], trial: int
) -> list[str]:
    """One ``random.choice`` per non-empty group after seeding Python's RNG with ``trial``.

    ``groups`` are the sorted file lists of every (pid, camera) folder that exists, in the
    original's loop order (pid, then camera). Equivalent to the original's
    ``random.seed(trial)`` followed by ``random.choice(sorted(files))`` per folder, but with a
    private ``random.Random`` so no global state is touched.
    """
    rng = random.Random(trial)
    return [rng.choice(files) for files in groups]


@dataclass
class DatasetBuilder:
    """Collects records by path, then hands out a RawDataset with index references."""

    name: str
    root: Path
    records: dict[str, Record] = field(default_factory=dict)
    views: list[tuple[str, list[ListedImage], list[ListedImage]]] = field(default_factory=list)
    protocols: list[tuple[str, str, Modality, Modality, list[tuple]]] = field(
        default_factory=list
    )

    def add(self, record: Record, where: str) -> None:
        known = self.records.get(record.path)
        if known is None:
            self.records[record.path] = record
        elif known != record:
            raise VireidError(where, f"{record.path} is listed with conflicting identity, "
                              f"camera or modality ({known} vs {record})")

    def add_view(self, name: str, visible: list[ListedImage], infrared: list[ListedImage]):
        self.views.append((name, visible, infrared))

    def add_protocol(self, name: str, metric: str, query_modality: Modality,
                     gallery_modality: Modality, trials: list[tuple]) -> None:
        """``trials``: (trial, query paths, query pids, gallery paths, gallery pids)."""
        self.protocols.append((name, metric, query_modality, gallery_modality, trials))

    def finish(self, default_protocol: str,
               trial_views: tuple[tuple[int, str], ...] = ()) -> RawDataset:
        ordered = sorted(self.records.values(), key=Record.sort_key)
        index = {record.path: i for i, record in enumerate(ordered)}

        def refs(paths):
            return tuple(index[p] for p in paths)

        views = tuple(
            TrainView(
                name,
                LabeledSamples(refs(e.path for e in vis), tuple(e.label for e in vis)),
                LabeledSamples(refs(e.path for e in ir), tuple(e.label for e in ir)),
            )
            for name, vis, ir in self.views
        )
        protocols = tuple(
            Protocol(name, metric, qmod, gmod, tuple(
                Trial(t, refs(qp), tuple(qi), refs(gp), tuple(gi)) for t, qp, qi, gp, gi in trials
            ))
            for name, metric, qmod, gmod, trials in self.protocols
        )
        return RawDataset(self.name, self.root, tuple(ordered), views, protocols, default_protocol,
                          trial_views)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise VireidError(path, "not a UTF-8 text file") from None
    except OSError as error:
        raise VireidError(path, f"cannot read ({error.strerror})") from None


@dataclass(frozen=True)
class CameraTree:
    """Sorted image paths per (pid, camera) of a ``<camera dir>/<pid 4 digits>/<file>`` tree."""

    files: dict[tuple[int, int], list[str]]

    def groups(self, ids: Iterable[int], cams: Sequence[int]) -> list[list[str]]:
        """Non-empty folders in the original's loop order: ids as sorted strings, then cameras."""
        return [self.files[(p, c)] for p in id_order(ids) for c in cams if (p, c) in self.files]

    def flat(self, ids: Iterable[int], cams: Sequence[int]) -> list[str]:
        return [path for group in self.groups(ids, cams) for path in group]

    def pids(self) -> set[int]:
        return {pid for pid, _ in self.files}


def scan_camera_tree(root: Path, camera_dirs: dict[int, str], ids: Iterable[int]) -> CameraTree:
    """List the folders of the listed ids under every camera folder (which must all exist)."""
    wanted = set(ids)
    files = {}
    for cam, relative in camera_dirs.items():
        camera_dir = require_dir(root / relative, f"camera folder {relative}")
        for pid, folder in pid_folders(camera_dir).items():
            if pid in wanted:
                listed = list_files(folder, root)
                if not listed:
                    raise VireidError(folder, "empty identity folder")
                files[(pid, cam)] = listed
    return CameraTree(files)


def require_images(have: set[int], ids: Iterable[int], split_file: Path) -> None:
    """An id listed in a split file must have at least one image (``have``: pids with images)."""
    for pid in id_order(ids):
        if pid not in have:
            raise VireidError(split_file, f"id {pid} is listed but has no images")
