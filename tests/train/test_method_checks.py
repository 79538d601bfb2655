"""What a method checks at the start of a run: ``--init`` across networks (DEEN's layout and
AGW's share nothing, so a checkpoint of one given to the other method is refused in one line
naming the method that fits), and shards of another size than the authors' (one warning)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vireid.cli.train import app as train_app
from vireid.train.methods import get_method

SMALL = {"width": 32, "height": 64}  # DEEN's PNL needs even feature-map sizes
TINY = ["--pretrained", "none", "--device", "cpu", "--loader", "reference", "--arch",
        "resnet18", "--epochs", "1", "--max-steps", "1",
        "--batch-ids", "2", "--num-pos", "2", "--warmup-epochs", "1", "--milestones", "2",
        "3", "--amp", "off", "--eval-every", "5"]


@pytest.fixture(scope="module")
def trained(shard_dir, tmp_path_factory):
    """``trained(method)`` → the last.pt of a one-step run of ``method`` on fake SYSU."""
    shards, made = shard_dir("sysu", **SMALL), {}

    def make(method: str):
        if method not in made:
            out = tmp_path_factory.mktemp(method) / "run"
            result = CliRunner().invoke(train_app, ["--method", method, "--shards",
                                                    str(shards), "--out", str(out), *TINY])
            assert result.exit_code == 0, result.output
            made[method] = out / "checkpoints" / "last.pt"
        return made[method]

    return make


@pytest.mark.parametrize(("saved", "method"), [("deen", "agw"), ("deen", "caj"),
                                               ("agw", "deen")])
def test_init_from_another_network_names_the_method_that_fits(trained, shard_dir, saved,
                                                               method, tmp_path):
    path = trained(saved)
    result = CliRunner().invoke(train_app, ["--method", method, "--shards",
                                            str(shard_dir("sysu", **SMALL)), "--out",
                                            str(tmp_path / "run"), "--init", str(path), *TINY])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert lines[-1] == (f"error: {path}: holds a {saved} network, which --method {method} "
                         f"cannot start from: use --method {saved}"), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_deen_on_other_sizes_warns_once(shard_dir, tmp_path):
    """Through the installed command, as a user sees it (stderr)."""
    shards = shard_dir("sysu", **SMALL)
    result = subprocess.run([str(Path(sys.executable).parent / "vireid-train"), "--method",
                             "deen", "--shards", str(shards), "--out", str(tmp_path / "run"),
                             *TINY], capture_output=True, text=True, timeout=540,
                            env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    wanted = ("deen: the shards hold 64x32 images; the authors train at 384x144 (Lanczos "
              "pre-resize: vireid-shard build … --height 384 --width 144), so results will not "
              "compare with theirs")
    lines = (result.stdout + result.stderr).splitlines()
    assert [line for line in lines if "the authors train at" in line] == [wanted]


def test_the_authors_size_is_quiet():
    assert get_method("deen").size_warning(384, 144) is None
    assert get_method("deen").size_warning(288, 144) is not None
    assert all(get_method(name).size_warning(64, 32) is None for name in ("agw", "caj", "base"))
