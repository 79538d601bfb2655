"""Raw dataset layouts → records. One module per dataset; its docstring is its card."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

from vireid.datasets import llcm, regdb, sysu
from vireid.errors import VireidError
from vireid.records import RawDataset

READERS: MappingProxyType[str, Callable[[Path], RawDataset]] = MappingProxyType(
    {sysu.NAME: sysu.read, regdb.NAME: regdb.read, llcm.NAME: llcm.read}
)


def list_datasets() -> list[str]:
    return sorted(READERS)


def read_dataset(name: str, root: Path) -> RawDataset:
    """Read the raw tree of dataset ``name`` at ``root`` (no pixels are touched)."""
    if name not in READERS:
        raise VireidError(name, f"unknown dataset (choose from {', '.join(list_datasets())})")
    return READERS[name](Path(root))
