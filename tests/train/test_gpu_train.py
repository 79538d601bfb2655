"""Training and evaluation on CUDA (skipped without a GPU).

Tolerances: cuDNN's default kernels are not bitwise deterministic, so a resumed CUDA run is
compared with ``--deterministic`` (deterministic kernels) and still within RESUME_RTOL of the
losses and RESUME_ATOL of the weights, since atomics in a few backward kernels may reorder
sums; features extracted on the GPU match the CPU's within FEATURE_ATOL (float32, unit
vectors).

torchrun: with one process the world size is 1, so no process group, DDP or NCCL call
happens (``test_torchrun_on_one_gpu_process``); NCCL and DDP on GPUs need two GPUs
(``test_torchrun_with_nccl_on_two_gpus``, skipped with that reason on one).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.train.test_distributed import WORKER, launch, records, settings
from tests.train.test_runner import Recorder, config
from vireid.eval import protocols
from vireid.eval.features import extract_features
from vireid.model import build_model
from vireid.shards.manifest import load_manifest
from vireid.train.checkpoint import load_checkpoint
from vireid.train.device import compiler_missing, cuda_settings
from vireid.train.runner import checkpoint_path, run_training

pytestmark = pytest.mark.gpu
RESUME_RTOL, RESUME_ATOL, FEATURE_ATOL = 1e-3, 1e-3, 2e-3


def cuda_state() -> tuple:
    return (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
            torch.are_deterministic_algorithms_enabled())


class Settings(Recorder):
    """A Recorder that also notes the CUDA settings in force while the run trains."""

    def epoch_start(self, epoch, epochs, steps):
        self.during = cuda_state()
        super().epoch_start(epoch, epochs, steps)


@pytest.fixture(autouse=True)
def isolated_cuda_settings():
    """No test's CUDA settings reach the next one, whatever the run does with them."""
    with cuda_settings(False):
        yield


@pytest.fixture(scope="module")
def shards(shard_dir):
    return shard_dir("sysu", "jpeg", width=32, height=64)


def cuda(shards, out, **overrides):
    return config(shards, out, **{"device": "cuda", "epochs": 4, "max_steps": 6,
                                  "log_every": 1, **overrides})


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_cuda_training_losses_are_finite_and_fall(shards, tmp_path, amp, compile):
    if compile and compiler_missing():
        pytest.skip(f"torch.compile cannot build kernels here: {compiler_missing()}")
    recorder = Settings()
    run_training(cuda(shards, tmp_path / "run", amp=amp, compile=compile, lr=0.05), recorder)
    losses = [loss for _, loss, _ in recorder.steps]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-6:]) < np.mean(losses[:6])
    state = load_checkpoint(checkpoint_path(tmp_path / "run"))
    assert state["precision"] == amp and bool(state["scaler"]) == (amp == "fp16")
    assert recorder.during[0]  # cuDNN autotunes


def test_cuda_resume_after_a_kill_continues_where_it_stopped(shards, tmp_path):
    straight = Recorder()
    run_training(cuda(shards, tmp_path / "a", deterministic=True), straight)
    killed = Recorder(stop_at_epoch=2)
    with pytest.raises(KeyboardInterrupt):
        run_training(cuda(shards, tmp_path / "b", deterministic=True), killed)
    resumed = Settings()
    run_training(cuda(shards, tmp_path / "b", deterministic=True, resume=True), resumed)
    assert resumed.during == (False, True, True)
    joined = killed.steps + resumed.steps
    assert [s for s, _, _ in joined] == [s for s, _, _ in straight.steps]
    np.testing.assert_allclose([loss for _, loss, _ in joined],
                               [loss for _, loss, _ in straight.steps], rtol=RESUME_RTOL)
    a = load_checkpoint(checkpoint_path(tmp_path / "a"))["model"]
    b = load_checkpoint(checkpoint_path(tmp_path / "b"))["model"]
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(a[key], b[key], atol=RESUME_ATOL, rtol=RESUME_RTOL)


def test_a_cpu_run_resumes_on_the_gpu_in_its_precision(shards, tmp_path):
    out = tmp_path / "run"
    run_training(config(shards, out, epochs=1, max_steps=2, amp="auto", device="cpu"))
    run_training(cuda(shards, out, epochs=2, max_steps=2, amp="auto", resume=True))
    state = load_checkpoint(checkpoint_path(out))
    assert state["epoch"] == 1 and state["precision"] == "off"


