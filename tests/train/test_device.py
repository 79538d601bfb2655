"""Devices, precision and resume across devices, checked on the CPU by constructing the
states a GPU run would have saved."""

from __future__ import annotations

import pytest
import torch

from tests.train.test_runner import config
from vireid.errors import VireidError
from vireid.train.checkpoint import (
    cuda_rng_for,
    load_checkpoint,
    restore_rng,
    restore_scaler,
    rng_state,
)
from vireid.train.device import cuda_index, precision, resolve_amp, resume_precision
from vireid.train.runner import checkpoint_path, run_training


@pytest.mark.parametrize("local_rank, visible, expected", [
    (0, 8, 0), (3, 8, 3),  # torchrun: every process sees the node's GPUs
    (3, 1, 0), (7, 1, 0),  # SLURM --gpus-per-task=1 / CUDA_VISIBLE_DEVICES per rank
    (5, 4, 1),  # two processes per GPU
])
def test_cuda_index_follows_the_visible_devices(local_rank, visible, expected):
    assert cuda_index(local_rank, visible) == expected


def test_no_visible_gpu_is_one_clear_error():
    with pytest.raises(VireidError, match="no GPU is visible"):
        cuda_index(0, 0)


def test_auto_precision_is_resolved_per_device():
    assert precision("auto", "cuda") == "fp16" and precision("auto", "cpu") == "off"
    assert resolve_amp("auto", "cpu") is None and resolve_amp("bf16", "cpu") is torch.bfloat16


@pytest.mark.parametrize("requested, device, saved, expected", [
    ("auto", "cuda", "off", "off"),  # started on a CPU, resumed on a GPU: stays float32
    ("auto", "cpu", "fp16", "fp16"),  # and the other way round
    ("off", "cuda", "off", "off"),
    ("fp16", "cuda", "fp16", "fp16"),
])
def test_resume_keeps_the_precision_of_the_run(requested, device, saved, expected):
    assert resume_precision(requested, device, saved) == expected


def test_resume_refuses_an_explicit_other_precision():
    with pytest.raises(VireidError, match=r"^precision: the run was trained in off; resume it "
                                          r"in off or auto \(this run asks for fp16\)$"):
        resume_precision("fp16", "cuda", "off")


def test_empty_scaler_state_of_a_cpu_run_loads_into_an_enabled_scaler():
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    saved = disabled.state_dict()
    assert saved == {}
    enabled = torch.amp.GradScaler("cpu", enabled=True)
    with pytest.raises(RuntimeError):  # what used to crash the resume
        enabled.load_state_dict(saved)
    restore_scaler(enabled, saved)
    assert enabled.get_scale() == torch.amp.GradScaler("cpu").get_scale()


def test_scaler_state_is_loaded_or_ignored_as_the_scaler_is_enabled():
    source = torch.amp.GradScaler("cpu", init_scale=1024.0)
    target = torch.amp.GradScaler("cpu")
    restore_scaler(target, source.state_dict())
    assert target.get_scale() == 1024.0
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    restore_scaler(disabled, source.state_dict())  # no error, nothing to use it for
    assert not disabled.is_enabled()


def test_cuda_rng_state_for_any_number_of_visible_gpus():
    states = [torch.full((16,), i, dtype=torch.uint8) for i in range(3)]
    assert torch.equal(cuda_rng_for(states, 1), states[1])
    assert torch.equal(cuda_rng_for(states, 5), states[0])  # fewer GPUs saved than index
    assert cuda_rng_for([], 0) is None and cuda_rng_for(None, 0) is None
    assert torch.equal(cuda_rng_for(states[2], 0), states[2])


def test_rng_state_of_a_cpu_run_and_a_gpu_checkpoint_restore_on_the_cpu():
    cpu = torch.device("cpu")
    state = rng_state(cpu)
    assert set(state) == {"torch"}
    expected = torch.rand(3)
    gpu_saved = {**state, "cuda": [torch.zeros(16, dtype=torch.uint8)] * 4}
    restore_rng(gpu_saved, cpu)  # a 4-GPU checkpoint resumed on a CPU
    assert torch.equal(torch.rand(3), expected)


@pytest.fixture(scope="module")
def tiny_shards(shard_dir):
    return shard_dir("sysu", "jpeg", width=32, height=64)


@pytest.mark.dali
def test_a_cpu_run_resumed_with_another_precision_is_refused(tiny_shards, tmp_path):
    out = tmp_path / "run"
    run_training(config(tiny_shards, out, epochs=2, max_steps=1, amp="auto"))
    state = load_checkpoint(checkpoint_path(out))
    assert state["precision"] == "off" and state["scaler"] == {}
    with pytest.raises(VireidError, match="precision: the run was trained in off"):
        run_training(config(tiny_shards, out, epochs=3, max_steps=1, amp="bf16", resume=True))


@pytest.mark.dali
def test_an_older_checkpoint_from_several_gpus_resumes_on_the_cpu(tiny_shards, tmp_path):
    """No ``precision`` field and one CUDA generator state per GPU, as written before."""
    out = tmp_path / "run"
    run_training(config(tiny_shards, out, epochs=1, max_steps=1, amp="auto"))
    state = load_checkpoint(checkpoint_path(out))
    del state["precision"]
    state["rng"]["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * 8
    torch.save(state, checkpoint_path(out))
    result = run_training(config(tiny_shards, out, epochs=2, max_steps=1, amp="auto",
                                 resume=True))
    assert load_checkpoint(checkpoint_path(out))["epoch"] == 1
    assert result.model is not None


def test_evaluation_and_training_threads_divide_the_cores_among_local_ranks(tiny_shards,
                                                                            tmp_path):
    from vireid.files import available_cores
    from vireid.train.distributed import DistEnv
    from vireid.train.runner import _threads

    run = config(tiny_shards, tmp_path / "run")
    assert _threads(run, DistEnv()) is None  # one process: the loaders' own defaults
    four = DistEnv(rank=1, world_size=8, local_rank=1, local_world_size=4)
    assert _threads(run, four) == max(1, available_cores() // 4)
    assert _threads(config(tiny_shards, tmp_path / "x", num_threads=3), four) == 3


@pytest.fixture
def restore_backends():
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled())
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
    torch.use_deterministic_algorithms(saved[2])


def test_cudnn_autotunes_unless_determinism_is_asked_for(restore_backends):
    from vireid.train.device import configure_cuda

    configure_cuda(deterministic=False)
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    configure_cuda(deterministic=True)
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert torch.are_deterministic_algorithms_enabled()
