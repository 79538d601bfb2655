"""Training and evaluation on CUDA (skipped without a GPU).

Tolerances: cuDNN's default kernels are not bitwise deterministic, so a resumed CUDA run is
compared with ``--deterministic`` (deterministic kernels) and still within RESUME_RTOL of the
losses and RESUME_ATOL of the weights, since atomics in a few backward kernels may reorder
sums; features extracted on the GPU match the CPU's within FEATURE_ATOL (float32, unit
vectors).
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
from vireid.train.runner import checkpoint_path, run_training

pytestmark = pytest.mark.gpu
RESUME_RTOL, RESUME_ATOL, FEATURE_ATOL = 1e-3, 1e-3, 2e-3


@pytest.fixture(scope="module")
def shards(shard_dir):
    return shard_dir("sysu", "jpeg", width=32, height=64)


def cuda(shards, out, **overrides):
    return config(shards, out, **{"device": "cuda", "epochs": 4, "max_steps": 6,
                                  "log_every": 1, **overrides})


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
@pytest.mark.parametrize("compile", [False, True])
def test_cuda_training_losses_are_finite_and_fall(shards, tmp_path, amp, compile):
    recorder = Recorder()
    run_training(cuda(shards, tmp_path / "run", amp=amp, compile=compile, lr=0.05), recorder)
    losses = [loss for _, loss, _ in recorder.steps]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-6:]) < np.mean(losses[:6])
    state = load_checkpoint(checkpoint_path(tmp_path / "run"))
    assert state["precision"] == amp and bool(state["scaler"]) == (amp == "fp16")
    assert torch.backends.cudnn.benchmark


def test_cuda_resume_after_a_kill_continues_where_it_stopped(shards, tmp_path):
    straight = Recorder()
    run_training(cuda(shards, tmp_path / "a", deterministic=True), straight)
    killed = Recorder(stop_at_epoch=2)
    with pytest.raises(KeyboardInterrupt):
        run_training(cuda(shards, tmp_path / "b", deterministic=True), killed)
    resumed = Recorder()
    run_training(cuda(shards, tmp_path / "b", deterministic=True, resume=True), resumed)
    assert not torch.backends.cudnn.benchmark
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


def test_torchrun_with_nccl_on_one_process(shards, tmp_path):
    assert WORKER.is_file()
    run = settings(shards, tmp_path / "run", device="cuda", amp="fp16", eval_every=2)
    result = launch(run, tmp_path / "record", nproc=1)
    assert result.returncode == 0, result.stderr[-3000:]
    (only,) = records(tmp_path / "record", nproc=1)
    assert only["evaluations"] and json.dumps(only["evaluations"])


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
