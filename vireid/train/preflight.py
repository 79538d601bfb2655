"""What a run checks about its data before the first step, and while it runs.

- The shards: the training view and the evaluation protocol exist (a wrong ``--protocol``
  must not surface after a whole epoch), and every tar's sha256 matches the manifest.
- The identity of the data a run trains on: dataset, the manifest's sha256 and the training
  view. A resumed run compares these, not the path as typed (``../shards/regdb``, an absolute
  path or a spelled-out default trial name the same data).
- The manifest while training: rebuilding the shards under a running training would make
  later evaluations score other data, so the run stops when manifest.json changes.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from vireid.errors import VireidError
from vireid.shards.checksums import check_checksums
from vireid.shards.manifest import load_manifest
from vireid.shards.tario import sha256_file
from vireid.train.evaluation import scoring_plan


@dataclass(frozen=True)
class DataIdentity:
    dataset: str
    manifest_sha256: str
    view: str
    image_size: tuple[int, int]  # (height, width) of the stored images

    def to_dict(self) -> dict:
        return {**asdict(self), "image_size": list(self.image_size)}


def check_data(config, verify: bool) -> DataIdentity:
    """The shards can serve this run (and, with ``verify``, hold the bytes the manifest
    promises); returns the identity of the data."""
    shards = config.run.shards
    manifest = load_manifest(shards)
    view = manifest.training_view(config.sampling.trial)
    scoring_plan(manifest, config.evaluation.protocol, view.name)
    if verify:
        check_checksums(shards, manifest)
    digest = sha256_file(Path(shards) / "manifest.json")
    return DataIdentity(manifest.dataset, digest, view.name, (manifest.height, manifest.width))


def check_same_data(identity: DataIdentity, state: dict, checkpoint: Path, shards) -> None:
    """A resumed run trains on the data it started with."""
    saved = state.get("data")
    if saved is None:  # checkpoints before the data identity: compare resolved paths
        before = Path(state["config"]["shards"]).resolve()
        if before != Path(shards).resolve():
            raise VireidError(checkpoint, f"was trained on {before}, not {shards}")
        return
    mine = identity.to_dict()
    for key, what in (("dataset", "dataset"), ("view", "training view"),
                      ("image_size", "image size"), ("manifest_sha256", "shard content")):
        if saved.get(key) != mine[key]:
            raise VireidError(checkpoint, f"was trained on another {what} ({saved.get(key)} "
                              f"≠ {mine[key]} in {shards})")


class ManifestWatch:
    """``check()`` raises once manifest.json was replaced or rewritten since ``__init__``."""

    def __init__(self, shards):
        self.path = Path(shards) / "manifest.json"
        self.stamp = _stamp(self.path)

    def check(self) -> None:
        if _stamp(self.path) != self.stamp:
            raise VireidError(self.path, "changed while this run was training (were the shards "
                              "rebuilt?): stopping, the last checkpoint is kept")


def _stamp(path: Path) -> tuple | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns
