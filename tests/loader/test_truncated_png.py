"""Images cut short inside intact shards (``--no-verify`` lets their bytes reach the loaders):
one line naming the tar and the key, exit 1, in training and in evaluation.

Formerly DALI's PNG parser read past the end of such a PNG and crashed the process from a
decoder thread (about 9 runs in 10 with 64 such images in a batch); when it did not, its own
``[png_parser]`` lines came before vireid's. The commands run in a subprocess, so a crash fails
the test instead of killing pytest.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vireid.loader.source import structure_problem
from vireid.shards.encode import Encoding
from vireid.shards.tario import parse_index

TINY = {"width": 32, "height": 64}
# the default batch, 8 identities × 4 images × 2 modalities: 64 damaged images in the first
# batch, as the crash needed (fewer than the ~100 damaged JPEGs that can exhaust DALI's shared
# memory)
FAST = ["--arch", "resnet18", "--pretrained", "none", "--epochs", "1", "--amp", "off",
        "--max-steps", "1", "--eval-every", "5", "--warmup-epochs", "1", "--milestones", "2",
        "3", "--device", "cpu"]
IEND = b"\0\0\0\0IEND\xaeB`\x82"
MESSAGE = (r"error: \S+/(vis|ir)-\d+\.tar: image \S+ is truncated \(no IEND chunk at its end\): "
           r"damaged shard, run `vireid-shard verify --deep {folder}`")


def cut_short(folder, tail: int = 1000) -> None:
    """Zero the last ``tail`` bytes of every stored PNG, its IEND chunk included: the image
    data ends early while the tar, its index and the member sizes stay as they were."""
    for index in folder.glob("*.idx"):
        with open(index.with_suffix(".tar"), "r+b") as tar:
            for group in parse_index(index):
                for member in group:
                    if member.name.endswith(".png"):
                        tar.seek(member.offset + member.size - min(tail, member.size - 8))
                        tar.write(b"\0" * min(tail, member.size - 8))


def run_cli(command: str, *arguments) -> subprocess.CompletedProcess:
    """``vireid-<command> arguments`` in a new Python process, stdout and stderr together."""
    code = f"from vireid.cli.{command} import main; main()"
    return subprocess.run([sys.executable, "-c", code, *map(str, arguments)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300)


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, f"exit {result.returncode}:\n{result.stdout[-3000:]}"
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stdout, result.stdout[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def png_shards(shard_dir):
    return shard_dir("sysu", "png", **TINY)


@pytest.fixture(scope="module")
def trained(png_shards, tmp_path_factory):
    from vireid.cli.train import app
    from vireid.train.run_folder import checkpoint_path

    out = tmp_path_factory.mktemp("trained-png") / "run"
    result = CliRunner().invoke(app, ["--shards", str(png_shards), "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    return checkpoint_path(out)


@pytest.mark.dali
@pytest.mark.parametrize("options", [["--cpu-augment", "fused"], ["--cache", "host"]])
def test_a_truncated_png_is_one_line_in_training(png_shards, copy_shards, tmp_path, options):
    """Uncached (each step's bytes through external_source) and cached (every training image
    decoded once first): the same line. (With verification, the default, the tar's sha256
    refuses it before: tests/train/test_bad_input.py.)"""
    damaged = copy_shards(png_shards)
    cut_short(damaged)
    line = one_line(run_cli("train", "--shards", damaged, "--out", tmp_path / "run", *FAST,
                            *options, "--no-verify"))
    assert re.fullmatch(MESSAGE.format(folder=re.escape(str(damaged))), line), line


@pytest.mark.dali
def test_a_truncated_png_is_one_line_in_testing(png_shards, copy_shards, trained):
    damaged = copy_shards(png_shards)
    cut_short(damaged)
    line = one_line(run_cli("test", "--shards", damaged, "--checkpoint", trained, "--device",
                            "cpu", "--no-verify"))
    assert re.fullmatch(MESSAGE.format(folder=re.escape(str(damaged))), line), line


def encoded(image_format: str) -> bytes:
    """A 32×64 image of noise (a few KB in either format) as ``image_format`` stores it."""
    pixels = np.random.default_rng(0).integers(0, 256, (64, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format)
    return buffer.getvalue()


def as_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.uint8)


def test_whole_images_pass_the_structure_check():
    assert encoded("PNG").endswith(IEND) and encoded("JPEG").endswith(b"\xff\xd9")
    assert structure_problem(as_array(encoded("JPEG")), Encoding.JPEG) is None
    assert structure_problem(as_array(encoded("PNG")), Encoding.PNG) is None
    assert structure_problem(as_array(b"\1\2\3"), Encoding.RAW) is None


def with_length(data: bytes, chunk: bytes, length: int) -> bytes:
    """``data`` with the length field of its first ``chunk`` chunk set to ``length``."""
    at = data.index(chunk) - 4
    return data[:at] + length.to_bytes(4, "big") + data[at + 4:]


@pytest.mark.parametrize("damage, problem", [
    (lambda d: d[:-12] + b"\0" * 12, "is truncated (no IEND chunk at its end)"),
    (lambda d: d[:-300] + b"\0" * 300, "is truncated (no IEND chunk at its end)"),
    (lambda d: d[:len(d) // 2] + IEND, "is truncated or damaged (its PNG chunks do not add up"),
    (lambda d: with_length(d, b"IDAT", 1 << 30), "is truncated or damaged (its PNG chunks"),
    (lambda d: d + IEND, "is truncated or damaged (its PNG chunks do not add up"),
    (lambda d: d[:10], "is truncated (no IEND chunk at its end)"),
    (lambda d: b"\0" * 8 + d[8:], "is not a PNG"),
])
def test_a_png_cut_short_or_with_a_wrong_length_is_refused(damage, problem):
    found = structure_problem(as_array(damage(encoded("PNG"))), Encoding.PNG)
    assert found is not None and found.startswith(problem), found


def test_a_jpeg_without_its_end_marker_is_refused():
    data = encoded("JPEG")
    assert structure_problem(as_array(data[:-40] + b"\0" * 40), Encoding.JPEG) == \
        "is truncated (no end-of-image marker at its end)"
