"""Pure bookkeeping between records and stored samples: keys and index remapping."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from vireid.errors import VireidError
from vireid.records import (
    MODALITIES,
    LabeledSamples,
    Protocol,
    RawDataset,
    Record,
    TrainView,
    Trial,
)


def sample_keys(records: Sequence[Record]) -> list[str]:
    """Readable, dot-free, unique keys in storage order: ``vis_00028_c01_00000``.

    The last field numbers the images of one (modality, pid, camera) in path order.
    """
    seen: Counter = Counter()
    keys = []
    for record in records:
        group = (record.modality, record.pid, record.cam)
        keys.append(f"{record.modality.short}_{record.pid:05d}_c{record.cam:02d}_{seen[group]:05d}")
        seen[group] += 1
    return keys


def remap_views_and_protocols(dataset: RawDataset, kept: Sequence[int]):
    """Record indices → sample indices; entries of skipped records are dropped.

    Single-shot galleries were drawn over the files as they are on disk, so the other draws
    stay identical to the original's when a bad image is skipped.
    """
    new = {old: i for i, old in enumerate(kept)}

    def pairs(refs, values):
        chosen = [(new[r], v) for r, v in zip(refs, values) if r in new]
        return tuple(r for r, _ in chosen), tuple(v for _, v in chosen)

    views = tuple(
        TrainView(v.name, LabeledSamples(*pairs(v.visible.samples, v.visible.labels)),
                  LabeledSamples(*pairs(v.infrared.samples, v.infrared.labels)))
        for v in dataset.train_views
    )
    protocols = tuple(
        Protocol(p.name, p.metric, p.query_modality, p.gallery_modality, tuple(
            Trial(t.trial, *pairs(t.query, t.query_pids), *pairs(t.gallery, t.gallery_pids))
            for t in p.trials))
        for p in dataset.protocols
    )
    return views, protocols


def check_training_ids(dataset: RawDataset, kept: Sequence[int]) -> None:
    """Refuse a build whose skipped images leave a training identity without any image of a
    modality it had: training needs both for every identity, and would fail later naming none.

    Example: every visible image of training id 12 is corrupt and ``--on-bad-image skip`` →
    ``cam1/0012/0001.jpg: training id 12 (view train) has no readable visible image left``.
    """
    kept_set = set(kept)
    skipped = len(dataset.records) - len(kept_set)
    for view in dataset.train_views:
        for modality, part in zip(MODALITIES, (view.visible, view.infrared)):
            left = {label for ref, label in zip(part.samples, part.labels) if ref in kept_set}
            lost = [ref for ref, label in zip(part.samples, part.labels) if label not in left]
            if lost:
                record = dataset.records[lost[-1]]
                raise VireidError(dataset.root / record.path, f"training id {record.pid} (view "
                                  f"{view.name}) has no readable {modality.value} image left "
                                  f"({skipped} unreadable files skipped in all): refusing to "
                                  "write shards that training cannot use")
