"""Frozen records every layer shares: raw images, training views and test protocols.

Records carry no pixels. Indices in views and trials refer to positions in
``RawDataset.records``, which readers return in storage order: per modality (visible first),
sorted by (pid, camera, relative path), so each identity's images are contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path


class Modality(str, Enum):
    VISIBLE = "visible"
    INFRARED = "infrared"

    @property
    def short(self) -> str:
        """Short tag used in shard file names and sample keys."""
        return "vis" if self is Modality.VISIBLE else "ir"


MODALITIES = (Modality.VISIBLE, Modality.INFRARED)


@dataclass(frozen=True)
class Record:
    """One raw image. ``path`` is relative to the dataset root, with '/' separators."""

    path: str
    pid: int
    cam: int
    modality: Modality

    def sort_key(self) -> tuple:
        return (MODALITIES.index(self.modality), self.pid, self.cam, self.path)


@dataclass(frozen=True)
class LabeledSamples:
    """Training images of one modality in the original's order, with the original's labels."""

    samples: tuple[int, ...]
    labels: tuple[int, ...]


@dataclass(frozen=True)
class TrainView:
    """One training set (SYSU: train+val ids; RegDB: one per trial; LLCM: the train lists)."""

    name: str
    visible: LabeledSamples
    infrared: LabeledSamples

    @property
    def num_classes(self) -> int:
        return len(set(self.visible.labels) | set(self.infrared.labels))


@dataclass(frozen=True)
class Trial:
    """Rows (query) and columns (gallery) of the distance matrix the original metric receives."""

    trial: int
    query: tuple[int, ...]
    query_pids: tuple[int, ...]
    gallery: tuple[int, ...]
    gallery_pids: tuple[int, ...]


@dataclass(frozen=True)
class Protocol:
    """A named test protocol: the metric rule set ("sysu", "regdb", "llcm") and its trials."""

    name: str
    metric: str
    query_modality: Modality
    gallery_modality: Modality
    trials: tuple[Trial, ...]


@dataclass(frozen=True)
class RawDataset:
    """Everything a reader learns from a raw tree, before any pixel is touched."""

    name: str
    root: Path
    records: tuple[Record, ...]
    train_views: tuple[TrainView, ...]
    protocols: tuple[Protocol, ...]
    default_protocol: str
    # datasets trained per trial (RegDB): protocol trial → its training view; a model trained
    # on that view is scored on that trial only. Empty: one view ("train"), scored on every
    # trial.
    trial_views: tuple[tuple[int, str], ...] = ()
