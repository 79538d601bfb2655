"""Checkpoints to export, made once per session: AGW and CAJ trained by vireid on tiny fake
SYSU shards (resnet18, 64×32 images, 1 epoch of 2 steps, the reference loader: no DALI), the
original AGW code's format (its network with random weights, as its train.py saves it) and a
DEEN resnet18 checkpoint with random BatchNorm statistics and MFA gains (non-local blocks that
are not the identity they are at initialisation). ``exported(name, *options)`` runs
``vireid-export`` once per checkpoint and options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vireid.cli.export import app as export_app
from vireid.cli.test import app as eval_app
from vireid.cli.train import app as train_app
from vireid.loader.source import ShardBytes
from vireid.train.checkpoint import save_checkpoint
from vireid.train.run_folder import checkpoint_path

TINY = {"width": 32, "height": 64}  # feature maps 16×8, 8×4, 4×2: even H·W, as DEEN's PNL needs
# lr 0.01: at 0.1 two CAJ steps from random weights already drive the non-local blocks'
# activations past 1e10 (GeM's cube then overflows float32 on some images)
TRAIN = ["--arch", "resnet18", "--pretrained", "none", "--epochs", "1", "--batch-ids", "4",
         "--num-pos", "2", "--amp", "off", "--max-steps", "2", "--eval-every", "5",
         "--warmup-epochs", "1", "--milestones", "2", "3", "--lr", "0.01", "--device", "cpu",
         "--loader", "reference"]


def invoke(app, *arguments):
    return CliRunner().invoke(app, [str(a) for a in arguments])


def export(*arguments):
    """``vireid-export`` in this process."""
    return invoke(export_app, *arguments)


def evaluate(*arguments):
    """``vireid-test`` in this process, on the CPU with the reference loader."""
    return invoke(eval_app, *arguments, "--device", "cpu", "--loader", "reference")


METRICS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")


def assert_same_table(model_rows, checkpoint_rows, queries) -> None:
    """Same rows in the same order; each metric within one query's Rank-1 step of its trial
    (``queries(trial)``: its query count; ties between near-equal distances may fall the
    other way)."""
    key = [(r["protocol"], r["feature"], r["trial"], r["flip"]) for r in checkpoint_rows]
    assert [(r["protocol"], r["feature"], r["trial"], r["flip"]) for r in model_rows] == key
    for ours, theirs in zip(model_rows, checkpoint_rows, strict=True):
        step = 1 / queries(ours["trial"])
        for metric in METRICS:
            assert ours[metric] == pytest.approx(theirs[metric], abs=step + 1e-9), \
                (ours["feature"], ours["trial"], metric)


@pytest.fixture(scope="session")
def queries(tiny_shards):
    """``queries(trial)`` → the trial's query count (the mean row: the smallest)."""
    from vireid.shards.manifest import load_manifest

    manifest = load_manifest(tiny_shards)
    protocol = manifest.protocol(manifest.default_protocol)
    counts = {t.trial: len(t.query) for t in protocol.trials}
    return lambda trial: min(counts.values()) if trial == "mean" else counts[trial]


@pytest.fixture(scope="session")
def tiny_shards(shard_dir):
    return shard_dir("sysu", "jpeg", **TINY)


@pytest.fixture(scope="session")
def checkpoints(tiny_shards, tmp_path_factory):
    """``checkpoints(name)`` → the path of checkpoint ``name`` (agw, caj, original, deen),
    made on first use."""
    made: dict[str, Path] = {}
    work = tmp_path_factory.mktemp("checkpoints")

    def get(name: str) -> Path:
        if name not in made:
            made[name] = MAKERS[name](tiny_shards, work / name)
        return made[name]

    return get


def _trained(method: str):
    def make(shards, out: Path) -> Path:
        result = invoke(train_app, "--shards", shards, "--out", out, "--method", method, *TRAIN)
        assert result.exit_code == 0, result.output
        return checkpoint_path(out)

    return make


def _original(shards, folder: Path) -> Path:
    """The original AGW code's network with random weights, saved as its train.py saves."""
    from tests.model.original_oracle import embed_net, randomise

    classes = ShardBytes(shards).manifest.training_view(None).num_classes
    torch.manual_seed(0)
    net = embed_net(classes)
    randomise(net, torch.Generator().manual_seed(1))
    folder.mkdir(parents=True)
    path = folder / "sysu_agw_p4_n8_lr_0.1_seed_0_best.t"
    torch.save({"net": net.state_dict(), "cmc": np.zeros(20, np.float32),
                "mAP": np.float64(0.5), "mINP": np.float64(0.4), "epoch": 40}, path)
    return path


def _deen(shards, folder: Path) -> Path:
    """A vireid DEEN checkpoint (resnet18, the full variant) with random BatchNorm statistics
    and gains, so that every MFA block and DEE counts."""
    from vireid.model import DEEN

    manifest = ShardBytes(shards).manifest
    classes = manifest.training_view(None).num_classes
    torch.manual_seed(0)
    model = DEEN(classes, "resnet18", "full", pretrained="none")
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                for tensor, low, high in ((module.weight, 0.5, 1.5), (module.bias, -0.1, 0.1),
                                          (module.running_mean, -0.1, 0.1),
                                          (module.running_var, 0.5, 2.0)):
                    tensor.copy_(low + (high - low) * torch.rand(tensor.shape,
                                                                 generator=generator))
    path = folder / "checkpoints" / "last.pt"
    save_checkpoint({"epoch": 0, "config": {}, "model": model.state_dict(),
                     "num_classes": classes, "arch": "resnet18", "method": "deen",
                     "model_options": {"variant": "full"},
                     "data": {"dataset": manifest.dataset, "manifest_sha256": "",
                              "view": manifest.training_view(None).name,
                              "image_size": [manifest.height, manifest.width]}}, path)
    return path


MAKERS = {"agw": _trained("agw"), "caj": _trained("caj"), "original": _original,
          "deen": _deen}


@pytest.fixture(scope="session")
def exported(checkpoints, tiny_shards, tmp_path_factory):
    """``exported(name, *options)`` → (export folder, the command's result), run once."""
    done: dict[tuple, tuple] = {}
    work = tmp_path_factory.mktemp("exports")

    def get(name: str, *options: str):
        key = (name, *options)
        if key not in done:
            out = work / f"{name}-{len(done)}"
            result = export("--checkpoint", checkpoints(name), "--out", out, *options)
            assert result.exit_code == 0, result.output
            done[key] = (out, result)
        return done[key]

    return get


@pytest.fixture(scope="session")
def torchscript_export(exported, tiny_shards):
    """The AGW checkpoint exported to TorchScript (quick to make; no onnx packages)."""
    return exported("agw", "--format", "torchscript", "--shards", str(tiny_shards),
                    "--parity-images", "4")
