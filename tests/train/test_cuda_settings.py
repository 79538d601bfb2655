"""A run's CUDA settings last as long as the run (``cuda_settings``), and whether
``torch.compile`` can build kernels here is known before a run asks for it."""

from __future__ import annotations

import os

import pytest
import torch

from vireid.train.device import compiler_missing, cuda_settings


def current() -> tuple:
    return (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"))


@pytest.fixture
def untouched(monkeypatch):
    """Whatever a failing test leaves, the next test starts from the settings of before."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved = current()
    yield saved
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
    torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


@pytest.mark.parametrize("deterministic", [True, False])
def test_deterministic_settings_end_with_the_run(untouched, deterministic):
    with cuda_settings(deterministic):
        assert torch.backends.cudnn.benchmark is not deterministic
        assert torch.backends.cudnn.deterministic is deterministic
        assert torch.are_deterministic_algorithms_enabled() or not deterministic
        assert (os.environ.get("CUBLAS_WORKSPACE_CONFIG") == ":4096:8") is deterministic
    assert current() == untouched


def test_settings_come_back_after_a_run_that_fails(untouched):
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"
    before = current()
    with pytest.raises(KeyboardInterrupt), cuda_settings(True):
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        raise KeyboardInterrupt
    assert current() == before
    del os.environ["CUBLAS_WORKSPACE_CONFIG"]


def test_a_missing_compiler_or_python_h_is_named(monkeypatch, tmp_path):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert compiler_missing() == "no C compiler (cc, gcc or clang) on PATH"
    (tmp_path / "cc").write_text("#!/bin/sh\n")
    (tmp_path / "cc").chmod(0o755)
    import sysconfig

    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"include": str(tmp_path)})
    assert compiler_missing() == f"no Python.h in {tmp_path} (the python3-dev package)"
    (tmp_path / "Python.h").write_text("")
    assert compiler_missing() is None
