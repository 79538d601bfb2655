"""`vireid-train` and `vireid-test` met as a hostile but realistic user meets them: every bad
input is one line naming the file or the option, a non-zero exit, no traceback, and nothing
half-written."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.cli_results import one_line_error
from tests.loader.test_dali_errors import damage_bodies
from vireid.cli.test import app as eval_app
from vireid.cli.train import app as train_app
from vireid.shards.tario import parse_index
from vireid.train.run_folder import RunLock, checkpoint_path

TINY = {"width": 32, "height": 64}
FAST = ["--arch", "resnet18", "--pretrained", "none", "--epochs", "1", "--batch-ids", "4",
        "--num-pos", "2", "--amp", "off", "--max-steps", "1", "--eval-every", "5",
        "--warmup-epochs", "1", "--milestones", "2", "3", "--device", "cpu"]


@pytest.fixture(scope="module")
def shards(shard_dir):
    return shard_dir("sysu", "jpeg", **TINY)


def train(*arguments):
    return CliRunner().invoke(train_app, [str(a) for a in arguments])


def test_out_under_a_file_is_refused_before_anything(shards, tmp_path):
    (tmp_path / "file").write_text("x")
    line = one_line_error(train("--shards", shards, "--out", tmp_path / "file" / "run", *FAST))
    assert line.endswith("run: cannot be created: " + str(tmp_path / "file") + " is a file")


@pytest.mark.parametrize("place", ["/proc/vireid-run", "/sys/run"])
def test_out_in_a_system_folder_is_refused(shards, place):
    line = one_line_error(train("--shards", shards, "--out", place, *FAST))
    assert "is inside a system folder" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder_is_refused(shards, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = one_line_error(train("--shards", shards, "--out", folder / "run", *FAST))
    finally:
        folder.chmod(0o755)
    assert "is read-only for this user" in line


def test_a_folder_with_files_of_its_own_is_not_a_run_folder(shards, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    line = one_line_error(train("--shards", shards, "--out", tmp_path, *FAST))
    assert line == f"error: {tmp_path}: is not a run folder (it holds notes.txt): choose a " \
                   "new or empty run folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_two_runs_in_one_folder_the_second_is_refused(shards, tmp_path):
    out = tmp_path / "run"
    with RunLock(out):  # another run holds the folder
        line = one_line_error(train("--shards", shards, "--out", out, *FAST))
    assert f"is in use by another run (process {os.getpid()})" in line
    assert not checkpoint_path(out).exists()


@pytest.mark.dali
def test_a_stale_lock_of_a_dead_process_does_not_block(shards, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("999999\n")  # written by a process that is gone
    result = train("--shards", shards, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert checkpoint_path(out).is_file()


@pytest.mark.dali
def test_a_full_disk_while_saving_is_one_line_and_leaves_no_partial(shards, tmp_path,
                                                                    monkeypatch):
    import vireid.train.checkpoint as checkpoint

    def half_written(obj, handle):
        handle.write(b"x" * 4096)
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", half_written)
    monkeypatch.setattr(checkpoint, "_disk_full", lambda path: True)
    out = tmp_path / "run"
    line = one_line_error(train("--shards", shards, "--out", out, *FAST))
    assert line.endswith("last.pt: cannot write checkpoint: disk full")
    assert list((out / "checkpoints").iterdir()) == []


@pytest.mark.parametrize("option, value", [
    ("--device", "gpu"), ("--amp", "fp32"), ("--amp", "garbage"), ("--weight-decay", "-5"),
    ("--seed", "-1"), ("--num-threads", "-3"), ("--lr", "-1"), ("--lr", "0"),
    ("--max-steps", "0"), ("--sampler", "random"), ("--loader", "pil"), ("--method", "caj2"),
    ("--arch", "vit"), ("--cpu-augment", "gpu"), ("--eval-batch-size", "20000"),
])
def test_bad_option_values_are_refused_while_parsing(shards, tmp_path, option, value):
    result = train("--shards", shards, "--out", tmp_path / "run", *FAST, option, value)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"Invalid value for '{option}'" in result.output
    assert not (tmp_path / "run").exists()


def test_milestones_must_increase(shards, tmp_path):
    result = train("--shards", shards, "--out", tmp_path / "run", *FAST, "--milestones", "5",
                   "2")
    assert result.exit_code == 2 and "must increase (got 5 2)" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_before_anything(shards, tmp_path):
    line = one_line_error(train("--shards", shards, "--out", tmp_path / "run", *FAST,
                                "--device", "cuda"))
    assert "no GPU is visible to this process" in line
    assert not (tmp_path / "run").exists()


def test_a_protocol_of_another_dataset_is_refused_before_training(shards, tmp_path):
    line = one_line_error(train("--shards", shards, "--out", tmp_path / "run", *FAST,
                                "--protocol", "regdb-v2t"))
    assert "regdb-v2t" in line and "no such protocol" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.dali
def test_no_replace_with_too_few_images_names_the_identity(shards, tmp_path):
    line = one_line_error(train("--shards", shards, "--out", tmp_path / "run", *FAST,
                                "--no-replace", "--num-pos", "50"))
    assert "identity" in line and "fewer than the 50 to draw without replacement" in line


@pytest.mark.dali
def test_a_mistyped_pretrained_path_is_refused(shards, tmp_path):
    arguments = [a if a != "none" else str(tmp_path / "r50.pth") for a in FAST]
    line = one_line_error(train("--shards", shards, "--out", tmp_path / "run", *arguments))
    assert line.endswith("r50.pth: pretrained weights not found (a ResNet state dict file, or "
                         "'torchvision', or 'none')")


@pytest.mark.dali
def test_resume_accepts_the_same_data_by_another_path(shards, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert train("--shards", shards, "--out", out, *FAST).exit_code == 0
    monkeypatch.chdir(shards.parent)
    relative = os.path.relpath(shards, shards.parent)
    longer = [a if a != "1" or i != FAST.index("--epochs") + 1 else "2"
              for i, a in enumerate(FAST)]
    result = train("--shards", relative, "--out", out, *longer, "--resume")
    assert result.exit_code == 0, result.output
    assert torch.load(checkpoint_path(out), weights_only=True)["epoch"] == 1


@pytest.mark.dali
def test_resume_on_other_data_or_of_a_finished_run_is_refused(shard_dir, shards, tmp_path):
    out = tmp_path / "run"
    assert train("--shards", shards, "--out", out, *FAST).exit_code == 0
    line = one_line_error(train("--shards", shards, "--out", out, *FAST, "--resume"))
    assert "the run is finished (1 of 1 epochs)" in line
    other = shard_dir("sysu", "png", **TINY)
    line = one_line_error(train("--shards", other, "--out", out, *FAST, "--epochs", "2",
                                "--resume"))
    assert "was trained on another shard content" in line


@pytest.mark.dali
def test_shards_rebuilt_under_a_running_training_stop_it(shards, copy_shards, tmp_path):
    from vireid.errors import VireidError
    from vireid.train.config import TrainConfig
    from vireid.train.reporting import Reporter
    from vireid.train.runner import run_training

    folder = copy_shards(shards)

    class Rebuild(Reporter):
        def epoch_end(self, epoch, stats):
            manifest = folder / "manifest.json"
            manifest.write_text(manifest.read_text())  # a rebuild writes it anew

    config = TrainConfig.from_flat(
        shards=str(folder), out=str(tmp_path / "run"), arch="resnet18", pretrained="none",
        epochs=3, batch_ids=4, num_pos=2, amp="off", max_steps=1, eval_every=5,
        warmup_epochs=1, milestones=(2, 3), device="cpu")
    with pytest.raises(VireidError, match="manifest.json: changed while this run was "
                                          "training"):
        run_training(config, Rebuild())
    assert torch.load(checkpoint_path(tmp_path / "run"), weights_only=True)["epoch"] == 0


def change_one_image_byte(folder) -> None:
    index = sorted(folder.glob("*.idx"))[0]
    member = next(m for g in parse_index(index) for m in g if m.name.endswith(".jpg"))
    with open(index.with_suffix(".tar"), "r+b") as tar:
        tar.seek(member.offset + member.size // 2)
        byte = tar.read(1)
        tar.seek(member.offset + member.size // 2)
        tar.write(bytes([byte[0] ^ 0x01]))


@pytest.mark.dali
def test_a_changed_byte_is_caught_before_training_and_testing(shards, copy_shards, tmp_path):
    out = tmp_path / "run"
    assert train("--shards", shards, "--out", out, *FAST).exit_code == 0
    damaged = copy_shards(shards)
    change_one_image_byte(damaged)
    line = one_line_error(train("--shards", damaged, "--out", tmp_path / "new", *FAST))
    assert ".tar: content differs from the manifest (sha256 mismatch" in line
    result = CliRunner().invoke(eval_app, ["--shards", str(damaged), "--checkpoint",
                                           str(checkpoint_path(out)), "--device", "cpu"])
    assert ".tar: content differs from the manifest" in one_line_error(result)
    skipped = CliRunner().invoke(eval_app, ["--shards", str(damaged), "--checkpoint",
                                            str(checkpoint_path(out)), "--device", "cpu",
                                            "--no-verify"])
    assert skipped.exit_code == 0, skipped.output


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    assert train("--shards", shards, "--out", out, *FAST).exit_code == 0
    return checkpoint_path(out)


@pytest.mark.dali
@pytest.mark.parametrize("target", ["file/x.json", "folder", "/proc/x.json"])
def test_json_output_is_checked_before_the_evaluation(shards, trained, tmp_path, target):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    path = target if target.startswith("/") else tmp_path / target
    result = CliRunner().invoke(eval_app, ["--shards", str(shards), "--checkpoint",
                                           str(trained), "--device", "cpu", "--json",
                                           str(path)])
    line = one_line_error(result)
    assert str(path) in line and "Rank" not in result.output


@pytest.mark.dali
def test_json_rows_are_written(shards, trained, tmp_path):
    result = CliRunner().invoke(eval_app, ["--shards", str(shards), "--checkpoint",
                                           str(trained), "--device", "cpu", "--json",
                                           str(tmp_path / "rows.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert {r["feature"] for r in rows} == {"pool", "fc"}


@pytest.mark.dali
def test_a_huge_batch_size_is_refused_and_batches_follow_the_data(shards, trained, tmp_path):
    from tests.loaders import eval_loader

    result = CliRunner().invoke(eval_app, ["--shards", str(shards), "--checkpoint",
                                           str(trained), "--batch-size", "20000"])
    assert result.exit_code == 2 and "Invalid value for '--batch-size'" in result.output
    loader = eval_loader("dali", shards, list(range(10)), batch_size=4096)
    assert loader.batch_size == 10 and [len(b["samples"]) for b in loader] == [10]


@pytest.mark.dali
def test_a_model_trained_at_another_size_is_tested_at_its_size(shard_dir, trained, caplog):
    import logging

    from vireid.train.checkpoint_eval import EvaluationSettings, evaluate_checkpoint

    larger = shard_dir("sysu", "jpeg", width=40, height=80)
    with caplog.at_level(logging.WARNING):
        rows = evaluate_checkpoint(larger, trained, EvaluationSettings(device="cpu", verify=False))
    assert "trained on 32×64 images, these shards hold 40×80: resizing the test images to " \
           "32×64" in caplog.text
    assert rows


def test_reference_loader_names_a_damaged_image(shards, copy_shards):
    from tests.loaders import eval_loader, train_loader
    from vireid.errors import VireidError

    damaged = copy_shards(shards)
    damage_bodies(damaged, 30, b"\x13" * 300)
    message = r"\.tar: image \S+ cannot be decoded \(.*\): damaged shard, run `vireid-shard"
    with pytest.raises(VireidError, match=message):
        next(iter(train_loader("reference", damaged, batch_ids=4, num_pos=2)))
    with pytest.raises(VireidError, match=message):
        list(eval_loader("reference", damaged, list(range(8)), batch_size=4))
    shutil.rmtree(damaged)


@pytest.mark.dali
def test_resume_with_the_default_regdb_trial_spelled_out(shard_dir, tmp_path):
    regdb = shard_dir("regdb", "jpeg", **TINY)
    out = tmp_path / "run"
    assert train("--shards", regdb, "--out", out, *FAST).exit_code == 0
    longer = [*FAST[:FAST.index("--epochs")], "--epochs", "2",
              *FAST[FAST.index("--epochs") + 2:]]
    result = train("--shards", regdb, "--out", out, *longer, "--trial", "1", "--resume")
    assert result.exit_code == 0, result.output
    line = one_line_error(train("--shards", regdb, "--out", out, *longer, "--epochs", "3",
                                "--trial", "2", "--resume"))
    assert "was trained on another training view (trial1 ≠ trial2" in line


@pytest.mark.dali
def test_a_destroyed_jpeg_header_is_one_line_in_training_and_testing(shards, copy_shards,
                                                                     trained, tmp_path):
    """With --no-verify the bytes reach the loaders: their guard names the tar and the key
    (formerly a segfault in training's first evaluation and a 30-line DALI traceback)."""
    damaged = copy_shards(shards)
    damage_bodies(damaged, 0, b"\0" * 16)
    pattern = r"\.tar: image \S+ is not a JPEG: damaged shard, run `vireid-shard verify"
    before = set(Path("/tmp").glob("vireid-eval-idx-*"))
    line = one_line_error(train("--shards", damaged, "--out", tmp_path / "run", *FAST,
                                "--no-verify"))
    assert re.search(pattern, line), line
    result = CliRunner().invoke(eval_app, ["--shards", str(damaged), "--checkpoint",
                                           str(trained), "--device", "cpu", "--no-verify"])
    assert re.search(pattern, one_line_error(result))
    assert set(Path("/tmp").glob("vireid-eval-idx-*")) == before  # nothing left behind
