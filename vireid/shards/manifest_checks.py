"""Rules a manifest must follow before anything trusts it (``load_manifest`` and the builder).

A manifest is input like any other: ``verify`` opens the files it names and training indexes
arrays with its numbers. So shard and index names must be plain file names inside the folder
(no ``/``, no ``..``, not absolute), and every number that indexes something is range-checked:
a sample's shard, shard and identity sample ranges, training-view and protocol sample numbers,
training labels (0..C-1, C = the view's number of classes). The ``pixels`` entry, when
present, counts every stored image, with a largest |Δ| of 0..255 and a mean of 0..max.
Example: a shard named ``../../etc/passwd`` → ``BadEntry("shards[0].file '../../etc/passwd'
is not a plain file name inside the shard folder")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from vireid.shards.encode import size_problem

if TYPE_CHECKING:
    from vireid.records import Protocol, TrainView
    from vireid.shards.manifest import Manifest, ShardInfo
    from vireid.shards.pixels import PixelStats


class BadEntry(ValueError):
    """One manifest entry that breaks a rule; the message names the entry."""


def check_manifest(manifest: Manifest) -> None:
    """Raise BadEntry for the first entry that breaks a rule of the module docstring."""
    if problem := size_problem(_int(manifest.width, "image.width"),
                               _int(manifest.height, "image.height")):
        raise BadEntry(f"image: {problem}")
    samples = len(manifest.samples)
    for number, shard in enumerate(manifest.shards):
        _check_shard(shard, f"shards[{number}]", samples)
    for column in ("pid", "cam", "width", "height"):
        _ints([getattr(s, column) for s in manifest.samples], f"samples.{column}")
    _indexes([s.shard for s in manifest.samples], len(manifest.shards), "samples.shard",
             "shards")
    for number, identity in enumerate(manifest.identities):
        _range(identity.start, identity.stop, samples, f"identities[{number}]")
        _int(identity.pid, f"identities[{number}].pid")
    for view in manifest.train_views:
        _check_view(view, samples)
    for protocol in manifest.protocols:
        _check_protocol(protocol, samples)
    names = [p.name for p in manifest.protocols]
    if names and manifest.default_protocol not in names:
        raise BadEntry(f"default_protocol {manifest.default_protocol!r} is not one of {names}")
    views = {view.name for view in manifest.train_views}
    for trial, view in manifest.trial_views:
        if view not in views:
            raise BadEntry(f"trial_views.{trial} {view!r} is not a training view")
    if manifest.pixels is not None:
        _check_pixels(manifest.pixels, samples)


def _check_pixels(pixels: PixelStats, samples: int) -> None:
    if not isinstance(pixels.decoder, str):
        raise BadEntry(f"pixels.decoder = {pixels.decoder!r} is not a text")
    if _int(pixels.images, "pixels.images") != samples:
        raise BadEntry(f"pixels.images = {pixels.images} is not the {samples} samples")
    if not 0 <= _int(pixels.max_abs, "pixels.max_abs") <= 255:
        raise BadEntry(f"pixels.max_abs = {pixels.max_abs} is out of range (0..255)")
    mean = pixels.mean_abs
    if type(mean) not in (int, float) or not 0 <= mean <= pixels.max_abs:
        raise BadEntry(f"pixels.mean_abs = {mean!r} is not a number in 0..max_abs "
                       f"({pixels.max_abs})")


def _check_shard(shard: ShardInfo, entry: str, samples: int) -> None:
    for field in ("file", "index"):
        _plain_name(getattr(shard, field), f"{entry}.{field}")
    _range(shard.first, shard.first + _int(shard.count, f"{entry}.count"), samples, entry,
           allow_empty=True)
    if _int(shard.bytes, f"{entry}.bytes") < 0:
        raise BadEntry(f"{entry}.bytes {shard.bytes} is negative")


def _check_view(view: TrainView, samples: int) -> None:
    classes = view.num_classes
    for modality, part in (("visible", view.visible), ("infrared", view.infrared)):
        entry = f"train_views.{view.name}.{modality}"
        _same_length(part.samples, part.labels, f"{entry}.samples", "labels")
        _indexes(part.samples, samples, f"{entry}.samples")
        _indexes(part.labels, classes, f"{entry}.labels", "classes")


def _check_protocol(protocol: Protocol, samples: int) -> None:
    for trial in protocol.trials:
        entry = f"protocols.{protocol.name}.trials[{trial.trial}]"
        for side in ("query", "gallery"):
            refs, pids = getattr(trial, side), getattr(trial, f"{side}_pids")
            _same_length(refs, pids, f"{entry}.{side}", f"{side}_pids")
            _indexes(refs, samples, f"{entry}.{side}")
            _ints(pids, f"{entry}.{side}_pids")


def _plain_name(name: object, entry: str) -> None:
    """A file name inside the folder: no separator, not ``.``/``..``, not empty or absolute."""
    if (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name
            or "\0" in name):
        raise BadEntry(f"{entry} {name!r} is not a plain file name inside the shard folder")


def _indexes(values: Sequence, size: int, entry: str, what: str = "samples") -> None:
    """Every value an integer in 0..size-1 (``size`` ``what``)."""
    _ints(values, entry)
    if values and 0 <= min(values) and max(values) < size:
        return
    for position, value in enumerate(values):
        if not 0 <= value < size:
            raise BadEntry(f"{entry}[{position}] = {value} is out of range "
                           f"(0..{size - 1}: {size} {what})")


def _range(start: object, stop: object, size: int, entry: str, allow_empty: bool = False) -> None:
    """``start``..``stop - 1`` must lie inside 0..size-1 (and hold something)."""
    _int(start, f"{entry}.start")
    _int(stop, f"{entry}.stop")
    if start == stop and not allow_empty:
        raise BadEntry(f"{entry} covers no sample ({start}..{stop - 1})")
    if not 0 <= start <= stop <= size:
        raise BadEntry(f"{entry} covers samples {start}..{stop - 1}, outside 0..{size - 1}")


def _same_length(first: Sequence, second: Sequence, entry: str, other: str) -> None:
    if len(first) != len(second):
        raise BadEntry(f"{entry} has {len(first)} entries but {other} has {len(second)}")


def _ints(values: Sequence, entry: str) -> None:
    if all(type(value) is int for value in values):
        return
    for position, value in enumerate(values):
        _int(value, f"{entry}[{position}]")


def _int(value: object, entry: str) -> int:
    if type(value) is not int:
        raise BadEntry(f"{entry} = {value!r} is not an integer")
    return value
