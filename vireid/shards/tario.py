"""Deterministic tar writing and DALI index files (format v1.2, as ``wds2idx`` writes them).

Members are plain USTAR entries with a fixed mtime, owner 0 and mode 0444, so building the same
records twice gives byte-identical shards, and every data offset is header + 512 bytes.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from vireid.constants import DALI_INDEX_VERSION, TAR_MTIME
from vireid.errors import VireidError

BLOCK = 512


def split_member(name: str) -> tuple[str, str]:
    """Key and extension split at the first dot after the last '/' (DALI/webdataset rule)."""
    dot = name.find(".", name.rfind("/") + 1)
    return (name, "") if dot < 0 else (name[:dot], name[dot + 1 :])


class TarWriter:
    """Appends members to one tar file with fixed metadata."""

    def __init__(self, path: Path):
        self.path = path
        self._tar = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)

    def add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = TAR_MTIME
        info.mode = 0o444
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self._tar.close()


@dataclass(frozen=True)
class Member:
    name: str
    offset: int  # of the data, not the header
    size: int


def tar_members(path: Path) -> list[Member]:
    """Regular-file members of a tar with their data offsets; a broken tar is a VireidError."""
    try:
        with tarfile.open(path, "r:") as tar:
            return [Member(m.name, m.offset_data, m.size) for m in tar if m.isreg()]
    except (tarfile.TarError, OSError, EOFError) as error:
        raise VireidError(path, f"not a readable tar file ({error})") from None


def index_text(members: list[Member]) -> str:
    """DALI index: ``v1.2 <samples>`` then per sample ``<ext> <offset> <size> <name>`` groups."""
    samples: list[list[Member]] = []
    last_key = None
    for member in members:
        key, _ = split_member(member.name)
        if not key or key.endswith("/"):
            continue
        if key != last_key:
            samples.append([])
            last_key = key
        samples[-1].append(member)
    lines = [f"{DALI_INDEX_VERSION} {len(samples)}"]
    for group in samples:
        lines.append(" ".join(f"{split_member(m.name)[1]} {m.offset} {m.size} {m.name}"
                              for m in group))
    return "\n".join(lines) + "\n"


def write_index(tar_path: Path) -> Path:
    """Write ``<name>.idx`` next to ``<name>.tar`` and return its path."""
    index_path = tar_path.with_suffix(".idx")
    index_path.write_text(index_text(tar_members(tar_path)))
    return index_path


def parse_index(path: Path) -> list[list[Member]]:
    """Read a DALI v1.2 index back into per-sample member groups; malformed → VireidError."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise VireidError(path, f"cannot read index ({error.strerror})") from None
    header = lines[0].split() if lines else []
    if len(header) != 2 or header[0] != DALI_INDEX_VERSION or not header[1].isdigit():
        raise VireidError(path, f"not a DALI {DALI_INDEX_VERSION} index file")
    samples = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split(" ")
        if len(fields) % 4 or not fields[0]:
            raise VireidError(f"{path}:{number}", "malformed index line")
        try:
            samples.append([Member(fields[i + 3], int(fields[i + 1]), int(fields[i + 2]))
                            for i in range(0, len(fields), 4)])
        except ValueError:
            raise VireidError(f"{path}:{number}", "malformed index line") from None
    if len(samples) != int(header[1]):
        raise VireidError(path, f"header says {header[1]} samples, found {len(samples)}")
    return samples


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
