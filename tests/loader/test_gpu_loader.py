"""The CUDA loaders against the CPU graph on the same step plans (skipped without a GPU).

Tolerances: raw and PNG shards decode to the same bytes on both devices, so the batches are
identical; JPEG goes through nvJPEG on the GPU and libjpeg-turbo on the CPU (both with fancy
chroma upsampling), whose integer IDCTs may round differently: at most JPEG_LEVELS grey levels
apart, and on average well under one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.loader.test_loaders import check_augmentation, take, to_uint8
from tests.loaders import eval_loader, train_loader

pytestmark = pytest.mark.gpu
SMALL = {"width": 32, "height": 64}
JPEG_LEVELS, JPEG_MEAN_LEVELS = 8.0, 0.5
OPTIONS = {"batch_ids": 4, "num_pos": 2, "seed": 3}


def differences(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return np.abs(to_uint8(a.cpu()) - to_uint8(b.cpu()))


@pytest.mark.parametrize("encoding", ["raw", "png", "jpeg"])
@pytest.mark.parametrize("augment", [False, True])
def test_cuda_training_batches_match_the_cpu_graph(shard_dir, encoding, augment):
    shards = shard_dir("sysu", encoding)
    options = {**OPTIONS, "augment": augment}
    gpu = take(train_loader("dali", shards, device="cuda", **options), 3)
    cpu = take(train_loader("dali", shards, device="cpu", cpu_augment="dali", **options),
               3)
    for a, b in zip(gpu, cpu):
        for key in ("visible", "infrared"):
            assert a[key].is_cuda and a[key].dtype == torch.float16
            assert a[key].is_contiguous(memory_format=torch.channels_last)
            diff = differences(a[key], b[key])
            if encoding == "jpeg":
                assert diff.max() <= JPEG_LEVELS and diff.mean() <= JPEG_MEAN_LEVELS, \
                    (diff.max(), diff.mean())
            else:
                assert diff.max() <= 0.5, diff.max()
        assert torch.equal(a["labels_visible"].cpu(), b["labels_visible"])


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_cuda_batches_held_across_epochs_keep_their_values(shard_dir, encoding):
    """No synchronisation, no clone: every batch of two epochs is kept while DALI runs ahead
    and reuses its memory; each must still equal a fresh copy."""
    shards = shard_dir("sysu", encoding, **SMALL)
    held = [b["visible"] for _ in range(2) for b in train_loader(
        "dali", shards, device="cuda", **OPTIONS)]
    torch.cuda._sleep(10_000_000)  # a long kernel in front of the reads below
    copies = [b["visible"].clone() for _ in range(2) for b in train_loader(
        "dali", shards, device="cuda", **OPTIONS)]
    assert all(torch.equal(a, b) for a, b in zip(held, copies))


@pytest.mark.parametrize("encoding", ["raw", "png", "jpeg"])
def test_cuda_evaluation_batches_match_the_cpu(shard_dir, encoding):
    shards = shard_dir("sysu", encoding)
    samples = np.arange(0, 200, 3)
    gpu = [b["images"] for b in eval_loader("dali", shards, samples, batch_size=16,
                                                 device="cuda")]
    cpu = [b["images"] for b in eval_loader("dali", shards, samples, batch_size=16)]
    assert len(gpu) == len(cpu)
    for a, b in zip(gpu, cpu):
        diff = differences(a, b)
        assert diff.max() <= (JPEG_LEVELS if encoding == "jpeg" else 0.5), diff.max()


def test_cuda_augmentation_statistics(shard_dir):
    """Flip rate, crop offsets, black padding and erase boxes read back from GPU pixels."""
    shards = shard_dir("sysu", "raw", **SMALL)
    check_augmentation(train_loader("dali", shards, device="cuda", batch_ids=8,
                                         num_pos=4, seed=7))
