"""Pixels, measured: what each encoding changes, what DALI's CPU decoder adds, what it costs.

Three kinds of rows, on fake trees (``vireid.fake``) built at the default 144×288:
- ``pixels_build``: per dataset (sysu, regdb, llcm) and JPEG q95 chroma (4:4:4, 4:2:0), the
  manifest's mean and max |Δ| (the stored bytes decoded with PIL against the exact resized
  uint8 pixels) and the bytes per image;
- ``pixels_dali``: on the same stored bytes, DALI's CPU decoder (``fn.decoders.image``,
  RGB) against PIL: max and mean |Δ|, share of pixels (any channel) and of channel values that
  differ; and DALI against the exact resized pixels (what the training loader really sees);
- ``pixels_loader``: one SYSU tree stored raw, PNG, JPEG 4:4:4 and JPEG 4:2:0: bytes per image
  on disk and the DALI CPU training loader's images/s, every row in its own process and the
  rows taking turns (``benchmarks.measure.interleaved``), so they are measured side by side.

Everything is written under a temporary folder, removed at the end; nothing goes into the
repository unless ``--results FILE`` is given.

    python -m benchmarks.pixels                          # ~2 min on 2 CPU cores
    python -m benchmarks.pixels --loader-ids 20 --loader-images-per-camera 1 --steps 2 \
        --warmup 1 --repeats 1 --settle 0               # smoke size
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import cell, emit, environment
from benchmarks.loader import dali_batches
from benchmarks.measure import IMAGES_PER_STEP, cache_files, interleaved
from vireid.datasets import read_dataset
from vireid.fake import make_fake
from vireid.shards.build import BuildOptions, build_shards
from vireid.shards.encode import Chroma, Encoding, resize_rgb
from vireid.shards.manifest import Manifest

DATASETS = ("sysu", "regdb", "llcm")
# (row label, build options) of the loader rows
STORAGES = {"raw": {"encoding": Encoding.RAW}, "png": {"encoding": Encoding.PNG},
            "jpeg q95 4:4:4": {"chroma": Chroma.YUV444},
            "jpeg q95 4:2:0": {"chroma": Chroma.YUV420}}
DECODE_BATCH = 64
SUMMARY_COLUMNS = ("name", "image_bytes_per_image", "mean_abs", "max_abs", "dali_vs_pil_max_abs",
                   "dali_vs_pil_mean_abs", "dali_vs_pil_pixels_differing", "dali_vs_exact_mean_abs",
                   "dali_vs_exact_max_abs", "images_per_s")


def build(root: Path, dataset: str, out: Path, **options) -> Path:
    build_shards(read_dataset(dataset, root), out, BuildOptions(**options))
    return out


def disk_fields(manifest: Manifest, sizes: np.ndarray) -> dict:
    """Bytes per image: the encoded image alone, and the tar files (headers, JSON) per image."""
    images = len(manifest.samples)
    return {"images": images, "image_bytes_per_image": float(sizes.mean()),
            "tar_bytes_per_image": sum(s.bytes for s in manifest.shards) / images}


def stored_bytes(shards: Path) -> tuple[Manifest, list[np.ndarray], np.ndarray]:
    """The manifest, every stored image's bytes in sample order, and their sizes."""
    from vireid.loader.source import ShardBytes

    with ShardBytes(shards) as source:
        data = [source.read(i).copy() for i in range(len(source.manifest.samples))]
        return source.manifest, data, source.sizes.copy()


def dali_decoded(data: list[np.ndarray], threads: int) -> list[np.ndarray]:
    """``data`` through DALI's CPU decoder (RGB), in order."""
    from nvidia.dali import fn, pipeline_def, types

    batches = [data[i:i + DECODE_BATCH] for i in range(0, len(data), DECODE_BATCH)]

    @pipeline_def(batch_size=DECODE_BATCH, num_threads=threads, device_id=None)
    def pipe():
        return fn.decoders.image(fn.external_source(source=iter(batches), batch=True),
                                 device="cpu", output_type=types.RGB)

    built = pipe()
    built.build()
    decoded = []
    for _ in batches:
        (images,) = built.run()
        decoded += [np.array(image) for image in images]
    return decoded


