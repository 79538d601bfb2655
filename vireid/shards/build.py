"""RawDataset → shard folder: every image resized once, stored once, grouped by identity.

Encoding runs on all cores (process pool, results consumed in record order), tars are written
sequentially in the main process, and the whole folder is built beside ``out_dir`` under a
temporary name and renamed at the end: an interrupted build never leaves a folder that looks
complete, and an existing ``out_dir`` is only replaced with ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import PIL

from vireid import __version__
from vireid.constants import (
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    JPEG_QUALITY,
    SHARD_MAX_MEGABYTES,
    SHARD_MAX_SAMPLES,
)
from vireid.errors import VireidError
from vireid.records import RawDataset, Record
from vireid.shards.encode import Encoded, EncodeTask, Encoding, encode_image
from vireid.shards.layout import remap_views_and_protocols, sample_keys
from vireid.shards.manifest import (
    IdentityRange,
    Manifest,
    Sample,
    ShardInfo,
    Skipped,
    write_manifest,
)
from vireid.shards.tario import TarWriter, sha256_file, write_index

Progress = Callable[[int], None]


@dataclass(frozen=True)
class BuildOptions:
    width: int = IMAGE_WIDTH
    height: int = IMAGE_HEIGHT
    encoding: Encoding = Encoding.JPEG
    quality: int = JPEG_QUALITY
    max_samples: int = SHARD_MAX_SAMPLES
    max_megabytes: float = SHARD_MAX_MEGABYTES
    workers: int = 0  # 0: every available core
    skip_bad_images: bool = False
    overwrite: bool = False


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def build_shards(dataset: RawDataset, out_dir: Path, options: BuildOptions,
                 progress: Progress | None = None) -> Manifest:
    """Write the shard folder ``out_dir`` for ``dataset`` and return its manifest."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not options.overwrite:
        raise VireidError(out_dir, "already exists (pass --overwrite to replace it)")
    if not options.skip_bad_images and not dataset.records:
        raise VireidError(dataset.root, "no images found")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        manifest = _write_folder(dataset, partial, options, progress or (lambda n: None))
        write_manifest(manifest, partial)
        _swap_in(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def _swap_in(partial: Path, out_dir: Path) -> None:
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        os.replace(out_dir, old)
        os.replace(partial, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, out_dir)


def _write_folder(dataset: RawDataset, folder: Path, options: BuildOptions,
                  progress: Progress) -> Manifest:
    keys = sample_keys(dataset.records)
    tasks = (EncodeTask(str(dataset.root / r.path), options.width, options.height,
                        options.encoding, options.quality) for r in dataset.records)
    writer = _ShardSet(folder, options)
    kept: list[int] = []
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    for i, (record, result) in enumerate(zip(dataset.records, _encode_all(tasks, options))):
        progress(1)
        if result.error:
            if not options.skip_bad_images:
                raise VireidError(dataset.root / record.path, result.error)
            skipped.append(Skipped(record.path, result.error))
            continue
        shard = writer.add(keys[i], record, result, options.encoding)
        kept.append(i)
        samples.append(Sample(keys[i], record.path, record.pid, record.cam, record.modality,
                              *result.source_size, shard))
    if not samples:
        raise VireidError(dataset.root, "no readable images")
    views, protocols = remap_views_and_protocols(dataset, kept)
    return Manifest(
        dataset=dataset.name, source=dataset.root.name, width=options.width,
        height=options.height, encoding=options.encoding, quality=options.quality,
        shards=writer.finish(), samples=tuple(samples), identities=_identities(samples),
        train_views=views, protocols=protocols, default_protocol=dataset.default_protocol,
        skipped=tuple(skipped),
        created_by={"vireid": __version__, "pillow": PIL.__version__},
    )


def _encode_all(tasks: Iterable[EncodeTask], options: BuildOptions) -> Iterator[Encoded]:
    workers = options.workers or available_cores()
    if workers == 1:
        yield from map(encode_image, tasks)
        return
    pool = ProcessPoolExecutor(max_workers=workers)
    try:
        yield from pool.map(encode_image, tasks, chunksize=16)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
        size = len(encoded.data) + len(meta) + 2048
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
        if self.writer:
            self.writer.close()
        number = sum(s["modality"] == record.modality for s in self.shards)
        name = f"{record.modality.short}-{number:05d}.tar"
        self.writer = TarWriter(self.folder / name)
        self.shards.append({"file": name, "modality": record.modality, "first": self.total,
                            "count": 0, "bytes": 0})

    def finish(self) -> tuple[ShardInfo, ...]:
        if self.writer:
            self.writer.close()
        infos = []
        for shard in self.shards:
            tar = self.folder / shard["file"]
            index = write_index(tar)
            infos.append(ShardInfo(shard["file"], index.name, shard["modality"], shard["first"],
                                   shard["count"], tar.stat().st_size, sha256_file(tar),
                                   sha256_file(index)))
        return tuple(infos)
