"""Training statistics under torchrun: two gloo processes report what one process holding the
whole batch reports.

Formerly the accuracy was W× too small: the correct count was averaged over the W ranks, then
divided by the image count summed over them. Each global step here has 8 images split 4 + 4;
the engine's summary runs in two real processes on their halves and in this process on the
whole steps, and the numbers must agree.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing
import torch.nn.functional as F

from vireid.train.engine import _summary

WORLD, CLASSES = 2, 5
# 1 where a step's image is classified correctly: 3 + 1, 4 + 2 and 0 + 1 of 4 per rank
CORRECT = torch.tensor([[1, 1, 0, 1, 0, 0, 1, 0],
                        [1, 1, 1, 1, 0, 1, 0, 1],
                        [0, 0, 0, 0, 0, 1, 0, 0]])
STEPS, IMAGES = CORRECT.shape
TRIPLET = torch.tensor([[0.9, 0.5], [0.7, 0.4], [0.3, 0.2]])  # per step and rank
OPTIMIZER = SimpleNamespace(param_groups=[{"lr": 0.01}])


def step_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Logits and labels of every global step, right exactly where ``CORRECT`` says."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for correct in CORRECT:
        logits = torch.randn(IMAGES, CLASSES, generator=generator)
        labels = (logits.argmax(dim=1) + 1 - correct) % CLASSES
        batches.append((logits, labels))
    return batches


def sums_of(rows: slice, triplets: torch.Tensor) -> torch.Tensor:
    """The engine's running sums over the steps (total, id, triplet, correct) for ``rows``."""
    sums = torch.zeros(4)
    for (logits, labels), triplet in zip(step_batches(), triplets):
        identity = F.cross_entropy(logits[rows], labels[rows])
        correct = (logits[rows].argmax(dim=1) == labels[rows]).sum()
        sums += torch.stack([identity + triplet, identity, triplet, correct.float()])
    return sums


def rank_summary(rank: int, folder: str) -> None:
    """One rank: join the gloo group, summarise its half of every step, write the result."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                            world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    try:
        share = IMAGES // WORLD
        sums = sums_of(slice(rank * share, (rank + 1) * share), TRIPLET[:, rank])
        stats = _summary(sums, STEPS, STEPS * share, time.perf_counter(), OPTIMIZER)
    finally:
        dist.destroy_process_group()
    Path(folder, f"rank{rank}.json").write_text(json.dumps(stats))


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("accuracy")
    torch.multiprocessing.spawn(rank_summary, args=(str(folder),), nprocs=WORLD)
    return [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(WORLD)]


@pytest.fixture(scope="module")
def single() -> dict:
    """One process with the whole batch of every step (its triplet: the ranks' mean)."""
    sums = sums_of(slice(None), TRIPLET.mean(dim=1))
    return _summary(sums, STEPS, STEPS * IMAGES, time.perf_counter(), OPTIMIZER)


def test_one_process_reports_correct_over_images(single):
    assert single["accuracy"] == pytest.approx(11 / 24)
    assert single["images"] == 24


def test_two_processes_report_the_accuracy_of_one_with_the_whole_batch(ranks, single):
    rank0, rank1 = ranks
    assert rank0["accuracy"] == rank1["accuracy"] == pytest.approx(single["accuracy"])
    assert rank0["images"] == rank1["images"] == single["images"] == 24


def test_losses_stay_means_over_steps_and_ranks(ranks, single):
    for stats in ranks:
        # equal halves: the mean of the halves' cross-entropies is the whole batch's
        assert stats["loss_id"] == pytest.approx(single["loss_id"], rel=1e-6)
        assert stats["loss_triplet"] == pytest.approx(float(TRIPLET.mean()), rel=1e-6)
        assert stats["loss"] == pytest.approx(stats["loss_id"] + stats["loss_triplet"],
                                              rel=1e-6)
        assert stats["lr"] == 0.01
