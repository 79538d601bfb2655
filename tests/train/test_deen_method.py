"""``--method deen`` (docs/methods.md, DEEN): its defaults, the authors' schedule at every epoch,
the loss and accuracy over three branches, an authors' checkpoint scored by vireid-test against
the oracle network and a literal transcription of the authors' test loop, ``--init`` from one,
the RegDB variant chosen by the data, and a run through the installed command that learns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from benchmarks.original_metrics import original_eval
from tests.model.deen_oracle import embed_net, randomise
from vireid.choices import FlipRule, Views
from vireid.cli.test import app as eval_app
from vireid.cli.train import app as train_app
from vireid.constants import IMAGENET_MEAN, IMAGENET_STD
from vireid.errors import VireidError
from vireid.eval.protocols import samples_to_extract
from vireid.loader.source import ShardBytes
from vireid.model.deen_blocks import DEE, MFA
from vireid.records import Modality
from vireid.train.config import TrainConfig
from vireid.train.distributed import DistEnv
from vireid.train.engine import train_one_epoch
from vireid.train.imported import read_model_checkpoint
from vireid.train.methods import get_method, list_methods
from vireid.train.runner import _build
from vireid.train.schedule import make_optimizer

SMALL = {"width": 32, "height": 64}  # feature maps 16×8, 8×4, 4×2: even H·W, as PNL needs
DATASETS = {"sysu": "sysu", "regdb": "regdb"}  # vireid's dataset → the authors' `dataset`
FAST = ["--pretrained", "none", "--device", "cpu", "--loader", "reference"]
MODAL = {Modality.VISIBLE: 1, Modality.INFRARED: 2}  # the authors' test_mode per modality


def authors_lr(epoch: int, lr: float = 0.1) -> float:
    """DEEN/train.py L236-253 (DEEN.md §1.6): warm-up lr·(e+1)/10 for epochs 0-9, lr for
    10-19, ×0.1 for 20-79, ×0.01 from 80 on."""
    if epoch < 10:
        return lr * (epoch + 1) / 10
    if epoch < 20:
        return lr
    if epoch < 80:
        return lr * 0.1
    return lr * 0.01


def deen_config(**values) -> TrainConfig:
    return TrainConfig.with_recipe(values.pop("recipe", "vireid"), shards="s", out="o",
                                   method="deen", **values)


def test_deen_is_registered_with_its_recipe():
    spec = get_method("deen")
    assert "deen" in list_methods()
    assert (spec.epochs, spec.views, spec.flip, spec.flip_rule, spec.features, spec.select,
            spec.branches) == (151, Views.SINGLE, True, FlipRule.SUM, ("all", "weighted"),
                               "all", 3)
    assert spec.model_options("regdb") == {"variant": "regdb"}
    assert spec.model_options("sysu") == spec.model_options("llcm") == {"variant": "full"}
    text = " ".join(CliRunner().invoke(train_app, ["--help"]).output.split())
    assert "deen: DEEN's network" in text


def test_defaults_fill_what_is_not_given():
    plain = deen_config()
    assert (plain.epochs, plain.optimisation.milestones, plain.sampling.batch_ids,
            plain.sampling.num_pos, plain.evaluation.every) == (151, (20, 80), 6, 4, 2)
    assert (plain.optimisation.lr, plain.optimisation.momentum,
            plain.optimisation.weight_decay, plain.optimisation.warmup_epochs) == \
        (0.1, 0.9, 5e-4, 10)
    original = deen_config(recipe="original")
    assert (original.evaluation.every, original.evaluation.original_schedule,
            original.evaluation.first_trial_only, original.evaluation.flip) == \
        (1, True, True, False)
    assert [e for e in range(151) if original.evaluation.due(e, 151)] == list(range(1, 151))
    mine = deen_config(batch_ids=3, milestones=(5, 9), eval_every=4, recipe="original")
    assert (mine.sampling.batch_ids, mine.optimisation.milestones, mine.evaluation.every) == \
        (3, (5, 9), 4)
    assert TrainConfig.with_recipe("vireid", shards="s", out="o").optimisation.milestones == \
        (20, 50)  # AGW's unchanged
    assert deen_config().to_dict()["milestones"] == [20, 80]


@pytest.mark.parametrize("values, message", [
    ({"triplet": "wrt"}, "deen's losses are its own"),
    ({"views": "channel"}, "deen trains on single views only"),
])
def test_deen_refuses_what_it_cannot_do(values, message):
    with pytest.raises(VireidError, match=message):
        deen_config(**values)
    assert deen_config(triplet="hard", views="single").model.method == "deen"


@pytest.mark.parametrize("dataset, variant", [("sysu", "full"), ("regdb", "regdb")])
def test_schedule_lr_of_every_group_at_every_epoch(dataset, variant):
    """The runner's optimiser for a DEEN run: SGD with nesterov, the authors' groups (DEE and
    MFA at 0.1·lr) and their schedule over all 151 epochs; the variant from the data."""
    config = deen_config(arch="resnet18", pretrained="none", device="cpu")
    parts = _build(config, SimpleNamespace(num_classes=5), torch.device("cpu"), None,
                   DistEnv(), dataset)
    model, optimizer, scheduler = parts.model, parts.optimizer, parts.scheduler
    assert model.variant == variant and hasattr(model, "MFA3") == (variant == "full")
    assert optimizer.defaults["nesterov"] and optimizer.defaults["momentum"] == 0.9
    assert optimizer.defaults["weight_decay"] == 5e-4
    names = [group["name"] for group in optimizer.param_groups]
    assert names == ["backbone", "bottleneck", "classifier"]
    slow = {id(p) for p in optimizer.param_groups[0]["params"]}
    added = [p for m in model.modules() if isinstance(m, DEE | MFA) for p in m.parameters()]
    assert added and all(id(p) in slow for p in added)
    head = {id(p) for g in optimizer.param_groups[1:] for p in g["params"]}
    assert head == {id(p) for m in (model.bottleneck, model.classifier)
                    for p in m.parameters() if p.requires_grad}
    factors = {"backbone": 0.1, "bottleneck": 1.0, "classifier": 1.0}
    for epoch in range(config.epochs):
        for group in optimizer.param_groups:
            expected = factors[group["name"]] * authors_lr(epoch)
            assert group["lr"] == pytest.approx(expected, rel=1e-12), (epoch, group["name"])
        optimizer.step()
        scheduler.step()
    assert epoch == 150


class Branches(nn.Module):
    """A stand-in network with DEEN's training outputs (6B rows, branch-major) whose logits
    are right on the original branch and wrong on both expansions."""

    def __init__(self, classes: int):
        super().__init__()
        self.classes = classes
        self.weight = nn.Parameter(torch.ones(8))
        self.labels = None

    def forward(self, visible, infrared):
        rows = 3 * (len(visible) + len(infrared))
        pooled = torch.randn(rows, 8, generator=torch.Generator().manual_seed(0)) * self.weight
        right = nn.functional.one_hot(self.labels, self.classes).float()
        wrong = nn.functional.one_hot((self.labels + 1) % self.classes, self.classes).float()
        return pooled, torch.cat([right, wrong, wrong]) * 10 + 0 * self.weight.sum()


def test_one_epoch_logs_every_term_and_scores_accuracy_over_three_branches():
    classes, ids, num_pos = 5, 2, 2
    labels = torch.arange(ids).repeat_interleave(num_pos)
    batch = {"visible": torch.zeros(4, 3, 8, 4), "infrared": torch.zeros(4, 3, 8, 4),
             "labels_visible": labels, "labels_infrared": labels, "epoch": 0, "step": 0}
    model = Branches(classes)
    model.labels = torch.cat([labels, labels])
    optimizer = make_optimizer([{"params": model.parameters(), "lr": 0.01}])
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    stats = train_one_epoch(model, [batch], optimizer, scaler, device=torch.device("cpu"),
                            amp_dtype=None, method="deen", channels_last=False,
                            num_pos=num_pos)
    assert stats["accuracy"] == pytest.approx(1 / 3)  # 8 of 24 logit rows
    assert {"loss", "loss_id", "loss_triplet", "loss_cpm", "loss_ort"} <= set(stats)
    assert stats["loss"] == pytest.approx(stats["loss_id"] + stats["loss_triplet"]
                                          + stats["loss_cpm"] + stats["loss_ort"], rel=1e-6)
    assert stats["images"] == 8
    with pytest.raises(ValueError, match="num_pos"):
        train_one_epoch(model, [batch], optimizer, scaler, device=torch.device("cpu"),
                        amp_dtype=None, method="deen", channels_last=False)


# --- the authors' checkpoints ----------------------------------------------------------------


@pytest.fixture(scope="module", params=["regdb", "sysu"])
def authors(request, shard_dir, tmp_path_factory):
    """(dataset, raw shards, the oracle network with random weights, the file it was saved
    to as the authors' train.py saves its best model)."""
    dataset = request.param
    shards = shard_dir(dataset, "raw", **SMALL)  # exact pixels: both sides see the same input
    classes = ShardBytes(shards).manifest.training_view(None).num_classes
    with torch.device("meta"):
        oracle = embed_net(classes, DATASETS[dataset])
    oracle = oracle.to_empty(device="cpu")
    randomise(oracle, torch.Generator().manual_seed(7))
    calibrate(oracle.eval(), shards)
    path = tmp_path_factory.mktemp("authors") / f"{dataset}_deen_p4_n6_lr_0.1_seed_0_best.t"
    torch.save({"net": oracle.state_dict(), "cmc": np.linspace(0.5, 1, 20, dtype=np.float32),
                "mAP": np.float64(0.6), "mINP": np.float64(0.4), "epoch": 98}, path)
    return dataset, shards, oracle, path


def calibrate(oracle, shards) -> None:
    """The bottleneck's statistics from the test images' pooled features, as training would
    leave them. A random network's pooled features are nearly parallel (similarities within
    ~1e-3 of each other): float rounding alone would reorder them. Centred, the BN parts
    spread the similarities over several units."""
    seen = []
    hook = oracle.bottleneck.register_forward_hook(lambda m, given, out: seen.append(given[0]))
    with ShardBytes(shards) as source:
        manifest = source.manifest
        tested = samples_to_extract(manifest, manifest.protocol(manifest.default_protocol))
        for modality, numbers in tested.items():
            with torch.no_grad():
                oracle(*[pixels(source, numbers)] * 2, MODAL[modality])
    hook.remove()
    pooled = torch.cat(seen)
    with torch.no_grad():
        oracle.bottleneck.running_mean.copy_(pooled.mean(0))
        oracle.bottleneck.running_var.copy_(pooled.var(0))


def pixels(source, numbers) -> torch.Tensor:
    """Stored images as the authors' test transform gives them (ToTensor, Normalize), rounded
    to float16 as vireid's loaders hand them to the model: both sides see the same input (the
    calibrated BN parts would turn that rounding into differences of ~1e-3)."""
    manifest = source.manifest
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    images = [source.read(int(i)).reshape(manifest.height, manifest.width, 3) / 255.0
              for i in numbers]
    batch = torch.tensor(np.stack([((image - mean) / std).transpose(2, 0, 1)
                                   for image in images]), dtype=torch.float32)
    return batch.half().float().contiguous()


def fliplr(img: torch.Tensor) -> torch.Tensor:
    """The authors' test.py L98-102: the width reversed with index_select."""
    inv_idx = torch.arange(img.size(3) - 1, -1, -1).long()
    return img.index_select(3, inv_idx)


def authors_features(net, images: torch.Tensor, modal: int) -> list[np.ndarray]:
    """test.py L110-130 for one batch: the eval forward, each flipped copy's features added
    (no normalising again), split into the 3 pool and the 3 BN parts."""
    with torch.no_grad():
        feat_pool, feat_fc = net(images, images, modal)
        flip_pool, flip_fc = net(fliplr(images), fliplr(images), modal)
        feat_pool, feat_fc = feat_pool + flip_pool, feat_fc + flip_fc
    n = images.size(0)
    return [part.numpy() for feat in (feat_pool, feat_fc) for part in torch.split(feat, n)]


def authors_test(net, shards, protocol, trials) -> dict[tuple[int, str], tuple]:
    """Per trial, the authors' test loop: every part's similarity matrix, distmat7 (their
    sum, vireid's ``all``) and distmat8 (0.1·pool + 0.9·BN, ``weighted``), each scored with
    the original's per-query metric loop on the negated similarities. Their loop extracts
    the gallery again for every trial; an image's eval-mode features do not depend on the
    trial, so each image is extracted once here (the test's time, not its meaning)."""
    with ShardBytes(shards) as source:
        manifest = source.manifest
        parts: dict[int, list] = {}

        def features(numbers):
            for modality in (Modality.VISIBLE, Modality.INFRARED):
                mine = [i for i in dict.fromkeys(numbers) if i not in parts
                        and manifest.samples[i].modality is modality]
                if mine:
                    got = authors_features(net, pixels(source, mine), MODAL[modality])
                    parts.update({i: [p[row] for p in got] for row, i in enumerate(mine)})
            return [np.stack([parts[i][k] for i in numbers]) for k in range(6)]

        cams = np.array([s.cam for s in manifest.samples])
        results = {}
        for trial in protocol.trials:
            if trial.trial not in trials:
                continue
            query, gallery = features(list(trial.query)), features(list(trial.gallery))
            distmat = [np.matmul(query[k], np.transpose(gallery[k])) for k in range(6)]
            distmat7 = distmat[0] + distmat[1] + distmat[2] + distmat[3] + distmat[4] + \
                distmat[5]
            distmat8 = 0.1 * (distmat[0] + distmat[1] + distmat[2]) + \
                0.9 * (distmat[3] + distmat[4] + distmat[5])
            for name, similarity in (("all", distmat7), ("weighted", distmat8)):
                results[trial.trial, name] = original_eval(
                    -similarity, np.array(trial.query_pids), np.array(trial.gallery_pids),
                    cams[list(trial.query)], cams[list(trial.gallery)], protocol.metric)
    return results


def test_an_authors_checkpoint_is_recognised_by_its_content(authors):
    dataset, shards, oracle, path = authors
    state = read_model_checkpoint(path)
    variant = {"sysu": "full", "regdb": "regdb"}[dataset]
    assert (state["format"], state["method"], state["arch"], state["model_options"],
            state["epoch"]) == ("original DEEN", "deen", "resnet50", {"variant": variant}, 98)
    assert state["num_classes"] == oracle.classifier.weight.shape[0]
    from vireid.model import load_original

    model = load_original(path)
    assert model.variant == variant and not model.training
    theirs = oracle.state_dict()
    assert all(torch.equal(value, theirs[key]) for key, value in model.state_dict().items())


def test_vireid_test_on_an_authors_checkpoint_equals_their_test_loop(authors, tmp_path):
    dataset, shards, oracle, path = authors
    result = CliRunner().invoke(eval_app, ["--shards", str(shards), "--checkpoint", str(path),
                                           "--device", "cpu", "--loader", "reference",
                                           "--json", str(tmp_path / "rows.json"),
                                           "--save-features", str(tmp_path / "f.npz")])
    assert result.exit_code == 0, result.output
    again = CliRunner().invoke(eval_app, ["--shards", str(shards), "--features",
                                          str(tmp_path / "f.npz"), "--device", "cpu",
                                          "--json", str(tmp_path / "again.json")])
    assert again.exit_code == 0, again.output  # saved features remember the method's rows
    assert (tmp_path / "again.json").read_text() == (tmp_path / "rows.json").read_text()
    assert f"evaluating original DEEN checkpoint {path}: epoch 99" in result.output
    assert "flip averaging on (the method's default)" in result.output
    rows = json.loads((tmp_path / "rows.json").read_text())
    manifest = ShardBytes(shards).manifest
    protocol = manifest.protocol(manifest.default_protocol)
    scored = sorted({r["trial"] for r in rows if r["trial"] != "mean"})
    assert {r["feature"] for r in rows} == {"all", "weighted"} and all(r["flip"] for r in rows)
    assert len(scored) == (1 if dataset == "regdb" else len(protocol.trials))
    expected = authors_test(oracle, shards, protocol, scored)  # every trial
    assert len(expected) == 2 * len(scored)
    for (trial, feature), (cmc, mean_ap, minp) in expected.items():
        (ours,) = [r for r in rows if r["feature"] == feature and r["trial"] == trial]
        assert ours["rank1"] == pytest.approx(float(cmc[0]), abs=1e-6)
        assert ours["rank5"] == pytest.approx(float(cmc[4]), abs=1e-6)
        assert ours["mAP"] == pytest.approx(mean_ap, abs=1e-5)
        assert ours["mINP"] == pytest.approx(minp, abs=1e-5)


@pytest.mark.parametrize("authors", ["regdb"], indirect=True)  # the cheaper variant
def test_init_fine_tunes_from_an_authors_checkpoint(authors, tmp_path):
    """The run's model is the checkpoint's variant (from the data), every weight the
    authors' at the start; vireid-test rebuilds it from the run's checkpoint."""
    dataset, shards, oracle, path = authors
    out = tmp_path / "run"
    result = CliRunner().invoke(train_app, [
        "--method", "deen", "--shards", str(shards), "--out", str(out), "--init", str(path),
        *FAST, "--epochs", "1", "--max-steps", "1", "--batch-ids", "2", "--num-pos", "2",
        "--warmup-epochs", "1", "--milestones", "2", "3", "--amp", "off", "--eval-every", "5",
        "--lr", "1e-9"])
    assert result.exit_code == 0, result.output
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert saved["model_options"] == {"variant": "regdb"} and saved["method"] == "deen"
    theirs = oracle.state_dict()
    for key in ("DEE.FC11.weight", "MFA2.PNL.W.0.weight", "classifier.weight"):
        torch.testing.assert_close(saved["model"][key], theirs[key], rtol=0, atol=1e-6)
    assert "MFA3.CNL.g.weight" not in saved["model"]
    rows = CliRunner().invoke(eval_app, ["--shards", str(shards), "--checkpoint",
                                         str(out / "checkpoints" / "last.pt"), "--device",
                                         "cpu", "--loader", "reference", "--no-flip"])
    assert rows.exit_code == 0, rows.output
    assert " all " in rows.output and " weighted " in rows.output


def test_deen_through_the_installed_command_learns(shard_dir, tmp_path, caplog):
    """Four epochs of 11 steps, resnet18 at 64×32 from random weights, lr 0.02: ~20 s on 2
    free cores (3.5 min on loaded ones); Rank-1 ≈ 50 % where chance is 1 / 6."""
    shards = shard_dir("sysu", "jpeg", **SMALL)
    out = tmp_path / "run"
    result = CliRunner().invoke(train_app, [
        "--method", "deen", "--shards", str(shards), "--out", str(out), "--arch", "resnet18",
        *FAST, "--epochs", "4", "--batch-ids", "4", "--num-pos", "2", "--warmup-epochs", "1",
        "--milestones", "3", "4", "--eval-every", "4", "--lr", "0.02"])
    assert result.exit_code == 0, result.output
    assert caplog.text.count("deen: the shards hold 64x32 images; the authors train at") == 1
    assert "sysu-all (flip)" in result.output and "cpm" in result.output
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in metrics if r["kind"] == "epoch"]
    assert epochs[-1]["loss"] < epochs[0]["loss"] and epochs[-1]["accuracy"] > 0.2
    mean = {r["feature"]: r for r in metrics if r["kind"] == "eval" and r["trial"] == "mean"}
    manifest = ShardBytes(shards).manifest
    test_ids = len(set(manifest.protocol(manifest.default_protocol).trials[0].query_pids))
    assert mean["all"]["flip"] and mean["all"]["rank1"] > 2 / test_ids  # chance: 1 / ids
    assert mean["weighted"]["rank1"] > 2 / test_ids
    best = [r for r in metrics if r["kind"] == "best"]
    assert best and best[-1]["feature"] == "all"
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert saved["model_options"] == {"variant": "full"}
    assert json.loads((out / "config.json").read_text())["method"] == "deen"


