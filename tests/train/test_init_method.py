"""``--init`` across networks: DEEN's layout and AGW's share nothing, so a checkpoint of one
given to the other method is refused in one line that names the method that fits."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from vireid.cli.train import app as train_app

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