def test_a_deterministic_run_leaves_the_settings_as_it_found_them(shards, tmp_path):
    """``--deterministic`` holds for its run only (``cuda_settings`` in the runner): a later
    run or test of the same process gets cuDNN's autotuning and non-deterministic kernels."""
    before = cuda_state()
    recorder = Settings()
    run_training(cuda(shards, tmp_path / "run", epochs=1, max_steps=2, deterministic=True),
                 recorder)
    assert recorder.during == (False, True, True)
    assert cuda_state() == before


def test_torchrun_on_one_gpu_process(shards, tmp_path):
    """torchrun's launch, environment and one rank on the GPU; world size 1, so no process
    group, no DDP and no NCCL call happen (the two-GPU test below has them)."""
    assert WORKER.is_file()
    run = settings(shards, tmp_path / "run", device="cuda", amp="fp16", eval_every=2)
    result = launch(run, tmp_path / "record", nproc=1)
    assert result.returncode == 0, result.stderr[-3000:]
    (only,) = records(tmp_path / "record", nproc=1)
    assert only["evaluations"] and json.dumps(only["evaluations"])
    assert only["backend"] is None and only["model"] != "DistributedDataParallel"


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="a 2-process NCCL group needs 2 GPUs "
                    f"(NCCL refuses two ranks on one GPU); {torch.cuda.device_count()} visible")
def test_torchrun_with_nccl_on_two_gpus(shards, tmp_path):
    """A real NCCL process group of 2 ranks, one GPU each: DDP's broadcast and every step's
    all-reduce go through NCCL; both ranks end with the same parameters and rank 0 holds the
    evaluation."""
    run = settings(shards, tmp_path / "run", device="cuda", amp="fp16", eval_every=2)
    result = launch(run, tmp_path / "record", nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = records(tmp_path / "record", nproc=2)
    for rank in (rank0, rank1):
        assert (rank["backend"], rank["world_size"], rank["model"]) == (
            "nccl", 2, "DistributedDataParallel")
    assert rank0["digest"] == rank1["digest"]
    assert rank0["evaluations"] and rank1["evaluations"] == []


def test_gpu_features_match_the_cpu(shards):
    manifest = load_manifest(shards)
    protocol = manifest.protocol(manifest.default_protocol)
    wanted = protocols.samples_to_extract(manifest, protocol, None)
    model = build_model(10, arch="resnet18", pretrained="none").eval()
    cpu = extract_features(model, shards, wanted, device=torch.device("cpu"))
    gpu = extract_features(model.to("cuda"), shards, wanted, device=torch.device("cuda"))
    assert np.array_equal(cpu.samples, gpu.samples)
    np.testing.assert_allclose(gpu.pool, cpu.pool, atol=FEATURE_ATOL)
    np.testing.assert_allclose(gpu.fc, cpu.fc, atol=FEATURE_ATOL)


@pytest.mark.parametrize("cache", ["none", "device"])
def test_cuda_caj_training_losses_are_finite_and_fall(shards, tmp_path, cache):
    """CAJ's 3·P·K-image steps (GPU mixing, ADP triplet) with fp16, from the decoding
    graph and from the device cache."""
    recorder = Recorder()
    run_training(cuda(shards, tmp_path / "run", method="caj", amp="fp16", lr=0.05,
                      cache=cache), recorder)
    losses = [loss for _, loss, _ in recorder.steps]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-6:]) < np.mean(losses[:6])


def test_gpu_flip_features_match_the_cpu(shards):
    manifest = load_manifest(shards)
    protocol = manifest.protocol(manifest.default_protocol)
    wanted = protocols.samples_to_extract(manifest, protocol, None)
    model = build_model(10, arch="resnet18", pretrained="none").eval()
    cpu = extract_features(model, shards, wanted, device=torch.device("cpu"), flip=True)
    gpu = extract_features(model.to("cuda"), shards, wanted, device=torch.device("cuda"),
                           flip=True)
    np.testing.assert_allclose(gpu.pool, cpu.pool, atol=FEATURE_ATOL)
    np.testing.assert_allclose(gpu.fc, cpu.fc, atol=FEATURE_ATOL)