def test_deen_learns_on_fake_llcm_through_the_installed_command(shard_dir, tmp_path):
    """The installed ``vireid-train`` in its own process on fake LLCM (8 training
    identities, 64×32): four epochs, ~20 s on 2 free cores; Rank-1 ≈ 50 % where chance is
    one in 8."""
    shards = shard_dir("llcm", "jpeg", **SMALL)
    out = tmp_path / "run"
    script = Path(sys.executable).parent / "vireid-train"
    result = subprocess.run([str(script), "--method", "deen", "--shards", str(shards), "--out",
                             str(out), "--arch", "resnet18", *FAST, "--epochs", "4",
                             "--batch-ids", "4", "--num-pos", "2", "--warmup-epochs", "1",
                             "--milestones", "3", "4", "--eval-every", "4", "--lr", "0.02"],
                            capture_output=True, text=True, timeout=540,
                            env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in metrics if r["kind"] == "epoch"]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    manifest = ShardBytes(shards).manifest
    protocol = manifest.protocol(manifest.default_protocol)
    assert protocol.name == "llcm-ir2vis"
    test_ids = len(set(protocol.trials[0].query_pids))
    mean = {r["feature"]: r for r in metrics if r["kind"] == "eval" and r["trial"] == "mean"}
    assert mean["all"]["rank1"] > 2 / test_ids and mean["weighted"]["rank1"] > 2 / test_ids
