"""``vireid-export`` and ``vireid-test --model`` met as a hostile but realistic user meets them:
each refusal is one line naming the file or option (after the progress lines where the work
had begun), no traceback, exit 1 (2 for a value refused while parsing), and nothing written:
no --out, no temporary folder beside it, inputs unchanged. ``--help`` explains every
option."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import vireid.export.pipeline as pipeline
from tests.cli_results import one_line_error
from tests.export.conftest import evaluate, export
from tests.test_cli import command

pytest.importorskip("onnx", reason="needs the export extra: pip install 'vireid[export]'")
pytest.importorskip("onnxruntime", reason="needs the export extra: pip install 'vireid[export]'")


def snapshot(*folders: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for f in folders for p in sorted(Path(f).rglob("*"))
            if p.is_file()}


def assert_nothing_written(out: Path, existed: bool = False) -> None:
    """No --out (unless it was there before), and no temporary folder beside it."""
    parent = Path(os.path.realpath(out)).parent
    if parent.is_dir():
        assert not [p.name for p in parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert existed or not os.path.lexists(out)


@pytest.fixture
def agw(checkpoints):
    return checkpoints("agw")


def test_a_missing_checkpoint_is_one_line(tmp_path):
    out = tmp_path / "out"
    line = one_line_error(export("--checkpoint", tmp_path / "missing.pt", "--out", out))
    assert "missing.pt: checkpoint not found" in line
    assert_nothing_written(out)


@pytest.mark.parametrize("content", ["text", "other torch file"])
def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path, content):
    path, out = tmp_path / "model.pt", tmp_path / "out"
    if content == "text":
        path.write_text("not a checkpoint\n")
    else:
        torch.save({"weights": torch.zeros(2)}, path)
    line = one_line_error(export("--checkpoint", path, "--out", out))
    assert "model.pt: not a" in line
    assert_nothing_written(out)


OUTSIDE_INPUTS = {  # case → (--out from the paths, extra options, what the line says)
    "the checkpoint itself": (lambda p: p["checkpoint"], [], "would write over the checkpoint"),
    "inside the shards": (lambda p: p["shards"] / "export", ["--shards"],
                          "would write inside the shard folder"),
    "the shard folder": (lambda p: p["shards"], ["--shards"], "would write inside the shard"),
    "a link to the shards": (lambda p: p["link"], ["--shards"], "would write inside the shard"),
    "around the checkpoint": (lambda p: p["run"], ["--overwrite"], "--out holds the checkpoint"),
    "inside the checkpoint": (lambda p: p["checkpoint"] / "x", [], "is a file"),
}


@pytest.mark.parametrize("case", sorted(OUTSIDE_INPUTS))
def test_an_out_over_inside_or_around_an_input_is_refused(case, agw, tiny_shards, copy_shards,
                                                          tmp_path):
    shards = copy_shards(tiny_shards)
    run = tmp_path / "run"
    shutil.copytree(agw.parent.parent, run)
    (tmp_path / "link").symlink_to(shards)
    paths = {"checkpoint": run / "checkpoints" / "last.pt", "shards": shards, "run": run,
             "link": tmp_path / "link"}
    make_out, extra, words = OUTSIDE_INPUTS[case]
    out = make_out(paths)
    options = [*(["--shards", shards] if "--shards" in extra else []),
               *(["--overwrite"] if "--overwrite" in extra else [])]
    before = snapshot(shards, run)
    line = one_line_error(export("--checkpoint", paths["checkpoint"], "--out", out, *options))
    assert words in line, line
    assert snapshot(shards, run) == before
    assert_nothing_written(out, existed=case in ("the checkpoint itself", "the shard folder",
                                                 "a link to the shards", "around the checkpoint"))


def test_an_unwritable_out_is_refused_before_any_work(agw, tmp_path, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the checkpoint was read before the refusal")

    monkeypatch.setattr(pipeline, "read_model_checkpoint", no_work)
    (tmp_path / "file").write_text("in the way\n")
    for out, words in ((tmp_path / "file" / "out", "is a file"),
                       (Path("/proc/vireid-export-test"), "inside a system folder")):
        line = one_line_error(export("--checkpoint", agw, "--out", out))
        assert words in line, line
        assert not os.path.lexists(out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(agw, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = one_line_error(export("--checkpoint", agw, "--out", folder / "out"))
    finally:
        folder.chmod(0o755)
    assert "is read-only for this user" in line


@pytest.mark.parametrize("opset", ["12", "21", "x"])
def test_an_opset_out_of_range_is_refused_while_parsing(agw, tmp_path, opset):
    out = tmp_path / "out"
    result = export("--checkpoint", agw, "--out", out, "--opset", opset)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "Invalid value for '--opset'" in errors[0], result.output
    assert_nothing_written(out)


def test_an_opset_for_torchscript_and_a_size_the_checkpoint_contradicts_are_refused(agw,
                                                                                    tmp_path):
    out = tmp_path / "out"
    line = one_line_error(export("--checkpoint", agw, "--out", out, "--format",
                                 "torchscript", "--opset", "18"))
    assert "opset: is an ONNX setting" in line
    line = one_line_error(export("--checkpoint", agw, "--out", out, "--height", "128"))
    assert "--height: 128: the checkpoint was trained on images of height 64" in line
    assert_nothing_written(out)


def test_an_existing_out_is_kept_unless_it_is_an_export_and_overwrite_is_given(
        agw, torchscript_export, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    line = one_line_error(export("--checkpoint", agw, "--out", out, "--format", "torchscript"))
    assert "already exists and is not empty" in line
    line = one_line_error(export("--checkpoint", agw, "--out", out, "--format", "torchscript",
                                 "--overwrite"))
    assert "is not an earlier export" in line
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    earlier = tmp_path / "earlier"
    shutil.copytree(torchscript_export[0], earlier)
    result = export("--checkpoint", agw, "--out", earlier, "--format", "torchscript",
                    "--parity-images", "2", "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier", "out"]  # nothing beside


def test_a_parity_failure_keeps_nothing(agw, tmp_path, monkeypatch):
    real = pipeline.open_runner

    def off_by_a_little(*args, **kwargs):
        runner = real(*args, **kwargs)
        return lambda images: tuple(output + 1e-3 for output in runner(images))

    monkeypatch.setattr(pipeline, "open_runner", off_by_a_little)
    out = tmp_path / "new" / "out"
    result = export("--checkpoint", agw, "--out", out, "--format", "torchscript",
                    "--parity-images", "2")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.output.rstrip().endswith(errors[0]), result.output
    line = errors[0]  # after the progress lines of the work done
    assert "visible.pt: output pool differs from PyTorch by up to 0.001" in line
    assert "nothing was kept" in line
    assert not (tmp_path / "new").exists()  # not even the parent made for it


def test_vireid_test_model_refuses_what_is_not_a_whole_export(torchscript_export, agw,
                                                              tiny_shards, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(torchscript_export[0], folder)
    cases = [
        (["--model", tmp_path], "not a vireid-export folder (no export.json)"),
        (["--model", folder, "--checkpoint", agw], "or --model (a vireid-export folder) alone"),
        (["--model", folder, "--amp", "bf16"], "exported graphs are float32"),
        (["--model", folder, "--json", folder / "rows.json"],
         "would write inside the exported model"),
        (["--model", folder, "--rank-lists", "2"], "needs one checkpoint file"),
    ]
    for arguments, words in cases:
        line = one_line_error(evaluate("--shards", tiny_shards, *arguments))
        assert words in line, line
    damaged = bytearray((folder / "infrared.pt").read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (folder / "infrared.pt").write_bytes(bytes(damaged))
    line = one_line_error(evaluate("--shards", tiny_shards, "--model", folder))
    assert "infrared.pt: does not match the sha256 in export.json" in line
    assert not (folder / "rows.json").exists()


def test_help_explains_every_option():
    text = subprocess.run([command("vireid-export"), "--help"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "100"})
    assert text.returncode == 0, text.stderr
    flat = " ".join(text.stdout.split())
    for option, words in {"--checkpoint": "original AGW, CAJ or DEEN code",
                          "--shards": "real test images", "--out": "a failure keeps nothing",
                          "--format <onnx|torchscript>": "torch.jit.load",
                          "--opset": "[range: 13 ≤ x ≤ 20]", "--height": "does not record",
                          "--width": "as --height", "--parity-images": "parity check",
                          "--overwrite": "earlier export"}.items():
        assert option in flat and words in flat, option
    assert "Flip averaging is left to the caller" in flat
    test_help = " ".join(evaluate_help().split())
    assert "--model <path> Folder written by vireid-export" in test_help


def evaluate_help() -> str:
    from typer.testing import CliRunner

    from vireid.cli.test import app

    return CliRunner().invoke(app, ["--help"], env={"COLUMNS": "100"}).output
