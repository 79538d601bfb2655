"""``manifest.json``: the versioned description of a shard folder, written last.

Schema ``vireid.shards`` version 1 (see ``shards/README.md`` for the field list). Samples are
numbered globally in storage order (visible shards first); training views and protocol trials
refer to those numbers. Fields added later (``image.chroma``, ``pixels``) read as None
(unknown) from manifests written before them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from vireid.constants import MANIFEST_NAME, MANIFEST_SCHEMA, MANIFEST_VERSION
from vireid.errors import VireidError
from vireid.records import LabeledSamples, Modality, Protocol, TrainView, Trial
from vireid.shards.encode import Chroma, Encoding
from vireid.shards.manifest_checks import BadEntry, check_manifest
from vireid.shards.pixels import PixelStats

SAMPLE_COLUMNS = ("key", "path", "pid", "cam", "modality", "width", "height", "shard")


@dataclass(frozen=True)
class ShardInfo:
    file: str
    index: str
    modality: Modality
    first: int
    count: int
    bytes: int
    sha256: str
    index_sha256: str


@dataclass(frozen=True)
class Sample:
    """One stored image: its key, source record, ORIGINAL size and shard number."""

    key: str
    path: str
    pid: int
    cam: int
    modality: Modality
    width: int
    height: int
    shard: int


@dataclass(frozen=True)
class IdentityRange:
    """Samples ``start`` .. ``stop - 1`` are the images of ``pid`` in ``modality``."""

    modality: Modality
    pid: int
    start: int
    stop: int


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class Manifest:
    dataset: str
    source: str
    width: int
    height: int
    encoding: Encoding
    quality: int
    shards: tuple[ShardInfo, ...]
    samples: tuple[Sample, ...]
    identities: tuple[IdentityRange, ...]
    train_views: tuple[TrainView, ...]
    protocols: tuple[Protocol, ...]
    default_protocol: str
    skipped: tuple[Skipped, ...]
    created_by: dict
    # protocol trial → training view, for datasets trained per trial (RegDB); empty: one view
    trial_views: tuple[tuple[int, str], ...] = ()
    chroma: Chroma | None = None  # JPEG chroma sampling; None: png/raw, or not recorded
    pixels: PixelStats | None = None  # stored vs exact resized pixels; None: not recorded

    def training_view(self, trial: int | None) -> TrainView:
        """The view a model trains on. Datasets trained per trial have one per protocol
        trial (default: the first); the others have one view, ``train``, and no trials to
        choose from."""
        if not self.trial_views:
            if trial is not None:
                raise VireidError(self.dataset, f"has one training set; trial {trial} names a "
                                  "per-trial training set (RegDB's)")
            return self.view("train")
        views = dict(self.trial_views)
        chosen = self.trial_views[0][0] if trial is None else trial
        if chosen not in views:
            raise VireidError(self.dataset, f"no training set for trial {chosen} (trials "
                              f"{', '.join(str(t) for t in views)})")
        return self.view(views[chosen])

    def trained_trial(self, view_name: str) -> int | None:
        """The protocol trial a model trained on ``view_name`` is scored on (None: every
        trial, for datasets with one training set)."""
        return next((t for t, name in self.trial_views if name == view_name), None)

    def protocol(self, name: str) -> Protocol:
        for protocol in self.protocols:
            if protocol.name == name:
                return protocol
        names = ", ".join(p.name for p in self.protocols)
        raise VireidError(name, f"no such protocol in this {self.dataset} shard set ({names})")

    def trial(self, name: str, trial: int) -> Trial:
        protocol = self.protocol(name)
        for candidate in protocol.trials:
            if candidate.trial == trial:
                return candidate
        trials = ", ".join(str(t.trial) for t in protocol.trials)
        raise VireidError(name, f"no trial {trial} (trials: {trials})")

    def view(self, name: str) -> TrainView:
        for view in self.train_views:
            if view.name == name:
                return view
        names = ", ".join(v.name for v in self.train_views)
        raise VireidError(name, f"no such training view ({names})")

    def to_json(self) -> str:
        document = {
            "schema": MANIFEST_SCHEMA,
            "version": MANIFEST_VERSION,
            "dataset": self.dataset,
            "source": self.source,
            "image": {"width": self.width, "height": self.height, "channels": 3,
                      "encoding": self.encoding.value, "quality": self.quality,
                      "chroma": self.chroma.value if self.chroma else None,
                      "resample": "lanczos"},
            "created_by": self.created_by,
            "shards": [_shard_json(s) for s in self.shards],
            "samples": {c: [_plain(getattr(s, c)) for s in self.samples] for c in SAMPLE_COLUMNS},
            "identities": [[r.modality.value, r.pid, r.start, r.stop] for r in self.identities],
            "train_views": {v.name: _view_json(v) for v in self.train_views},
            "protocols": {p.name: _protocol_json(p) for p in self.protocols},
            "default_protocol": self.default_protocol,
            "trial_views": {str(t): name for t, name in self.trial_views},
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }
        if self.pixels is not None:
            document["pixels"] = self.pixels.__dict__
        return json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n"


def write_manifest(manifest: Manifest, directory: Path) -> Path:
    """Write via a temporary file and rename, so a reader never sees half a manifest."""
    path = directory / MANIFEST_NAME
    partial = directory / f".{MANIFEST_NAME}.partial"
    partial.write_text(manifest.to_json())
    os.replace(partial, path)
    return path


def load_manifest(directory: Path) -> Manifest:
    """Read and check ``directory/manifest.json``; any problem is a one-line VireidError.

    Beyond the schema, every entry is checked (``vireid.shards.manifest_checks``): file names
    stay inside the folder and every index is in range, so nothing downstream trusts a
    damaged or hostile manifest.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise VireidError(directory, "not a shard folder (missing)")
    path = directory / MANIFEST_NAME
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise VireidError(path, "missing (not a vireid shard folder, or an unfinished build)") \
            from None
    except (OSError, ValueError) as error:
        raise VireidError(path, f"not a readable JSON manifest ({error})") from None
    if not isinstance(document, dict) or document.get("schema") != MANIFEST_SCHEMA:
        raise VireidError(path, f"not a {MANIFEST_SCHEMA} manifest")
    if document.get("version") != MANIFEST_VERSION:
        raise VireidError(path, f"manifest version {document.get('version')!r}; this vireid "
                          f"reads version {MANIFEST_VERSION}: rebuild the shards")
    try:
        manifest = _from_document(document)
        check_manifest(manifest)
    except BadEntry as error:
        raise VireidError(path, f"bad entry: {error}") from None
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise VireidError(path, f"malformed manifest ({type(error).__name__}: {error})") from None
    return manifest


