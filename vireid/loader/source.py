"""Encoded bytes of any stored sample, read from the tar shards at their index offsets.

Nothing is loaded up front: opening checks every shard against the manifest (size, index
file, keys) so a wrong folder fails before the first batch with the file named, then each
sample is one positional read (``os.pread``) of its image member. Reads go through the page
cache without mapping the files, so the loader's resident memory does not grow with the
dataset.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np

from vireid.errors import VireidError
from vireid.shards.encode import Encoding
from vireid.shards.manifest import Manifest, load_manifest
from vireid.shards.tario import parse_index, sha256_file, split_member

# What every stored image ends with: the shard writer (Pillow) closes each JPEG with the
# end-of-image marker and each PNG with the IEND chunk, so an image cut short lacks it.
TRAILERS = {Encoding.JPEG: (b"\xff\xd9", "end-of-image marker"),
            Encoding.PNG: (b"\0\0\0\0IEND\xaeB`\x82", "IEND chunk")}


def open_source(shards) -> tuple[ShardBytes, bool]:
    """A shard source and whether the caller opened it (and so must close it)."""
    if isinstance(shards, ShardBytes):
        return shards, False
    return ShardBytes(shards), True


class UsesShards:
    """What every loader shares about its shard source: ``with loader:`` or ``close()``
    releases the shard files it opened itself (a source passed in stays open)."""

    source: ShardBytes
    _owns_source: bool

    def close(self) -> None:
        if self._owns_source:
            self.source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def decode_problem(data: bytes) -> str | None:
    """Why PIL cannot decode ``data`` (None when it can)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception as error:  # noqa: BLE001 - PIL raises many types for bad bytes
        return re.sub(r"\s*<[^>]*>", "", str(error)) or type(error).__name__
    return None


def structure_problem(image: np.ndarray, encoding: Encoding) -> str | None:
    """Why the stored bytes ``image`` are not a whole image of ``encoding`` (None when they
    look whole), from their first and last bytes and, for PNG, the chunk lengths: a few
    comparisons, no decoding. DALI's CPU decoder can crash the process on such bytes (a
    destroyed JPEG header, a PNG cut short), so they must never reach it."""
    signature = encoding.signature
    if image[:len(signature)].tobytes() != signature:
        return f"is not a {encoding.value.upper()}"
    trailer, name = TRAILERS.get(encoding, (b"", ""))
    if len(image) < len(signature) + len(trailer) or \
            image[len(image) - len(trailer):].tobytes() != trailer:
        return f"is truncated (no {name} at its end)"
    if encoding is Encoding.PNG and not _png_chunks_fit(image):
        return f"is truncated or damaged (its PNG chunks do not add up to its {len(image)} bytes)"
    return None


def _png_chunks_fit(image: np.ndarray) -> bool:
    """The chunks (length, type, data, CRC) from the signature on end exactly where the
    image does, with the IEND chunk: no chunk claims more bytes than there are."""
    position, end = 8, len(image)
    while position + 12 <= end:
        length = int.from_bytes(image[position:position + 4], "big")
        kind = image[position + 4:position + 8].tobytes()
        position += 12 + length
        if kind == b"IEND":
            break
    return position == end


class ShardBytes:
    """``read(i)`` → the stored image bytes of global sample ``i`` as a uint8 array."""

    def __init__(self, directory: Path, manifest: Manifest | None = None):
        self._files: dict[int, int] = {}
        self.directory = Path(directory)
        self.manifest = manifest or load_manifest(self.directory)
        count = len(self.manifest.samples)
        self.offsets = np.zeros(count, dtype=np.int64)
        self.sizes = np.zeros(count, dtype=np.int64)
        self.shard_of = np.zeros(count, dtype=np.int32)
        for number, shard in enumerate(self.manifest.shards):
            self._check_shard(number, shard)

    def _check_shard(self, number: int, shard) -> None:
        tar, index = self.directory / shard.file, self.directory / shard.index
        if not tar.is_file():
            raise VireidError(tar, "missing shard")
        if tar.stat().st_size != shard.bytes:
            raise VireidError(tar, f"{tar.stat().st_size} bytes, the manifest says {shard.bytes}"
                              " (truncated or replaced: run vireid-shard verify)")
        if not index.is_file():
            raise VireidError(index, "missing index file")
        if sha256_file(index) != shard.index_sha256:
            raise VireidError(index, "does not match the manifest (stale index)")
        extension = self.manifest.encoding.extension
        groups = parse_index(index)
        if len(groups) != shard.count:
            raise VireidError(index, f"{len(groups)} samples, the manifest says {shard.count}")
        for position, group in enumerate(groups):
            sample = shard.first + position
            image = [m for m in group if split_member(m.name)[1] == extension]
            key = split_member(group[0].name)[0]
            if not image or key != self.manifest.samples[sample].key:
                raise VireidError(index, f"sample {position} is {key!r}, the manifest expects "
                                  f"{self.manifest.samples[sample].key!r} with a .{extension}")
            self.offsets[sample] = image[0].offset
            self.sizes[sample] = image[0].size
            self.shard_of[sample] = number

    def read(self, sample: int) -> np.ndarray:
        data = os.pread(self._descriptor(sample), int(self.sizes[sample]),
                        int(self.offsets[sample]))
        return np.frombuffer(data, dtype=np.uint8)

    def read_images(self, samples) -> list[np.ndarray]:
        """The stored bytes of ``samples``, each checked to start and end like a whole image
        of the shard's encoding (``structure_problem``): DALI's CPU decoder can crash the
        process on bytes that are not one, so such bytes never reach it."""
        encoding = self.manifest.encoding
        data = [self.read(int(s)) for s in samples]
        for sample, image in zip(samples, data):
            problem = structure_problem(image, encoding)
            if problem:
                raise self.damaged(int(sample), problem)
        return data

    def damaged(self, sample: int, problem: str) -> VireidError:
        """The one-line error for a damaged stored image: its tar, its key, the check."""
        key = self.manifest.samples[sample].key
        verb = "" if problem.startswith("is ") else "cannot be decoded "
        detail = problem if not verb else f"({problem[:120]})"
        return VireidError(self.shard_path(sample), f"image {key} {verb}{detail}: damaged "
                           f"shard, run `vireid-shard verify --deep {self.directory}`")

    def prefetch(self, samples) -> None:
        """Ask the OS to start reading these samples into the page cache in the background
        (``posix_fadvise`` WILLNEED; a no-op where that call does not exist), so that reading
        them later does not wait for the disk."""
        if not hasattr(os, "posix_fadvise"):
            return
        for sample in samples:
            os.posix_fadvise(self._descriptor(sample), int(self.offsets[sample]),
                             int(self.sizes[sample]), os.POSIX_FADV_WILLNEED)

    def _descriptor(self, sample: int) -> int:
        number = int(self.shard_of[sample])
        descriptor = self._files.get(number)
        if descriptor is None:
            descriptor = self._files[number] = os.open(self.shard_path(sample), os.O_RDONLY)
        return descriptor

    def shard_path(self, sample: int) -> Path:
        """The tar file that holds global sample ``sample``."""
        return self.directory / self.manifest.shards[int(self.shard_of[sample])].file

    def close(self) -> None:
        for descriptor in self._files.values():
            os.close(descriptor)
        self._files.clear()

    def __enter__(self) -> ShardBytes:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):
        """Picklable for worker processes: descriptors are reopened there."""
        state = self.__dict__.copy()
        state["_files"] = {}
        return state
