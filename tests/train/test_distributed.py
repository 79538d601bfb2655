"""Two CPU processes under torchrun (gloo) on fake shards."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vireid.loader.sampler import IdentitySampler
from vireid.shards.manifest import load_manifest
from vireid.train.checkpoint import load_checkpoint
from vireid.train.config import TrainConfig
from vireid.train.runner import checkpoint_path

WORKER = Path(__file__).with_name("ddp_worker.py")
pytestmark = [pytest.mark.slow, pytest.mark.dali]


def launch(config: TrainConfig, record: Path, nproc: int = 2, stop_at=None):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", str(WORKER), json.dumps(config.to_dict()),
               str(record)]
    if stop_at is not None:
        command.append(str(stop_at))
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def records(record: Path, nproc: int = 2) -> list[dict]:
    return [json.loads(Path(f"{record}.rank{r}.json").read_text()) for r in range(nproc)]


def settings(shards, out, **overrides) -> TrainConfig:
    values = dict(shards=str(shards), out=str(out), arch="resnet18", pretrained="none",
                  epochs=2, batch_ids=4, num_pos=2, amp="off", max_steps=3, log_every=1,
                  eval_every=10, warmup_epochs=1, milestones=(2, 3), num_threads=1,
                  device="cpu")
    return TrainConfig.from_flat(**{**values, **overrides})


@pytest.fixture(scope="module")
def shards(shard_dir):
    return shard_dir("sysu", "jpeg", width=32, height=64)


@pytest.fixture(scope="module")
def straight_run(shards, tmp_path_factory):
    work = tmp_path_factory.mktemp("ddp")
    result = launch(settings(shards, work / "run"), work / "record")
    assert result.returncode == 0, result.stderr[-3000:]
    return work, records(work / "record")


def test_ranks_split_each_step_and_together_equal_one_process(shards, straight_run):
    _, (rank0, rank1) = straight_run
    manifest = load_manifest(shards)
    sampler = IdentitySampler.from_view(manifest.training_view(None), batch_ids=4, num_pos=2,
                                        seed=0)
    assert len(rank0["labels"]) == len(rank1["labels"]) == 6
    for (e0, s0, a), (e1, s1, b) in zip(rank0["labels"], rank1["labels"]):
        assert (e0, s0) == (e1, s1)
        assert not set(a) & set(b)
        np.testing.assert_array_equal(a + b, sampler.step(e0, s0).labels)


def test_parameters_stay_equal_across_ranks(straight_run):
    _, (rank0, rank1) = straight_run
    assert rank0["digest"] == rank1["digest"]
    for rank in (rank0, rank1):  # a real process group and DDP, not one process alone
        assert (rank["backend"], rank["world_size"], rank["model"]) == (
            "gloo", 2, "DistributedDataParallel")


def test_gathered_evaluation_equals_a_single_process_test(shards, straight_run):
    """Each rank extracts its slice in its own batches: convolutions over other batch
    compositions round differently (~1e-6 on the features), which can reorder near-ties in a
    ranking, so metrics agree to 2e-3 rather than bit for bit."""
    from vireid.train.checkpoint_eval import EvaluationSettings, evaluate_checkpoint

    work, (rank0, rank1) = straight_run
    assert rank1["evaluations"] == [] and rank0["evaluations"]
    single = evaluate_checkpoint(shards, checkpoint_path(work / "run"),
                                 EvaluationSettings(amp="off", device="cpu"))
    assert len(single) == len(rank0["evaluations"])
    for ours, theirs in zip(rank0["evaluations"], single):
        assert ours["trial"] == theirs["trial"] and ours["feature"] == theirs["feature"]
        for key in ("rank1", "rank5", "mAP", "mINP"):
            assert ours[key] == pytest.approx(theirs[key], abs=2e-3)


def test_resume_after_a_kill_matches_and_other_world_sizes_resume(shards, straight_run,
                                                                  tmp_path):
    _, (reference, _) = straight_run
    killed = launch(settings(shards, tmp_path / "run"), tmp_path / "killed", stop_at=1)
    assert killed.returncode != 0
    saved = load_checkpoint(checkpoint_path(tmp_path / "run"))  # killed as epoch 1 started:
    assert saved["epoch"] == 0  # epoch 0 is saved and complete, nothing of epoch 1
    shutil.copytree(tmp_path / "run", tmp_path / "single")
    resumed = launch(settings(shards, tmp_path / "run", resume=True), tmp_path / "resumed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = records(tmp_path / "resumed")
    assert [row[:2] for row in again[0]["labels"]] == [[1, 0], [1, 1], [1, 2]]
    assert again[0]["digest"] == reference["digest"]
    one = launch(settings(shards, tmp_path / "single", resume=True), tmp_path / "one", nproc=1)
    assert one.returncode == 0, one.stderr[-3000:]
    alone = records(tmp_path / "one", nproc=1)[0]
    assert [row[:2] for row in alone["labels"]] == [[1, 0], [1, 1], [1, 2]]
    assert len(alone["labels"][0][2]) == 8  # the whole global batch on one rank
