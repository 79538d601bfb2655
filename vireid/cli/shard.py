"""``vireid-shard``: raw dataset trees → WebDataset shards, and tools to check them."""

from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path

import typer

from vireid.cli.common import (
    megabytes,
    new_app,
    progress_bar,
    sigterm_as_interrupt,
    user_errors,
)
from vireid.constants import (
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    JPEG_QUALITY,
    MAX_SIDE,
    MIN_SIDE,
    SHARD_MAX_MEGABYTES,
    SHARD_MAX_SAMPLES,
)
from vireid.datasets import list_datasets, read_dataset
from vireid.errors import VireidError
from vireid.fake import MAX_IMAGES_PER_CAMERA, MIN_IDS, make_fake, max_ids
from vireid.shards.build import BuildOptions, build_shards
from vireid.shards.encode import Chroma, Encoding
from vireid.shards.manifest import load_manifest
from vireid.shards.safety import OutputExists
from vireid.shards.summary import pixel_summary, protocol_lists, summarize
from vireid.shards.verify import verify_shards

app = new_app(
    "Convert SYSU-MM01, RegDB and LLCM raw trees into WebDataset tar shards grouped by "
    "identity and modality (with DALI index files and a manifest), and verify or inspect them."
)
DATASETS = ", ".join(list_datasets())
SIDES = f"{MIN_SIDE}-{MAX_SIDE}"
FAKE_IDS = ", ".join(f"{name} {most}" for name, most in max_ids().items())


class BadImagePolicy(str, Enum):
    error = "error"
    skip = "skip"


@app.command()
def build(
    dataset: str = typer.Argument(..., help=f"Dataset layout of RAW_ROOT: {DATASETS}."),
    raw_root: Path = typer.Argument(..., help="Root of the raw dataset tree (e.g. SYSU-MM01/)."),
    out_dir: Path = typer.Argument(..., help="Shard folder to create (e.g. shards/sysu)."),
    width: int = typer.Option(IMAGE_WIDTH, help=f"Stored image width in pixels ({SIDES})."),
    height: int = typer.Option(IMAGE_HEIGHT, help=f"Stored image height in pixels ({SIDES})."),
    encoding: Encoding = typer.Option(
        Encoding.JPEG, help="How pixels are stored: jpeg (small, decoded by DALI/nvJPEG), "
        "png (lossless) or raw (exact uint8 H×W×3, no decoding at train time, ~8× larger)."),
    quality: int = typer.Option(JPEG_QUALITY, min=1, max=100, help="JPEG quality."),
    chroma: Chroma = typer.Option(
        BuildOptions.chroma, help="JPEG chroma sampling: 444 keeps a colour per pixel; 420 one "
        "per 2×2 pixels (smaller files, blurred colour edges). Ignored for png and raw."),
    shard_samples: int = typer.Option(SHARD_MAX_SAMPLES, min=1,
                                      help="Most samples per tar file."),
    shard_mb: float = typer.Option(SHARD_MAX_MEGABYTES, min=0.01, help="Most megabytes per tar."),
    workers: int = typer.Option(0, min=0, help="Encoding processes (0: every available core)."),
    on_bad_image: BadImagePolicy = typer.Option(
        BadImagePolicy.error, help="error: stop at the first unreadable image; skip: leave it "
        "out and record it in the manifest and the summary."),
    overwrite: bool = typer.Option(
        False, help="Replace OUT_DIR if it already exists and is a shard folder or empty "
        "(never the raw tree, a folder around it, or anything else)."),
) -> None:
    """Resize every image once (Lanczos) and write shards, .idx files and manifest.json.

    The folder is built under a temporary name beside OUT_DIR, locked against a second build,
    and renamed at the end; an error, Ctrl-C or SIGTERM leaves nothing behind.
    """
    options = BuildOptions(width=width, height=height, encoding=encoding, quality=quality,
                           chroma=chroma, max_samples=shard_samples, max_megabytes=shard_mb,
                           workers=workers, skip_bad_images=on_bad_image is BadImagePolicy.skip,
                           overwrite=overwrite)
    with user_errors(), sigterm_as_interrupt():
        check_side("--width", width)
        check_side("--height", height)
        raw = read_dataset(dataset, raw_root)
        start = time.perf_counter()
        with progress_bar(f"{dataset} → shards", len(raw.records)) as advance:
            try:
                manifest = build_shards(raw, out_dir, options, advance)
            except OutputExists:
                raise VireidError(out_dir, "already exists (pass --overwrite to replace it)") \
                    from None
        seconds = time.perf_counter() - start
    size = sum(s.bytes for s in manifest.shards)
    typer.echo(f"wrote {len(manifest.samples)} images in {len(manifest.shards)} shards "
               f"({megabytes(size)}) to {out_dir} in {seconds:.1f} s "
               f"({len(manifest.samples) / seconds:.0f} images/s)")
    typer.echo(pixels_line(pixel_summary(manifest)))
    for skipped in manifest.skipped:
        typer.echo(f"skipped {skipped.path}: {skipped.reason}")


