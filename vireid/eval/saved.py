"""Saved test features (``vireid-test --save-features`` / ``--features``): one ``.npz`` per
evaluation, so a protocol can be re-scored (or re-ranked) without the model.

Arrays: ``samples`` (global sample numbers, int64, sorted), ``pool`` and ``fc`` (float32,
L2-normalised, one row per sample), and per sample ``pid``, ``cam``, ``modality`` (its value,
e.g. "visible") and ``key`` (the shard key); scalars ``protocol``, ``checkpoint``, ``view``
(the trained view, "" when unknown), ``flip`` (whether the features are flip-averaged;
files written before it: False) and ``method`` (the model's training method, which names the
rows scored by default; "" or absent: unknown). Written whole or not at all; read back only
after every array's header fits this layout (``vireid.eval.npz``), and only if every feature
is finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vireid.errors import VireidError
from vireid.eval.features import Features, check_finite
from vireid.eval.npz import read_npz
from vireid.files import replaced_atomically

# array → (dimensions, dtype kinds); a dimension of 1 or 2 has one row per sample
SHAPES = {"samples": (1, "iu"), "pool": (2, "f"), "fc": (2, "f"), "pid": (1, "iu"),
          "cam": (1, "iu"), "modality": (1, "U"), "key": (1, "U"), "protocol": (0, "U"),
          "checkpoint": (0, "U"), "view": (0, "U"), "flip": (0, "b"), "method": (0, "U")}
ARRAYS = tuple(SHAPES)
OPTIONAL = ("flip", "method")  # absent from files written before them
MAX_FEATURE_DIM = 1 << 16
MAX_ITEM = {"U": 4 * 4096}  # bytes per element; text: up to 4,096 characters


@dataclass(frozen=True)
class SavedFeatures:
    """Features read back, with the keys they were extracted from and where they came from."""

    features: Features
    keys: np.ndarray
    protocol: str
    checkpoint: str
    view: str | None
    flip: bool = False
    method: str | None = None


def save_features(path, features: Features, manifest, protocol: str, checkpoint,
                  view: str | None, flip: bool = False, method: str | None = None) -> None:
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
        "method": np.array(str(method or "")),
    }
    try:
        with replaced_atomically(path, suffix=".npz") as partial:
            np.savez(partial, **arrays)
    except OSError as error:
        raise VireidError(path, f"cannot write: {error.strerror or error}") from None


def load_features(path, max_rows: int | None = None) -> SavedFeatures:
    """Read a file written by ``save_features``; one clear error for anything else. Every
    array's shape and dtype is checked before its data is read (at most ``max_rows``
    samples: the test images of the shards), then the samples' order and that every
    feature is finite."""
    arrays = read_npz(path, ARRAYS, lambda headers: check_headers(headers, path, max_rows))
    samples = arrays["samples"].astype(np.int64)
    if samples[0] < 0 or np.any(np.diff(samples) <= 0):
        raise VireidError(path, "samples are not increasing sample numbers: not written by "
                          "vireid-test --save-features")
    features = Features(samples, arrays["pool"].astype(np.float32),
                        arrays["fc"].astype(np.float32))
    check_finite(features, path, "holds")
    return SavedFeatures(features, arrays["key"], str(arrays["protocol"]),
                         str(arrays["checkpoint"]), str(arrays["view"]) or None,
                         bool(arrays.get("flip", False)), str(arrays.get("method", "")) or None)


def check_headers(headers: dict, path, max_rows: int | None) -> None:
    """Each array of ``SHAPES``: its dimensions, its kind of dtype and its length."""
    missing = [name for name in ARRAYS if name not in headers and name not in OPTIONAL]
    if missing:
        raise VireidError(path, f"not a vireid features file (no {', '.join(missing)})")
    rows = headers["samples"].shape[0] if headers["samples"].shape else 0
    if rows == 0 or (max_rows is not None and rows > max_rows):
        raise VireidError(path, f"holds {rows:,} samples; the shards have {max_rows:,} images"
                          if rows else "holds no samples")
    for name, header in headers.items():
        dims, kinds = SHAPES[name]
        if not _fits(header, dims, kinds, rows):
            raise VireidError(path, f"{name} is a {header.shape} {header.dtype} array, not "
                              f"{_expected(dims, kinds, rows)}: not written by vireid-test "
                              "--save-features")


def _fits(header, dims: int, kinds: str, rows: int) -> bool:
    shape, dtype = header.shape, header.dtype
    if len(shape) != dims or (dims and shape[0] != rows):
        return False
    if dims == 2 and not 1 <= shape[1] <= MAX_FEATURE_DIM:
        return False
    return dtype.kind in kinds and dtype.itemsize <= MAX_ITEM.get(dtype.kind, 8)


def _expected(dims: int, kinds: str, rows: int) -> str:
    if dims == 0:
        return f"a single {'text' if kinds == 'U' else 'boolean'}"
    what = {"iu": "integers", "f": "floats", "U": "texts"}[kinds]
    return f"{rows:,} {'rows of floats' if dims == 2 else what}"


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
