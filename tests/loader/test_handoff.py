"""Batch lifetime: a batch stays valid for as long as anyone holds it, however far DALI runs
ahead (CPU here; the CUDA copy is checked in test_gpu_loader.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.loaders import eval_loader, train_loader
from vireid.loader.dali_pipes import eval_pipeline
from vireid.loader.handoff import run_pipeline, to_torch
from vireid.shards.encode import Encoding

pytestmark = pytest.mark.dali

SMALL = {"width": 32, "height": 64}


def test_dali_graph_batches_held_across_epochs_keep_their_values(shard_dir):
    """The DALI-operator graph hands out views of DALI's memory on the CPU: held without a
    copy over two epochs (DALI reuses its buffers meanwhile), they equal fresh copies."""
    shards = shard_dir("sysu", "raw", **SMALL)
    options = {"batch_ids": 4, "num_pos": 2, "seed": 5, "cpu_augment": "dali"}
    held = [b["visible"] for _ in range(2) for b in train_loader("dali", shards,
                                                                       **options)]
    copies = [b["visible"].clone() for _ in range(2) for b in train_loader(
        "dali", shards, **options)]
    assert len(held) == len(copies) > 4
    assert all(torch.equal(a, b) for a, b in zip(held, copies))


def test_eval_batches_held_equal_a_second_pass(shard_dir):
    shards = shard_dir("sysu", "jpeg", **SMALL)
    loader = eval_loader("dali", shards, np.arange(40), batch_size=8)
    held = [b["images"] for b in loader]
    again = [b["images"].clone() for b in loader]  # the same loader, iterated again
    assert len(held) == len(again) == 5
    assert all(torch.equal(a, b) for a, b in zip(held, again))


def test_to_torch_on_the_cpu_shares_dali_memory_and_keeps_it_alive():
    """The tensor is a view (no copy on the CPU) and owns a reference: it outlives the
    pipeline that produced it."""
    images = [np.full((8, 4, 3), i, np.uint8) for i in range(2)]
    pipe = eval_pipeline(lambda info: images, batch_size=2, encoding=Encoding.RAW,
                         stored=(8, 4), size=(8, 4), device="cpu", device_id=0, num_threads=1)
    (output,) = run_pipeline(pipe, "cpu")
    tensor = to_torch(output)
    assert tensor.dtype == torch.float16 and tuple(tensor.shape) == (2, 8, 4, 3)
    expected = tensor.clone()
    del pipe, output
    assert torch.equal(tensor, expected)
