"""`make gpu-check` on a machine without CUDA: one line saying so, exit code 2, nothing run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_without_cuda_gpu_check_says_so_and_exits_2(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--out",
                             str(tmp_path / "results")], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "gpu-check: no CUDA GPU is visible to PyTorch (run it on a CUDA machine); nothing was "
        "run"]
    assert not (tmp_path / "results").exists()
