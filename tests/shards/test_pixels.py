"""Pixels, measured: JPEG shards keep full colour resolution (4:4:4) unless asked otherwise,
and the manifest says how far the stored pixels are from the exact resized ones. The oracle is
an independent recomputation from the raw tree: every stored image read back from the real
tar files and decoded, against its source resized here (Lanczos to the stored size)."""

from __future__ import annotations

import io
import json
import re
import tarfile

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin
from typer.testing import CliRunner

from vireid.cli.shard import app
from vireid.fake import make_fake
from vireid.shards.encode import Chroma
from vireid.shards.manifest import load_manifest

WIDTH, HEIGHT = 32, 64
IMAGE_EXTENSIONS = ("jpg", "png", "raw")


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory):
    """``tiny_tree(dataset)`` → a raw tree of 4 identities, one image per camera."""
    cache = {}

    def make(dataset: str):
        if dataset not in cache:
            root = tmp_path_factory.mktemp(f"tiny-{dataset}") / dataset
            cache[dataset] = make_fake(dataset, root, ids=4, images_per_camera=1).root
        return cache[dataset]

    return make


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_tree):
    """``built(dataset, *flags)`` → a shard folder written by ``vireid-shard build`` at 32×64."""
    cache = {}

    def make(dataset: str, *flags: str):
        if (dataset, flags) not in cache:
            out = tmp_path_factory.mktemp("built") / "out"
            result = CliRunner().invoke(app, [
                "build", dataset, str(tiny_tree(dataset)), str(out), "--width", str(WIDTH),
                "--height", str(HEIGHT), "--workers", "1", *flags])
            assert result.exit_code == 0, result.output
            cache[dataset, flags] = out
        return cache[dataset, flags]

    return make


