"""Build → read back through webdataset, DALI and plain tar; determinism; index files."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vireid.datasets import read_dataset
from vireid.shards.build import BuildOptions, build_shards
from vireid.shards.encode import Encoding, resize_rgb
from vireid.shards.manifest import load_manifest


def resized_source(root, path, width=144, height=288) -> np.ndarray:
    with Image.open(root / path) as image:
        return np.asarray(resize_rgb(image, width, height))


def files_digest(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("dataset", ["sysu", "regdb", "llcm"])
def test_webdataset_reads_every_sample(shard_dir, fake_tree, dataset):
    import webdataset as wds

    shards = shard_dir(dataset, "png")
    manifest = load_manifest(shards)
    urls = [str(shards / s.file) for s in manifest.shards]
    keys, metas = [], []
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        keys.append(sample["__key__"])
        metas.append(json.loads(sample["json"]))
        source = resized_source(fake_tree(dataset), metas[-1]["path"])
        pixels = np.asarray(Image.open(io.BytesIO(sample["png"])).convert("RGB"))
        np.testing.assert_array_equal(pixels, source)  # PNG: exactly the resized source
    assert keys == [s.key for s in manifest.samples]
    assert [m["path"] for m in metas] == [s.path for s in manifest.samples]
    assert all("." not in k for k in keys)
    raw = read_dataset(dataset, fake_tree(dataset))
    assert len(keys) == len(raw.records)  # every image exactly once


@pytest.mark.dali
@pytest.mark.parametrize("encoding", ["raw", "png", "jpeg"])
def test_dali_reads_shards_with_our_index_files(shard_dir, fake_tree, encoding):
    from nvidia.dali import fn, pipeline_def, types

    shards = shard_dir("sysu", encoding)
    manifest = load_manifest(shards)
    ext = Encoding(encoding).extension

    @pipeline_def(batch_size=16, num_threads=2, device_id=None)
    def pipe():
        data, meta = fn.readers.webdataset(
            paths=[str(shards / s.file) for s in manifest.shards],
            index_paths=[str(shards / s.index) for s in manifest.shards],
            ext=[ext, "json"], missing_component_behavior="error", name="r")
        if encoding == "raw":
            images = fn.reshape(data, shape=[288, 144, 3])
        else:
            images = fn.decoders.image(data, device="cpu", output_type=types.RGB)
        return images, meta

    built = pipe()
    built.build()
    seen = 0
    root = fake_tree("sysu")
    while seen < len(manifest.samples):
        images, metas = built.run()
        for image, meta in zip(images, metas):
            if seen >= len(manifest.samples):
                break
            info = json.loads(bytes(np.array(meta)).decode())
            assert info["path"] == manifest.samples[seen].path
            source = resized_source(root, info["path"])
            difference = np.abs(np.array(image).astype(int) - source)
            assert difference.max() <= (0 if encoding != "jpeg" else 40)
            if encoding == "jpeg":
                assert difference.mean() < 2.0
            seen += 1


@pytest.mark.dali
def test_index_files_equal_dalis_wds2idx(shard_dir, tmp_path):
    shards = shard_dir("llcm", "jpeg", max_samples=17)
    manifest = load_manifest(shards)
    assert len(manifest.shards) > 4  # several shards per modality
    tool = shutil.which("wds2idx") or str(__import__("pathlib").Path(sys.executable).parent /
                                          "wds2idx")
    for shard in manifest.shards:
        theirs = tmp_path / f"{shard.file}.idx"
        subprocess.run([tool, str(shards / shard.file), str(theirs)], check=True,
                       capture_output=True)
        assert (shards / shard.index).read_text() == theirs.read_text()


def test_plain_tar_lists_and_extracts(shard_dir, tmp_path):
    shards = shard_dir("regdb", "jpeg")
    manifest = load_manifest(shards)
    shard = manifest.shards[0]
    listing = subprocess.run(["tar", "tf", str(shards / shard.file)], check=True,
                             capture_output=True, text=True).stdout.split()
    keys = [s.key for s in manifest.samples[shard.first:shard.first + shard.count]]
    assert listing == [f"{k}.{e}" for k in keys for e in ("jpg", "json")]
    subprocess.run(["tar", "xf", str(shards / shard.file), "-C", str(tmp_path)], check=True)
    meta = json.loads((tmp_path / f"{keys[0]}.json").read_text())
    assert meta["path"] == manifest.samples[shard.first].path
    Image.open(tmp_path / f"{keys[0]}.jpg").verify()


def test_grouping_by_modality_and_identity(shard_dir):
    manifest = load_manifest(shard_dir("sysu", "jpeg", max_samples=40))
    for shard in manifest.shards:
        members = manifest.samples[shard.first:shard.first + shard.count]
        assert {s.modality for s in members} == {shard.modality}
        assert shard.file.startswith(shard.modality.short + "-")
    order = [(s.modality.value != "visible", s.pid, s.cam, s.path) for s in manifest.samples]
    assert order == sorted(order)
    for identity in manifest.identities:
        members = manifest.samples[identity.start:identity.stop]
        assert {(s.modality, s.pid) for s in members} == {(identity.modality, identity.pid)}
    assert sum(r.stop - r.start for r in manifest.identities) == len(manifest.samples)


def test_raw_encoding_is_exact_and_sizes_are_recorded(shard_dir, fake_tree):
    shards = shard_dir("sysu", "raw", width=64, height=128)
    manifest = load_manifest(shards)
    from vireid.loader.source import ShardBytes

    source = ShardBytes(shards)
    root = fake_tree("sysu")
    for i in (0, len(manifest.samples) // 2, len(manifest.samples) - 1):
        sample = manifest.samples[i]
        stored = source.read(i).reshape(128, 64, 3)
        np.testing.assert_array_equal(stored, resized_source(root, sample.path, 64, 128))
        with Image.open(root / sample.path) as image:
            assert image.size == (sample.width, sample.height)


def test_building_twice_is_byte_identical(fake_tree, tmp_path):
    raw = read_dataset("sysu", fake_tree("sysu"))
    build_shards(raw, tmp_path / "a", BuildOptions(workers=2, max_samples=50))
    build_shards(raw, tmp_path / "b", BuildOptions(workers=1, max_samples=50))
    assert files_digest(tmp_path / "a") == files_digest(tmp_path / "b")


def test_overwrite_replaces_only_when_asked(fake_tree, tmp_path):
    raw = read_dataset("regdb", fake_tree("regdb"))
    out = tmp_path / "out"
    build_shards(raw, out, BuildOptions(workers=1))
    before = files_digest(out)
    from vireid.errors import VireidError

    with pytest.raises(VireidError, match="already exists"):
        build_shards(raw, out, BuildOptions(workers=1, encoding=Encoding.PNG))
    assert files_digest(out) == before
    build_shards(raw, out, BuildOptions(workers=1, encoding=Encoding.PNG, overwrite=True))
    assert load_manifest(out).encoding is Encoding.PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary leftovers


def test_cli_round_trip(fake_tree, tmp_path):
    from typer.testing import CliRunner

    from vireid.cli.shard import app

    runner = CliRunner()
    out = tmp_path / "sh"
    result = runner.invoke(app, ["build", "llcm", str(fake_tree("llcm")), str(out),
                                 "--shard-samples", "25"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    result = runner.invoke(app, ["verify", str(out), "--deep"])
    assert result.exit_code == 0 and "every image decoded" in result.output
    result = runner.invoke(app, ["inspect", str(out)])
    assert "llcm-vis2ir" in result.output and "infrared" in result.output
    result = runner.invoke(app, ["inspect", str(out), "--json"])
    summary = json.loads(result.output)
    assert summary["images"] == len(load_manifest(out).samples)
    result = runner.invoke(app, ["protocol", str(out), "llcm-vis2ir", "--trial", "4"])
    lists = json.loads(result.output)
    trial = load_manifest(out).trial("llcm-vis2ir", 4)
    assert lists["protocol"] == "llcm-vis2ir" and lists["trial"] == 4
    assert [e["pid"] for e in lists["query"]] == list(trial.query_pids)
    assert {e["path"].split("/")[0] for e in lists["query"]} == {"test_nir"}
    assert {e["path"].split("/")[0] for e in lists["gallery"]} == {"test_vis"}
    assert set(lists["query"][0]) == {"key", "path", "pid", "cam"}
