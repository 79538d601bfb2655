"""RawDataset → shard folder: every image resized once, stored once, grouped by identity.

Encoding runs on all cores (process pool, results consumed in record order), tars are written
sequentially in the main process, and the whole folder is built beside ``out_dir`` under a
temporary name, locked, and renamed at the end (``vireid.shards.staging``): an interrupted or
failed build never leaves a folder that looks complete, and an existing ``out_dir`` is only
replaced with ``overwrite=True`` when it is a shard folder or empty (``vireid.shards.safety``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import PIL

from vireid import __version__
from vireid.constants import (
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    JPEG_QUALITY,
    MANIFEST_NAME,
    SHARD_MAX_MEGABYTES,
    SHARD_MAX_SAMPLES,
)
from vireid.errors import VireidError
from vireid.files import available_cores
from vireid.records import RawDataset, Record
from vireid.shards.encode import Chroma, Encoded, EncodeTask, Encoding, size_problem
from vireid.shards.layout import check_training_ids, remap_views_and_protocols, sample_keys
from vireid.shards.manifest import (
    IdentityRange,
    Manifest,
    Sample,
    ShardInfo,
    Skipped,
    write_manifest,
)
from vireid.shards.manifest_checks import BadEntry, check_manifest
from vireid.shards.pixels import PixelTally
from vireid.shards.pool import Encode, encoder
from vireid.shards.safety import linked_inputs
from vireid.shards.staging import staged_output
from vireid.shards.tario import BLOCK, TarWriter, sha256_file, write_index

Progress = Callable[[int], None]
# Most tar bytes a sample adds besides its data: two members (image, JSON), each a one-block
# header plus under one block of padding. Counted so a shard stays under --shard-mb.
SAMPLE_TAR_OVERHEAD = 2 * 2 * BLOCK  # 2048 bytes


@dataclass(frozen=True)
class BuildOptions:
    width: int = IMAGE_WIDTH
    height: int = IMAGE_HEIGHT
    encoding: Encoding = Encoding.JPEG
    quality: int = JPEG_QUALITY
    chroma: Chroma = Chroma.YUV444  # JPEG only: full colour resolution
    max_samples: int = SHARD_MAX_SAMPLES
    max_megabytes: float = SHARD_MAX_MEGABYTES
    workers: int = 0  # 0: every available core
    skip_bad_images: bool = False
    overwrite: bool = False



def build_shards(dataset: RawDataset, out_dir: Path, options: BuildOptions,
                 progress: Progress | None = None) -> Manifest:
    """Write the shard folder ``out_dir`` for ``dataset`` and return its manifest.

    Every check on the output (rules, lock, a first write) runs before any image is encoded.
    The encoding processes start before the lock is taken, so none of them can hold it.
    """
    out_dir = Path(out_dir)
    if problem := size_problem(options.width, options.height):
        raise VireidError(out_dir, problem)
    if not options.skip_bad_images and not dataset.records:
        raise VireidError(dataset.root, "no images found")
    linked = linked_inputs(dataset.root, [record.path for record in dataset.records])
    with encoder(options.workers or available_cores(), dataset.root) as encode, \
            staged_output(out_dir, dataset.root, options.overwrite, linked) as stage:
        manifest = _write_folder(dataset, stage.partial, options, encode,
                                 progress or (lambda n: None))
        _self_check(manifest, dataset.root)
        write_manifest(manifest, stage.partial)
        stage.commit()
    return manifest


def _self_check(manifest: Manifest, root: Path) -> None:
    """Never write a manifest that ``load_manifest`` would refuse."""
    try:
        check_manifest(manifest)
    except BadEntry as error:
        raise VireidError(root, f"the {MANIFEST_NAME} to write breaks a rule ({error})") \
            from None


def _write_folder(dataset: RawDataset, folder: Path, options: BuildOptions, encode: Encode,
                  progress: Progress) -> Manifest:
    with _ShardSet(folder, options) as writer:  # every tar closed here, even on an error
        kept, samples, skipped, pixels = _store_images(dataset, writer, options, encode,
                                                       progress)
    if not samples:
        raise VireidError(dataset.root, "no readable images")
    check_training_ids(dataset, kept)
    views, protocols = remap_views_and_protocols(dataset, kept)
    return Manifest(
        dataset=dataset.name, source=dataset.root.name, width=options.width,
        height=options.height, encoding=options.encoding, quality=options.quality,
        chroma=options.chroma if options.encoding is Encoding.JPEG else None,
        pixels=pixels.stats(options.encoding), shards=writer.finish(), samples=tuple(samples),
        identities=_identities(samples),
        train_views=views, protocols=protocols, default_protocol=dataset.default_protocol,
        skipped=tuple(skipped),
        created_by={"vireid": __version__, "pillow": PIL.__version__},
        trial_views=dataset.trial_views,
    )


def _store_images(dataset: RawDataset, writer: _ShardSet, options: BuildOptions,
                  encode: Encode, progress: Progress
                  ) -> tuple[list[int], list[Sample], list[Skipped], PixelTally]:
    """Encode every record and add it to the shards; return kept record indices, samples,
    skipped files (an unreadable image stops the build unless ``skip_bad_images``) and the
    kept images' pixel differences."""
    keys = sample_keys(dataset.records)
    tasks = (EncodeTask(str(dataset.root / r.path), options.width, options.height,
                        options.encoding, options.quality, options.chroma)
             for r in dataset.records)
    kept: list[int] = []
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    pixels = PixelTally(options.width * options.height * 3)
    for i, (record, result) in enumerate(zip(dataset.records, encode(tasks))):
        progress(1)
        if result.error:
            if not options.skip_bad_images:
                raise VireidError(dataset.root / record.path, result.error)
            skipped.append(Skipped(record.path, result.error))
            continue
        shard = writer.add(keys[i], record, result, options.encoding)
        kept.append(i)
        pixels.add(result)
        samples.append(Sample(keys[i], record.path, record.pid, record.cam,
                              record.modality, *result.source_size, shard))
    return kept, samples, skipped, pixels