def _from_document(doc: dict) -> Manifest:
    image = doc["image"]
    columns = doc["samples"]
    count = len(columns["key"])
    if any(len(columns[c]) != count for c in SAMPLE_COLUMNS):
        raise ValueError("sample columns differ in length")
    samples = tuple(
        Sample(*(columns[c][i] for c in SAMPLE_COLUMNS[:4]), Modality(columns["modality"][i]),
               columns["width"][i], columns["height"][i], columns["shard"][i])
        for i in range(count)
    )
    return Manifest(
        dataset=doc["dataset"], source=doc["source"], width=image["width"],
        height=image["height"], encoding=Encoding(image["encoding"]), quality=image["quality"],
        shards=tuple(ShardInfo(**{**s, "modality": Modality(s["modality"])})
                     for s in doc["shards"]),
        samples=samples,
        identities=tuple(IdentityRange(Modality(m), p, a, b) for m, p, a, b in doc["identities"]),
        train_views=tuple(_view(name, v) for name, v in doc["train_views"].items()),
        protocols=tuple(_protocol(name, p) for name, p in doc["protocols"].items()),
        default_protocol=doc["default_protocol"],
        skipped=tuple(Skipped(**s) for s in doc["skipped"]),
        created_by=doc["created_by"],
        trial_views=_trial_views(doc),
        chroma=_chroma(image.get("chroma")),
        pixels=None if doc.get("pixels") is None else PixelStats(**doc["pixels"]),
    )


def _chroma(value) -> Chroma | None:
    """``image.chroma``: absent or null (png/raw, or written before the field) → None."""
    if value is None:
        return None
    if value not in Chroma.values():
        raise BadEntry(f"image.chroma {value!r} is not one of {', '.join(Chroma.values())} "
                       "or null")
    return Chroma(value)


def _trial_views(doc: dict) -> tuple[tuple[int, str], ...]:
    """``trial_views`` as written; manifests written before the field named RegDB's per-trial
    views ``trial<N>``, so those are read as such."""
    if "trial_views" in doc:
        return tuple(sorted((int(t), name) for t, name in doc["trial_views"].items()))
    if doc["dataset"] == "regdb":
        return tuple(sorted((int(name[5:]), name) for name in doc["train_views"]
                            if name.startswith("trial") and name[5:].isdigit()))
    return ()


def _plain(value):
    return value.value if isinstance(value, Modality) else value


def _shard_json(shard: ShardInfo) -> dict:
    return {**shard.__dict__, "modality": shard.modality.value}


def _view_json(view: TrainView) -> dict:
    return {m.value: {"samples": list(s.samples), "labels": list(s.labels)}
            for m, s in ((Modality.VISIBLE, view.visible), (Modality.INFRARED, view.infrared))}


def _view(name: str, doc: dict) -> TrainView:
    def part(m):
        return LabeledSamples(tuple(doc[m]["samples"]), tuple(doc[m]["labels"]))
    return TrainView(name, part("visible"), part("infrared"))


def _protocol_json(protocol: Protocol) -> dict:
    return {
        "metric": protocol.metric,
        "query_modality": protocol.query_modality.value,
        "gallery_modality": protocol.gallery_modality.value,
        "trials": [{"trial": t.trial, "query": list(t.query), "query_pids": list(t.query_pids),
                    "gallery": list(t.gallery), "gallery_pids": list(t.gallery_pids)}
                   for t in protocol.trials],
    }


def _protocol(name: str, doc: dict) -> Protocol:
    trials = tuple(Trial(t["trial"], tuple(t["query"]), tuple(t["query_pids"]),
                         tuple(t["gallery"]), tuple(t["gallery_pids"])) for t in doc["trials"])
    return Protocol(name, doc["metric"], Modality(doc["query_modality"]),
                    Modality(doc["gallery_modality"]), trials)