@app.command()
def verify(
    shards_dir: Path = typer.Argument(..., help="Shard folder written by `vireid-shard build`."),
    deep: bool = typer.Option(False, help="Also decode every image and check its size."),
) -> None:
    """Re-hash and re-count every shard and check each index file against its tar."""
    with user_errors():
        manifest = load_manifest(shards_dir)
        with progress_bar("verify", len(manifest.samples), "samples") as advance:
            problems = verify_shards(shards_dir, deep, advance)
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"ok: {len(manifest.shards)} shards, {len(manifest.samples)} samples"
               f"{', every image decoded' if deep else ''}")


@app.command()
def inspect(
    shards_dir: Path = typer.Argument(..., help="Shard folder written by `vireid-shard build`."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Summarise a shard folder: ids and images per split, modality and camera; sizes."""
    with user_errors():
        summary = summarize(load_manifest(shards_dir))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(render_summary(summary))


@app.command()
def protocol(
    shards_dir: Path = typer.Argument(..., help="Shard folder written by `vireid-shard build`."),
    name: str = typer.Argument(..., help="Protocol: sysu-all, sysu-indoor, regdb-v2t, "
                               "regdb-t2v, llcm-ir2vis or llcm-vis2ir."),
    trial: int = typer.Option(..., help="Trial number (SYSU/LLCM 0-9, RegDB 1-10)."),
) -> None:
    """Print one trial's query (distance-matrix rows) and gallery (columns) as JSON."""
    with user_errors():
        lists = protocol_lists(load_manifest(shards_dir), name, trial)
    typer.echo(json.dumps(lists))


@app.command()
def fake(
    dataset: str = typer.Argument(..., help=f"Layout to imitate: {DATASETS}."),
    root: Path = typer.Argument(..., help="Folder to create (must not exist or be empty)."),
    ids: int = typer.Option(None, help=f"Number of identities, at least {MIN_IDS}, at most "
                            f"{FAKE_IDS} (what the layout's ids can hold; default: a small "
                            "tree)."),
    images_per_camera: int = typer.Option(
        None, help=f"Images per identity and camera, 1-{MAX_IMAGES_PER_CAMERA}."),
    seed: int = typer.Option(0, help="Seed: the same arguments give byte-identical trees."),
) -> None:
    """Write a small fake dataset in the real layout (for tests and demos; no real data).

    An error, Ctrl-C or SIGTERM removes what was written.
    """
    with user_errors(), sigterm_as_interrupt():
        tree = make_fake(dataset, root, ids=ids, images_per_camera=images_per_camera, seed=seed)
    typer.echo(f"wrote a fake {dataset} tree: {tree.num_images} images of {tree.num_ids} ids "
               f"in {root}")


def check_side(flag: str, pixels: int) -> None:
    """Image sides are bounded before any work (a 0 or a 100000 fails late and confusingly)."""
    if not MIN_SIDE <= pixels <= MAX_SIDE:
        raise VireidError(flag, f"{pixels} is out of range ({SIDES} pixels)")


def render_summary(summary: dict) -> str:
    lines = [
        f"dataset   {summary['dataset']} (from {summary['source']})",
        f"stored    {summary['images']} images of {summary['ids']} ids as "
        f"{summary['encoding']} {summary['stored_size']}, {summary['shards']} shards, "
        f"{megabytes(summary['bytes'])}",
        f"originals width {summary['original_width'][0]}-{summary['original_width'][1]}, "
        f"height {summary['original_height'][0]}-{summary['original_height'][1]}",
        pixels_line(summary["pixels"]),
    ]
    for modality, counts in summary["modalities"].items():
        lines.append(f"{modality:<9} {counts['images']} images, {counts['ids']} ids")
    lines.append("cameras   " + ", ".join(f"{k}: {v}" for k, v in summary["cameras"].items()))
    for name, view in summary["train_views"].items():
        lines.append(f"train     {name}: {view['classes']} classes, {view['visible']} visible "
                     f"+ {view['infrared']} infrared images")
    for name, p in summary["protocols"].items():
        default = " (default)" if name == summary["default_protocol"] else ""
        lines.append(f"protocol  {name}{default}: trials {p['trials'][0]}-{p['trials'][-1]}, "
                     f"{p['query']} queries of {p['query_ids']} ids, {p['gallery']} gallery "
                     f"images of {p['gallery_ids']} ids (trial {p['trials'][0]})")
    for skipped in summary["skipped"]:
        lines.append(f"skipped   {skipped['path']}: {skipped['reason']}")
    return "\n".join(lines)


def pixels_line(pixels: dict | None) -> str:
    """``pixels    JPEG q95 4:4:4: mean |Δ| 0.61, max 14 over 555 images vs the exact resized
    pixels``, as the stored bytes decode with PIL."""
    if pixels is None:
        return "pixels    not recorded (built before vireid measured them; rebuild to see)"
    exact = " (exact)" if pixels["max_abs"] == 0 else ""
    return (f"pixels    {pixels['storage']}: mean |Δ| {pixels['mean_abs']:.2f}, max "
            f"{pixels['max_abs']} over {pixels['images']} images vs the exact resized "
            f"pixels{exact}")


def main() -> None:
    app()
