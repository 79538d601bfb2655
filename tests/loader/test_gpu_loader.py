"""The CUDA loaders against the CPU graph on the same step plans (skipped without a GPU).

Tolerances: raw and PNG shards decode to the same bytes on both devices, so the batches are
identical; JPEG goes through nvJPEG on the GPU and libjpeg-turbo on the CPU (both with fancy
chroma upsampling), whose integer IDCTs may round differently: at most JPEG_LEVELS grey levels
apart, and on average well under one. A JPEG comparison first makes sure the GPU can decode
JPEG at all (``gpu_decodes_jpeg``): without libnvjpeg DALI decodes on the CPU without saying
so, and the comparison would pass for the wrong reason.
"""

from __future__ import annotations

import functools
import io

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


@functools.cache
def gpu_decodes_jpeg() -> str:
    """Why the GPU cannot decode JPEG here (empty: nvImageCodec, DALI's decoding library,
    decodes one into device memory with its CUDA decoder alone)."""
    from nvidia import nvimgcodec
    from PIL import Image

    encoded = io.BytesIO()
    Image.fromarray(np.full((64, 32, 3), 128, np.uint8)).save(encoded, format="JPEG")
    try:
        decoder = nvimgcodec.Decoder(device_id=0, backends=[
            nvimgcodec.Backend(nvimgcodec.BackendKind.GPU_ONLY)])
        image = decoder.decode(nvimgcodec.CodeStream(encoded.getvalue()))
    except RuntimeError as error:
        return f"nvImageCodec's CUDA decoder failed: {error}"
    if image is None or "DEVICE" not in str(image.buffer_kind):
        return "nvImageCodec's CUDA decoder did not decode a JPEG (is libnvjpeg installed?)"
    return ""


def check_jpeg_on_gpu(encoding: str) -> None:
    if encoding == "jpeg":
        assert not gpu_decodes_jpeg(), f"JPEG is not decoded on the GPU: {gpu_decodes_jpeg()}"


@pytest.mark.parametrize("encoding", ["raw", "png", "jpeg"])
@pytest.mark.parametrize("augment", [False, True])
def test_cuda_training_batches_match_the_cpu_graph(shard_dir, encoding, augment):
    check_jpeg_on_gpu(encoding)
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
    check_jpeg_on_gpu(encoding)
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


@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_cuda_caj_views_match_the_cpu_graph(shard_dir, encoding):
    """CAJ's three groups on the GPU graph (erase fill, coord_transform mixing) against the
    CPU graph: copies and unchanged images identical, gray within a float16 step (the GPU
    may fuse the mixing's multiply-adds)."""
    from tests.loader.test_caj_loader import CAJ, outcome_of

    shards = shard_dir("sysu", encoding, **SMALL)
    gpu = take(train_loader("dali", shards, device="cuda", **CAJ), 2)
    cpu = take(train_loader("dali", shards, device="cpu", cpu_augment="dali", **CAJ), 2)
    with train_loader("dali", shards, **CAJ) as loader:
        plans = [loader.plan(0, step) for step in range(2)]
    for a, b, plan in zip(gpu, cpu, plans):
        assert a["visible"].shape == (16, 3, 64, 32) and a["visible"].is_cuda
        x = torch.cat([a["visible"], a["infrared"]]).cpu()
        y = torch.cat([b["visible"], b["infrared"]])
        for n, mix in enumerate(plan.params.mix):
            if outcome_of(mix) == 3:
                step = np.spacing(np.abs(x[n].numpy())).astype(np.float32) + 1e-6
                assert ((x[n].float() - y[n].float()).abs().numpy() <= step).all()
            else:
                assert torch.equal(x[n], y[n])


def test_cuda_caj_outcomes_read_back_from_pixels(shard_dir):
    """The channel outcomes' frequencies from GPU pixels (chi-square at p = 0.001)."""
    from tests.loader.test_caj_loader import CAJ, chi_square, classify

    shards = shard_dir("sysu", "raw", **SMALL)
    counts = {"second": np.zeros(5, int), "infrared": np.zeros(5, int)}
    for batch in take(train_loader("dali", shards, device="cuda", erase_prob=0.0, **CAJ), 30):
        visible = batch["visible"].float().permute(0, 2, 3, 1).cpu().numpy()
        infrared = batch["infrared"].float().permute(0, 2, 3, 1).cpu().numpy()
        for name, images in (("second", visible[8:]), ("infrared", infrared)):
            for image in images:
                counts[name][classify(image)] += 1
    assert counts["second"][3:].sum() == 0
    assert chi_square(counts["second"][:3], [1 / 3] * 3) < 13.82
    assert chi_square(counts["infrared"], [1 / 4] * 3 + [1 / 8] * 2) < 18.47
