"""Saved test features (``vireid-test --save-features`` / ``--features``): one ``.npz`` per
evaluation, so a protocol can be re-scored (or re-ranked) without the model.

Arrays: ``samples`` (global sample numbers, int64, sorted), ``pool`` and ``fc`` (float32,
L2-normalised, one row per sample), and per sample ``pid``, ``cam``, ``modality`` (its value,
e.g. "visible") and ``key`` (the shard key); scalars ``protocol``, ``checkpoint``, ``view``
(the trained view, "" when unknown) and ``flip`` (whether the features are flip-averaged;
files written before it: False). Written whole or not at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vireid.errors import VireidError
from vireid.eval.features import Features

ARRAYS = ("samples", "pool", "fc", "pid", "cam", "modality", "key", "protocol", "checkpoint",
          "view", "flip")
OPTIONAL = ("flip",)  # absent from files written before it


@dataclass(frozen=True)
class SavedFeatures:
    """Features read back, with the keys they were extracted from and where they came from."""

    features: Features
    keys: np.ndarray
    protocol: str
    checkpoint: str
    view: str | None
    flip: bool = False


def save_features(path, features: Features, manifest, protocol: str, checkpoint,
                  view: str | None, flip: bool = False) -> None:
    """Write ``features`` and their samples' metadata to ``path`` (temporary file, rename)."""
    path = Path(path)
    samples = [manifest.samples[i] for i in features.samples]
    arrays = {
        "samples": np.asarray(features.samples, dtype=np.int64),
        "pool": np.asarray(features.pool, dtype=np.float32),
        "fc": np.asarray(features.fc, dtype=np.float32),
        "pid": np.array([s.pid for s in samples], dtype=np.int64),
        "cam": np.array([s.cam for s in samples], dtype=np.int64),
        "modality": np.array([s.modality.value for s in samples], dtype=str),
        "key": np.array([s.key for s in samples], dtype=str),
        "protocol": np.array(protocol), "checkpoint": np.array(str(checkpoint)),
        "view": np.array(view or ""), "flip": np.array(bool(flip)),
    }
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}.npz")
    try:
        np.savez(partial, **arrays)
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise VireidError(path, f"cannot write: {error.strerror or error}") from None


def load_features(path) -> SavedFeatures:
    """Read a file written by ``save_features``; one clear error for anything else."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in ARRAYS if name not in data.files + list(OPTIONAL)]
            if missing:
                raise VireidError(path, f"not a vireid features file (no {', '.join(missing)})")
            arrays = {name: data[name] for name in ARRAYS if name in data.files}
    except (OSError, ValueError) as error:
        raise VireidError(path, f"cannot read features: {error}") from None
    features = Features(arrays["samples"], arrays["pool"], arrays["fc"])
    return SavedFeatures(features, arrays["key"], str(arrays["protocol"]),
                         str(arrays["checkpoint"]), str(arrays["view"]) or None,
                         bool(arrays.get("flip", False)))


def check_covers(saved: SavedFeatures, manifest, wanted: dict, path) -> None:
    """Refuse features that lack a test image of the protocol, or whose samples are other
    images than these shards' (features saved from other shards): the keys must agree."""
    needed = sorted({int(i) for numbers in wanted.values() for i in numbers})
    stored = dict(zip(saved.features.samples.tolist(), saved.keys.tolist()))
    bad = [i for i in needed if stored.get(i) != manifest.samples[i].key]
    if bad:
        raise VireidError(path, f"does not cover this protocol's test images ({len(bad)} of "
                          f"{len(needed)} missing or different, e.g. sample {bad[0]} "
                          f"{manifest.samples[bad[0]].key}): saved from other shards?")