def stored_images(folder) -> list[tuple[str, str, bytes]]:
    """(source path, extension, stored bytes) of every sample, read from the tar files."""
    found = []
    for tar_path in sorted(folder.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            key, extension = name.split(".", 1)
            if extension in IMAGE_EXTENSIONS:
                path = json.loads(members[f"{key}.json"])["path"]
                found.append((path, extension, data))
    return found


def decoded(extension: str, data: bytes) -> np.ndarray:
    if extension == "raw":
        return np.frombuffer(data, dtype=np.uint8).reshape(HEIGHT, WIDTH, 3)
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def exact_resized(root, path) -> np.ndarray:
    """The source image resized as the builder does, computed here without its code."""
    with Image.open(root / path) as image:
        return np.asarray(image.convert("RGB").resize((WIDTH, HEIGHT),
                                                      Image.Resampling.LANCZOS))


def sampling_factors(folder) -> set[int]:
    """``JpegImagePlugin.get_sampling`` of every stored JPEG: 0 = 4:4:4, 2 = 4:2:0."""
    factors = set()
    for _, extension, data in stored_images(folder):
        assert extension == "jpg"
        with Image.open(io.BytesIO(data)) as image:
            factors.add(JpegImagePlugin.get_sampling(image))
    return factors


@pytest.mark.parametrize("flags, chroma, factor", [((), "444", 0),
                                                   (("--chroma", "420"), "420", 2)])
def test_jpeg_chroma_is_what_the_bytes_contain(built, flags, chroma, factor):
    shards = built("sysu", *flags)
    assert sampling_factors(shards) == {factor}
    assert load_manifest(shards).chroma is Chroma(chroma)
    assert json.loads((shards / "manifest.json").read_text())["image"]["chroma"] == chroma


def test_library_builds_default_to_full_colour_too(shard_dir):
    assert sampling_factors(shard_dir("regdb", "jpeg")) == {0}  # 144×288, BuildOptions()


def test_help_lists_the_chroma_choices_and_default():
    output = CliRunner().invoke(app, ["build", "--help"], terminal_width=200).output
    assert "--chroma" in output and "444|420" in output
    assert re.search(r"--chroma.*\[default: 444\]", output, re.S)


@pytest.mark.parametrize("dataset, flags", [("sysu", ()), ("sysu", ("--chroma", "420")),
                                            ("regdb", ()), ("llcm", ())])
def test_pixel_stats_equal_an_independent_recomputation(built, tiny_tree, dataset, flags):
    shards = built(dataset, *flags)
    total, largest, images = 0, 0, stored_images(shards)
    for path, extension, data in images:
        difference = np.abs(decoded(extension, data).astype(np.int64)
                            - exact_resized(tiny_tree(dataset), path))
        total += int(difference.sum())
        largest = max(largest, int(difference.max()))
    pixels = load_manifest(shards).pixels
    assert pixels.images == len(images) == len(load_manifest(shards).samples)
    assert abs(pixels.mean_abs - total / (len(images) * HEIGHT * WIDTH * 3)) <= 1e-9
    assert pixels.max_abs == largest
    assert pixels.mean_abs > 0 and pixels.decoder.startswith("PIL ")  # JPEG changes pixels


@pytest.mark.parametrize("encoding, decoder", [("raw", "none"), ("png", "PIL ")])
def test_raw_and_png_shards_record_exact_pixels(built, tiny_tree, encoding, decoder):
    shards = built("llcm", "--encoding", encoding)
    manifest = load_manifest(shards)
    assert (manifest.pixels.mean_abs, manifest.pixels.max_abs) == (0, 0)
    assert manifest.pixels.images == len(manifest.samples)
    assert manifest.pixels.decoder.startswith(decoder)
    assert manifest.chroma is None  # chroma sampling is a JPEG matter
    path, extension, data = stored_images(shards)[0]
    np.testing.assert_array_equal(decoded(extension, data), exact_resized(tiny_tree("llcm"),
                                                                          path))


def test_inspect_prints_the_pixel_line(built):
    shards = built("sysu")
    pixels = load_manifest(shards).pixels
    output = CliRunner().invoke(app, ["inspect", str(shards)]).output
    line = (f"pixels    JPEG q95 4:4:4: mean |Δ| {pixels.mean_abs:.2f}, max {pixels.max_abs} "
            f"over {pixels.images} images vs the exact resized pixels")
    assert line in output.splitlines()
    summary = json.loads(CliRunner().invoke(app, ["inspect", str(shards), "--json"]).output)
    assert summary["pixels"] == {"storage": "JPEG q95 4:4:4", **pixels.__dict__}
    assert summary["chroma"] == "444"


def test_raw_inspect_says_exact(built):
    output = CliRunner().invoke(app, ["inspect", str(built("regdb", "--encoding", "raw"))])
    assert re.search(r"^pixels    raw: mean \|Δ\| 0\.00, max 0 over \d+ images .*\(exact\)$",
                     output.output, re.M)


def test_a_manifest_written_before_the_fields_still_loads(built, copy_shards):
    shards = copy_shards(built("sysu"))
    path = shards / "manifest.json"
    document = json.loads(path.read_text())
    del document["pixels"], document["image"]["chroma"]
    path.write_text(json.dumps(document))
    manifest = load_manifest(shards)
    assert manifest.pixels is None and manifest.chroma is None
    result = CliRunner().invoke(app, ["inspect", str(shards)])
    assert result.exit_code == 0
    assert "pixels    not recorded" in result.output and "JPEG" not in result.output
    assert CliRunner().invoke(app, ["verify", str(shards)]).exit_code == 0


def test_an_unknown_chroma_is_one_line(built, copy_shards):
    shards = copy_shards(built("sysu"))
    path = shards / "manifest.json"
    document = json.loads(path.read_text())
    document["image"]["chroma"] = "422"
    path.write_text(json.dumps(document))
    result = CliRunner().invoke(app, ["verify", str(shards)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip() == (f"error: {path}: bad entry: image.chroma '422' is not one "
                                     "of 444, 420 or null")
