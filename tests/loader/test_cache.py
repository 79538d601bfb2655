"""The decoded cache (``cache host``) against the decoding loader, bit for bit, on the CPU;
its first pass, memory checks and copies. The augmenters it hands its rows to are checked
in test_augmenters.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.loader.test_augmenters import mixed_params, numpy_oracle
from tests.loader.test_fused import assert_bitwise
from tests.loaders import train_loader
from vireid.errors import VireidError
from vireid.loader import dali_decode, memory
from vireid.loader.cache import DecodedCache
from vireid.loader.plan import StepPlan
from vireid.loader.tensor_augment import TensorAugmenter

SMALL = {"width": 32, "height": 64}
OPTIONS = {"batch_ids": 4, "num_pos": 2, "seed": 11}


def _visible(loader, epochs: int = 1, count: int | None = None) -> list[torch.Tensor]:
    got = []
    for _ in range(epochs):
        for batch in loader:
            got.append(torch.cat([batch["visible"], batch["infrared"]]).clone())
            if count is not None and len(got) == count:
                return got
    return got


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert_bitwise(x.contiguous().numpy(), y.contiguous().numpy())


@pytest.mark.dali
@pytest.mark.parametrize("encoding", ["raw", "png", "jpeg"])
def test_cached_batches_equal_the_decoding_loader_over_two_epochs(shard_dir, encoding):
    """On the CPU the cache decodes with the fused loader's decoder: the same bits for every
    encoding, JPEG included."""
    shards = shard_dir("sysu", encoding, **SMALL)
    expected = _visible(train_loader("dali", shards, **OPTIONS), epochs=2)
    cached = train_loader("dali", shards, cache="host", **OPTIONS)
    _same(_visible(cached, epochs=2), expected)
    assert cached.first_pass().images == len(set(cached.view.visible.samples)
                                             | set(cached.view.infrared.samples))


@pytest.mark.dali
@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_cached_resume_and_seek_mid_epoch(shard_dir, encoding):
    shards = shard_dir("sysu", encoding, **SMALL)
    straight = train_loader("dali", shards, **OPTIONS)
    expected = _visible(straight) + _visible(straight, count=2)
    interrupted = train_loader("dali", shards, cache="host", **OPTIONS)
    got = _visible(interrupted, count=3)
    state = json.loads(json.dumps(interrupted.state_dict()))
    resumed = train_loader("dali", shards, cache="host", **OPTIONS)
    resumed.load_state_dict(state)
    got += _visible(resumed) + _visible(resumed, count=2)
    _same(got, expected)
    resumed.seek(0, 5)
    _same(_visible(resumed, count=2), expected[5:7])


@pytest.mark.dali
def test_cached_channel_views_equal_the_oracle_on_stored_pixels(shard_dir):
    """CAJ's views (channel mixing, erase fill) from the cache: the numpy oracle applied to
    the stored raw pixels of the step's plan."""
    shards = shard_dir("sysu", "raw", **SMALL)
    loader = train_loader("dali", shards, cache="host", views="channel", **OPTIONS)
    manifest = loader.source.manifest
    for batch in [b for b, _ in zip(loader, range(2))]:
        plan = loader.plan(batch["epoch"], batch["step"])
        assert plan.params.mix is not None
        stored = np.stack([loader.source.read(int(s)).reshape(manifest.height, manifest.width,
                                                               3) for s in plan.samples])
        got = torch.cat([batch["visible"], batch["infrared"]]).permute(0, 2, 3, 1)
        assert_bitwise(got.contiguous().numpy(), numpy_oracle(stored, plan.params))


@pytest.mark.dali
def test_nothing_is_decoded_after_the_first_pass(shard_dir, monkeypatch):
    shards = shard_dir("sysu", "png", **SMALL)
    calls = []
    decode = dali_decode.decode_samples
    monkeypatch.setattr(dali_decode, "decode_samples",
                        lambda *a, **k: calls.append(len(a[1])) or decode(*a, **k))
    loader = train_loader("dali", shards, cache="host", **OPTIONS)
    next(iter(loader))
    reads = []
    read_images = loader.source.read_images
    monkeypatch.setattr(loader.source, "read_images",
                        lambda samples: reads.append(samples) or read_images(samples))
    _visible(loader, epochs=2)
    first = loader.first_pass()
    assert calls == [first.images] and reads == []
    assert first.decode_seconds > 0 and first.first_batch_seconds >= first.decode_seconds
    assert first.nbytes == first.images * 64 * 32 * 3
    assert first.summary() == (f"decoded {first.images:,} images "
                               f"({first.nbytes / 1e6:.1f} MB, host) in "
                               f"{first.decode_seconds:.2f} s")
    assert first.report()["where"] == "host"


@pytest.mark.dali
def test_a_cache_that_does_not_fit_is_refused_before_decoding(shard_dir, monkeypatch):
    shards = shard_dir("sysu", "raw", **SMALL)
    monkeypatch.setattr(memory, "host_memory_limits", lambda: {"": 3 * 10**9})
    monkeypatch.setattr(dali_decode, "decode_samples",
                        lambda *a, **k: pytest.fail("decoded before the memory check"))
    monkeypatch.setitem(memory.HEADROOM, "host", (0.1, 3 * 10**9))
    loader = train_loader("dali", shards, cache="host", **OPTIONS)
    with pytest.raises(VireidError, match=r"^cache: the decoded training set needs 0\.0 GB "
                       r"\([\d,]+ images × 64×32×3\), but only 3\.0 GB of host memory is "
                       r"available \(keeping 3\.0 GB free\): use cache none$"):
        next(iter(loader))


