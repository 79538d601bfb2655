"""The decoded cache on CUDA (``device`` and ``host``) against the CPU path, bit for bit; a
cached step never makes the host wait for the GPU. The tensor augmenter on the GPU against
the reference and the kernel's formula: test_augmenters.py."""

from __future__ import annotations

import time

import pytest
import torch

from tests.loader.test_cache import OPTIONS, SMALL, _same, _visible
from tests.loaders import train_loader
from vireid.loader.tensor_augment import augment_tensor

pytestmark = pytest.mark.gpu


def _cpu(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.cpu() for t in tensors]


@pytest.mark.dali
@pytest.mark.parametrize("cache", ["device", "host"])
@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_cuda_cache_equals_the_cpu_cache(shard_dir, encoding, cache):
    shards = shard_dir("sysu", encoding, **SMALL)
    expected = _visible(train_loader("dali", shards, cache="host", **OPTIONS), epochs=2)
    loader = train_loader("dali", shards, cache=cache, device="cuda", **OPTIONS)
    got = _visible(loader, epochs=2)
    assert got[0].is_cuda
    assert loader.route.cache == cache and loader.first_pass().where == cache
    assert loader._cache.images.is_cuda == (cache == "device")
    assert not loader._cache.images.is_pinned()  # pageable: no power-of-two rounding
    _same(_cpu(got), expected)


@pytest.mark.dali
@pytest.mark.parametrize("cache", ["device", "host"])
def test_a_cuda_cache_step_never_waits_for_the_gpu(shard_dir, cache):
    """With half a second of GPU work queued (as a backward pass would be), a cached step
    returns at once and makes no synchronising call (``set_sync_debug_mode("error")`` turns
    any into an error): its parameters travel in one pinned, non-blocking copy."""
    shards = shard_dir("sysu", "raw", **SMALL)
    loader = train_loader("dali", shards, cache=cache, device="cuda", **OPTIONS)
    next(iter(loader))  # decoded; normalisation tables made
    cached, plan = loader._cache, loader.plan(0, 1)
    rows = cached.row_of[plan.samples]
    torch.cuda.synchronize()
    torch.cuda._sleep(2_000_000_000)  # ~0.5-1 s of GPU time at 2-4 GHz
    torch.cuda.set_sync_debug_mode("error")
    try:
        start = time.perf_counter()
        got = cached.batch(plan)
        host_seconds = time.perf_counter() - start
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert host_seconds < 0.2, host_seconds
    expected = augment_tensor(cached.images.index_select(
        0, torch.as_tensor(rows, device=cached.images.device)).cuda(), plan.params)
    assert torch.equal(got, expected)
