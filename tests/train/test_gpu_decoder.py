"""A CUDA run trains with either decoder placement (skipped without a GPU): nvJPEG (``mixed``,
with non-default options) and libjpeg-turbo on DALI's threads (``--decode-on cpu``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.train.test_runner import Recorder, config
from vireid.train.runner import run_training

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def shards(shard_dir):
    return shard_dir("sysu", "jpeg", width=32, height=64)


@pytest.mark.parametrize("options", [
    {"decode_on": "cpu"},
    # mixed with every option away from its default (the defaults: test_gpu_train.py)
    {"decode_on": "mixed", "hw_decoder_load": 0.0, "device_memory_padding": 0,
     "host_memory_padding": 0, "preallocate_width_hint": 32, "preallocate_height_hint": 64,
     "hybrid_huffman_threshold": 0},
], ids=["cpu", "mixed-options"])
def test_cuda_training_with_each_decoder(shards, tmp_path, options):
    recorder = Recorder()
    out = tmp_path / "run"
    run_training(config(shards, out, device="cuda", amp="fp16", epochs=2, max_steps=4,
                        eval_every=2, **options), recorder)
    losses = [loss for _, loss, _ in recorder.steps]
    assert len(losses) == 8 and all(np.isfinite(losses))
    saved = json.loads((out / "config.json").read_text())
    assert all(saved[name] == value for name, value in options.items())
