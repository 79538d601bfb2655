"""``vireid-shard verify`` catches every kind of damage, each with a clear message."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vireid.cli.shard import app


def verify(folder, *extra):
    return CliRunner().invoke(app, ["verify", str(folder), *extra])


def assert_problem(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    text = result.stderr
    for fragment in fragments:
        assert fragment in text, text


@pytest.fixture
def shards(shard_dir, copy_shards):
    return copy_shards(shard_dir("sysu", "jpeg", max_samples=60))


def test_sound_folder_passes(shards):
    result = verify(shards, "--deep")
    assert result.exit_code == 0 and result.output.startswith("ok:")


def test_flipped_byte(shards):
    tar = sorted(shards.glob("*.tar"))[1]
    data = bytearray(tar.read_bytes())
    data[len(data) // 2] ^= 0x01
    tar.write_bytes(bytes(data))
    assert_problem(verify(shards), tar.name, "sha256 mismatch")


def test_truncated_tar(shards):
    tar = sorted(shards.glob("*.tar"))[0]
    tar.write_bytes(tar.read_bytes()[:-5000])
    assert_problem(verify(shards), tar.name, "truncated")


def test_missing_shard(shards):
    tar = sorted(shards.glob("ir-*.tar"))[0]
    tar.unlink()
    assert_problem(verify(shards), tar.name, "missing shard")


def test_missing_index(shards):
    index = sorted(shards.glob("*.idx"))[2]
    index.unlink()
    assert_problem(verify(shards), index.name, "missing index")


def test_stale_index(shards):
    indexes = sorted(shards.glob("vis-*.idx"))
    indexes[0].write_text(indexes[1].read_text())  # another tar's index
    assert_problem(verify(shards), indexes[0].name, "stale or malformed index")


def test_malformed_index(shards):
    index = sorted(shards.glob("*.idx"))[0]
    index.write_text(index.read_text().replace(" ", "  ", 3))
    assert_problem(verify(shards), index.name, "index")


def test_manifest_that_does_not_match(shards):
    path = shards / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["samples"]["key"][3] = "vis_99999_c01_00000"
    path.write_text(json.dumps(manifest))
    assert_problem(verify(shards), "manifest lists")


def test_manifest_with_wrong_count(shards):
    path = shards / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["shards"][0]["count"] -= 1
    manifest["shards"][1]["first"] -= 1
    path.write_text(json.dumps(manifest))
    assert_problem(verify(shards), manifest["shards"][0]["file"])


def test_manifest_of_another_version(shards):
    path = shards / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["version"] = 2
    path.write_text(json.dumps(manifest))
    assert_problem(verify(shards), "manifest.json", "version 2")


def test_missing_manifest(shards):
    (shards / "manifest.json").unlink()
    assert_problem(verify(shards), "manifest.json", "missing")


def test_deep_finds_an_undecodable_image_with_a_matching_hash(shards):
    """Damage made before hashing (e.g. by a faulty encoder) is only caught by --deep."""
    from vireid.shards.manifest import load_manifest
    from vireid.shards.tario import sha256_file, write_index

    manifest = load_manifest(shards)
    shard = manifest.shards[0]
    tar = shards / shard.file
    data = bytearray(tar.read_bytes())
    data[512:612] = b"\x00" * 100  # the first JPEG loses its header

    tar.write_bytes(bytes(data))
    write_index(tar)
    path = shards / "manifest.json"
    document = json.loads(path.read_text())
    document["shards"][0]["sha256"] = sha256_file(tar)
    path.write_text(json.dumps(document))
    assert verify(shards).exit_code == 0
    assert_problem(verify(shards, "--deep"), shard.file, manifest.samples[0].key,
                   "does not decode")