def test_the_refusal_names_the_numbers_and_the_way_out():
    with pytest.raises(VireidError, match=r"needs 5\.5 GB \(44,000 images × 288×144×3\), but "
                       r"only 6\.0 GB of GPU memory .* use cache none or cache host$"):
        memory.check_fits(5_474_304_000, 44_000, (288, 144), "device", 6 * 10**9)
    memory.check_fits(4 * 10**9, 1, (1, 1), "host", 6 * 10**9)  # fits: no error
    assert memory.available_host_memory() > 0


def test_each_process_on_the_machine_counts_for_a_host_cache():
    """torchrun: every local process holds its own host cache; a GPU's is one per GPU."""
    memory.check_fits(2 * 10**9, 1, (1, 1), "host", 6 * 10**9, processes=2)
    with pytest.raises(VireidError, match=r"needs 2\.0 GB in each of 3 processes"):
        memory.check_fits(2 * 10**9, 1, (1, 1), "host", 6 * 10**9, processes=3)
    memory.check_fits(2 * 10**9, 1, (1, 1), "device", 6 * 10**9, processes=3)


@pytest.mark.dali
@pytest.mark.parametrize("offset, data, message", [
    (30, b"\x13" * 300, r"cannot be decoded \(.*\): damaged shard"),
    (0, b"\0" * 4, r"is not a JPEG"),
])
def test_a_damaged_image_in_the_first_pass_names_the_tar_and_key(shard_dir, copy_shards,
                                                                  offset, data, message,
                                                                  monkeypatch):
    """Small decode batches: DALI 2.4's CPU decoder can crash the process when many images
    of one batch fail at once (seen with ~100 damaged JPEG bodies, cached or not)."""
    from tests.loader.test_dali_errors import damage_bodies

    monkeypatch.setattr(dali_decode, "DECODE_BATCH", 8)
    shards = copy_shards(shard_dir("sysu", "jpeg", **SMALL))
    damage_bodies(shards, offset, data)
    loader = train_loader("dali", shards, cache="host", **OPTIONS)
    with pytest.raises(VireidError, match=rf"\.tar: image \S+ {message}.*verify --deep"):
        next(iter(loader))


def test_reference_loader_with_a_cache_is_refused(shard_dir, tmp_path):
    """A decoded cache needs the DALI loader: refused in one line before anything starts
    (the settings check asks the loader's route table, test_routes.py)."""
    from vireid.train.config import TrainConfig
    from vireid.train.runner import run_training

    with pytest.raises(VireidError, match="reference loader"):  # by the config or the run
        run_training(TrainConfig.from_flat(
            shards=str(shard_dir("sysu", "raw", width=32, height=64)),
            out=str(tmp_path / "run"), loader="reference", cache="host", device="cpu"))
    assert not (tmp_path / "run").exists()


def _host_to_device_calls(monkeypatch) -> list[tuple]:
    """Record every call that would copy host data to another device or make the host wait
    for one: (kind, target device, non_blocking). On CUDA a blocking copy from pageable
    memory synchronises the stream, as do .item(), .cpu(), .tolist() and synchronize()."""
    calls = []
    to = torch.Tensor.to

    def recording_to(self, *args, **kwargs):
        moved = to(self, *args, **kwargs)
        if self.device.type == "cpu" and moved.device.type != "cpu":
            calls.append(("to", moved.device.type, kwargs.get("non_blocking", False)))
        return moved

    def creating(name):
        make = getattr(torch, name)

        def recorded(*args, **kwargs):
            made = make(*args, **kwargs)
            if made.device.type != "cpu":
                calls.append((name, made.device.type, False))
            return made
        return recorded

    def waiting(name):
        original = getattr(torch.Tensor, name)

        def recorded(self, *args, **kwargs):
            if self.device.type != "cpu":
                calls.append((name, self.device.type, False))
            return original(self, *args, **kwargs)
        return recorded

    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    for name in ("as_tensor", "tensor"):
        monkeypatch.setattr(torch, name, creating(name))
    for name in ("item", "cpu", "tolist", "cuda"):
        monkeypatch.setattr(torch.Tensor, name, waiting(name))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: calls.append(("sync", "", False)))
    return calls


@pytest.mark.parametrize("where", ["device", "host"])
def test_a_cached_step_copies_without_waiting(monkeypatch, where):
    """A step of the decoded cache on another device (``meta`` stands in for the GPU here):
    its parameters (and the device cache's rows) reach the device in ONE non-blocking copy,
    a host cache's gathered pixels in one more; nothing that would make the host wait."""
    rng = np.random.default_rng(5)
    images = torch.zeros((40, 64, 32, 3), dtype=torch.uint8)
    cache = DecodedCache(images.to("meta") if where == "device" else images, np.arange(40),
                         TensorAugmenter(device="meta"))
    plan = StepPlan(0, 0, rng.integers(0, 40, 16), np.zeros(16, np.int64),
                    mixed_params(rng, 16, 64, 32))
    cache.batch(plan)  # the first step also makes the normalisation tables
    calls = _host_to_device_calls(monkeypatch)
    out = cache.batch(plan)
    assert out.shape == (16, 64, 32, 3) and out.dtype == torch.float16
    assert calls == [("to", "meta", True)] * (1 if where == "device" else 2)
