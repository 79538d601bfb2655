"""Deterministic tar writing and DALI index files (format v1.2, as ``wds2idx`` writes them).

Members are plain USTAR headers with a fixed mtime, owner 0 and mode 0444, so building the same
records twice gives byte-identical shards, and every data offset is header + 512 bytes.
Writing goes through ``webdataset.TarWriter``; reading the members back (their offsets for the
index) and the index itself are done here with ``tarfile``, as webdataset has no API for them.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path

from vireid.constants import DALI_INDEX_VERSION, TAR_MTIME
from vireid.errors import VireidError

BLOCK = 512  # a tar header is one block; member data is padded to a whole number of blocks
MEMBER_MODE = 0o444


def split_member(name: str) -> tuple[str, str]:
    """Key and extension split at the first dot after the last '/' (DALI/webdataset rule)."""
    dot = name.find(".", name.rfind("/") + 1)
    return (name, "") if dot < 0 else (name[:dot], name[dot + 1 :])


class TarWriter:
    """Appends members to one tar file through ``webdataset.TarWriter``, with fixed metadata.

    webdataset's writer ignores its ``format`` argument and writes PAX archives; given an
    integer mtime and empty owner names no member needs an extended header, so its output is
    the plain USTAR bytes (with its default float mtime every member would get a 1 KB extended
    header, and the time of the build). One member per ``add`` keeps our member order: a whole
    sample in one ``write`` is written in sorted extension order. The file is opened here:
    webdataset's own opener runs a path that starts with ``pipe:`` as a shell command.
    """

    def __init__(self, path: Path):
        import webdataset  # lazily: it imports torch (~1 s), which only a build needs to pay

        self.path = path
        self._file = open(path, "wb")  # closed by close()
        self._tar = webdataset.TarWriter(self._file, user="", group="", mode=MEMBER_MODE,
                                         encoder=False, mtime=TAR_MTIME)

    def add(self, name: str, data: bytes) -> None:
        key, extension = split_member(name)
        self._tar.write({"__key__": key, extension: data})

    def close(self) -> None:
        try:
            self._tar.close()
        finally:
            self._file.close()


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
