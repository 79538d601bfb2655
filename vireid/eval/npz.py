"""An ``.npz`` read without trusting it: every array's header first, its data only after.

``np.load`` allocates what a header claims before reading a byte of data (a header claiming
10^12 rows asks for petabytes) and raises a zoo of exception types on damaged files. Here
each member's header is read and checked (npy version, no Python objects, data size equal to
what the member holds), the caller checks the shapes and dtypes (``check``), and only then is
the data read, to exactly the size the header states. Any damage is one ``VireidError``.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vireid.errors import VireidError

HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0}
# what damaged archives raise: zipfile (BadZipFile, RuntimeError for encrypted members,
# NotImplementedError for unknown compression), zlib, numpy's header parser (ValueError)
READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error,
               NotImplementedError, RuntimeError)


@dataclass(frozen=True)
class Header:
    """One member's npy header: what its array will be, and where its data starts."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_npz(path, names: tuple[str, ...],
             check: Callable[[dict[str, Header]], None]) -> dict[str, np.ndarray]:
    """The arrays ``names`` that ``path`` holds; ``check(headers)`` raises to refuse them
    before any data is read."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            headers = {name: _header(archive, members[f"{name}.npy"], os.path.getsize(path))
                       for name in names if f"{name}.npy" in members}
            check(headers)
            return {name: _data(archive, members[f"{name}.npy"], header)
                    for name, header in headers.items()}
    except zipfile.BadZipFile as error:
        reason = "not an .npz archive (or a truncated one)" \
            if "not a zip file" in str(error) else f"damaged ({error})"
        raise VireidError(path, f"cannot read features: {reason}") from None
    except READ_ERRORS as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else \
            str(error) or type(error).__name__
        raise VireidError(path, f"cannot read features: damaged or truncated ({reason})") \
            from None


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, archive_size: int) -> Header:
    name = info.filename
    if info.compress_size > archive_size:
        raise ValueError(f"{name} claims {info.compress_size:,} bytes in a file of "
                         f"{archive_size:,}")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version not in HEADER_READERS:
            raise ValueError(f"{name}: npy format {version[0]}.{version[1]} is not supported")
        shape, fortran, dtype = HEADER_READERS[version](member)
        header = Header(tuple(int(n) for n in shape), np.dtype(dtype), bool(fortran),
                        member.tell())
    if header.dtype.hasobject:
        raise ValueError(f"{name} holds Python objects, never written by vireid")
    if header.nbytes != info.file_size - header.offset:
        raise ValueError(f"{name}: its header promises {header.nbytes:,} bytes of data "
                         f"({header.shape} {header.dtype}), it holds "
                         f"{info.file_size - header.offset:,}")
    return header


def _data(archive: zipfile.ZipFile, info: zipfile.ZipInfo, header: Header) -> np.ndarray:
    with archive.open(info) as member:
        member.read(header.offset)
        data = member.read(header.nbytes)
        if len(data) != header.nbytes or member.read(1):
            raise ValueError(f"{info.filename} holds {len(data):,} bytes of data, its header "
                             f"says {header.nbytes:,}")
    array = np.frombuffer(data, dtype=header.dtype)
    return array.reshape(header.shape, order="F" if header.fortran else "C")