def _identities(samples: list[Sample]) -> tuple[IdentityRange, ...]:
    ranges: list[IdentityRange] = []
    for i, sample in enumerate(samples):
        last = ranges[-1] if ranges else None
        if last and (last.modality, last.pid) == (sample.modality, sample.pid):
            ranges[-1] = IdentityRange(last.modality, last.pid, last.start, i + 1)
        else:
            ranges.append(IdentityRange(sample.modality, sample.pid, i, i + 1))
    return tuple(ranges)


class _ShardSet:
    """Rolls tar files per modality and size limits; records what each one holds."""

    def __init__(self, folder: Path, options: BuildOptions):
        self.folder = folder
        self.max_samples = options.max_samples
        self.max_bytes = int(options.max_megabytes * 1024 * 1024)
        self.shards: list[dict] = []
        self.writer: TarWriter | None = None
        self.total = 0

    def add(self, key: str, record: Record, encoded: Encoded, encoding: Encoding) -> int:
        meta = json.dumps({"pid": record.pid, "cam": record.cam,
                           "modality": record.modality.value, "path": record.path,
                           "width": encoded.source_size[0], "height": encoded.source_size[1]},
                          sort_keys=True, separators=(",", ":")).encode()
        size = len(encoded.data) + len(meta) + SAMPLE_TAR_OVERHEAD
        current = self.shards[-1] if self.shards else None
        if (current is None or current["modality"] != record.modality
                or current["count"] >= self.max_samples
                or current["bytes"] + size > self.max_bytes):
            self._open(record)
        self.writer.add(f"{key}.{encoding.extension}", encoded.data)
        self.writer.add(f"{key}.json", meta)
        self.shards[-1]["count"] += 1
        self.shards[-1]["bytes"] += size
        self.total += 1
        return len(self.shards) - 1

    def _open(self, record: Record) -> None:
        self.close()
        number = sum(s["modality"] == record.modality for s in self.shards)
        name = f"{record.modality.short}-{number:05d}.tar"
        self.writer = TarWriter(self.folder / name)
        self.shards.append({"file": name, "modality": record.modality, "first": self.total,
                            "count": 0, "bytes": 0})

    def close(self) -> None:
        """Close the tar being written, if any."""
        if self.writer:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> _ShardSet:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            self.close()
            return
        with contextlib.suppress(OSError):  # keep the first error (a full disk fails twice)
            self.close()

    def finish(self) -> tuple[ShardInfo, ...]:
        self.close()
        infos = []
        for shard in self.shards:
            tar = self.folder / shard["file"]
            index = write_index(tar)
            infos.append(ShardInfo(shard["file"], index.name, shard["modality"], shard["first"],
                                   shard["count"], tar.stat().st_size, sha256_file(tar),
                                   sha256_file(index)))
        return tuple(infos)