def compare(first: list[np.ndarray], second: list[np.ndarray], prefix: str) -> dict:
    """max / mean |Δ| and the shares of pixels (any channel) and channel values that differ."""
    absolute, pixels, values, largest = 0, 0, 0, 0
    for a, b in zip(first, second, strict=True):
        difference = np.abs(a.astype(np.int16) - b.astype(np.int16))
        absolute += int(difference.sum(dtype=np.int64))
        largest = max(largest, int(difference.max()))
        pixels += int(difference.any(axis=2).sum())
        values += int(np.count_nonzero(difference))
    count = sum(a.size for a in first)
    return {f"{prefix}_max_abs": largest, f"{prefix}_mean_abs": absolute / count,
            f"{prefix}_pixels_differing": pixels / (count // 3),
            f"{prefix}_values_differing": values / count}


def exact_pixels(root: Path, manifest: Manifest) -> list[np.ndarray]:
    """Every sample's source resized as the builder does (the uint8 image before encoding)."""
    exact = []
    for sample in manifest.samples:
        with Image.open(root / sample.path) as image:
            exact.append(np.asarray(resize_rgb(image, manifest.width, manifest.height)))
    return exact


def pil_decoded(data: list[np.ndarray]) -> list[np.ndarray]:
    decoded = []
    for stored in data:
        with Image.open(io.BytesIO(stored.tobytes())) as image:
            decoded.append(np.asarray(image.convert("RGB")))
    return decoded


def decoder_rows(work: Path, args, base: dict, threads: int) -> list[dict]:
    """``pixels_build`` and ``pixels_dali`` rows: every dataset, both chroma samplings."""
    rows = []
    for dataset in DATASETS:
        root = make_fake(dataset, work / f"raw-{dataset}", ids=args.ids,
                         images_per_camera=args.images_per_camera).root
        for chroma in Chroma:
            shards = build(root, dataset, work / f"{dataset}-{chroma}", chroma=chroma)
            manifest, data, sizes = stored_bytes(shards)
            name = f"{dataset} jpeg q95 {chroma.label}"
            common = {**base, "dataset": dataset, "chroma": chroma.value, "name": name,
                      **disk_fields(manifest, sizes)}
            rows.append({**common, "benchmark": "pixels_build", **manifest.pixels.__dict__})
            dali = dali_decoded(data, threads)
            rows.append({**common, "benchmark": "pixels_dali", "threads": threads,
                         **compare(dali, pil_decoded(data), "dali_vs_pil"),
                         **compare(dali, exact_pixels(root, manifest), "dali_vs_exact")})
            shutil.rmtree(shards)
    return rows


def loader_rows(work: Path, args, base: dict, threads: int) -> list[dict]:
    """``pixels_loader`` rows: bytes per image and DALI CPU loader images/s per storage."""
    root = make_fake("sysu", work / "raw-loader", ids=args.loader_ids,
                     images_per_camera=args.loader_images_per_camera).root
    folders = {label: build(root, "sysu", work / f"loader-{i}", **options)
               for i, (label, options) in enumerate(STORAGES.items())}
    table = {label: (dali_batches, (folder, threads), _cached(folder))
             for label, folder in folders.items()}
    measured = interleaved(table, steps=args.steps, warmup=args.warmup, repeats=args.repeats,
                           settle=args.settle)
    rows = []
    for label, folder in folders.items():
        manifest, _, sizes = stored_bytes(folder)
        rows.append({**base, "benchmark": "pixels_loader", "dataset": "sysu",
                     "name": f"vireid DALI cpu, fused ({label} shards)", "threads": threads,
                     "batch": IMAGES_PER_STEP, "device": "cpu", **disk_fields(manifest, sizes),
                     "mean_abs": manifest.pixels.mean_abs, "max_abs": manifest.pixels.max_abs,
                     **measured[label]})
    return rows


def _cached(folder: Path):
    return lambda: cache_files(folder, keep=True)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=None,
                        help="fake ids per dataset for the pixel rows (default: each tree's)")
    parser.add_argument("--images-per-camera", type=int, default=None)
    parser.add_argument("--loader-ids", type=int, default=60, help="fake SYSU ids, loader rows")
    parser.add_argument("--loader-images-per-camera", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="batches per repeat")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds of quiet before each loader measurement")
    parser.add_argument("--no-loader", dest="loader", action="store_false",
                        help="skip the loader rows")
    parser.add_argument("--results", type=Path, default=None, help="append the rows here")
    args = parser.parse_args(argv)
    from vireid.files import available_cores

    threads = available_cores() + 1  # the DALI training loader's default
    base = environment()
    work = Path(tempfile.mkdtemp(prefix="vireid-pixels-"))
    try:
        rows = decoder_rows(work, args, base, threads)
        if args.loader:
            rows += loader_rows(work, args, base, threads)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit(rows, args.results)
    print(summary_table(rows))
    return rows


def summary_table(rows: list[dict]) -> str:
    """The pixel columns as a Markdown table (``emit``'s table shows the common ones)."""
    lines = ["", "| benchmark | " + " | ".join(SUMMARY_COLUMNS) + " |",
             "|" + "---|" * (len(SUMMARY_COLUMNS) + 1)]
    for row in rows:
        lines.append(f"| {row['benchmark']} | "
                     + " | ".join(cell(row.get(c)) for c in SUMMARY_COLUMNS) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
