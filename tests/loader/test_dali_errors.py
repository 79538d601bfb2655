"""DALI failures: a damaged image is named with its tar and key; anything else is DALI's own
reason in one line, without sending the user to check intact shards."""

from __future__ import annotations

import numpy as np
import pytest

from tests.loaders import eval_loader, train_loader
from vireid.errors import VireidError
from vireid.loader import dali_errors
from vireid.loader.dali_errors import explain, parse_failure, stop_pipeline
from vireid.loader.dali_pipes import eval_pipeline
from vireid.loader.handoff import run_pipeline
from vireid.loader.source import ShardBytes
from vireid.shards.encode import Encoding
from vireid.shards.tario import parse_index

SMALL = {"width": 32, "height": 64}


def dali_message(backend: str, operator: str, reason: str) -> RuntimeError:
    """An error in the exact form DALI 2.4 raises it."""
    return RuntimeError(
        f"Critical error in pipeline:\nCritical error in pipeline:\nError in {backend} operator "
        f"`nvidia.dali.fn.{operator}`,\nwhich was used in the pipeline definition with the "
        "following traceback:\n\n  File \"x.py\", line 1, in f\n    images = fn.x(\n\n"
        f"encountered:\n\n{reason}\nC++ context: [/opt/dali/x.cc:1] \nCurrent pipeline object "
        "is no longer valid.\nCurrent pipeline object is no longer valid.")


def test_parse_failure_reads_operator_backend_and_reason():
    failure = parse_failure(dali_message("CPU", "decoders.image_slice",
                                         "nvImageCodec failure: '#3'"))
    assert failure.operator == "nvidia.dali.fn.decoders.image_slice"
    assert failure.backend == "CPU" and failure.reason == "nvImageCodec failure: '#3'"
    assert failure.decoding


@pytest.mark.parametrize("backend, operator, reason", [
    ("MIXED", "decoders.image", "CUDA allocation failed: out of memory"),
    ("GPU", "erase", "Unsupported input type: float16"),
    ("MIXED", "decoders.image_slice", "nvJPEG error (5): NVJPEG_STATUS_INTERNAL_ERROR"),
])
def test_other_failures_are_dalis_reason_and_do_not_blame_intact_shards(shard_dir, backend,
                                                                         operator, reason):
    source = ShardBytes(shard_dir("sysu", "jpeg", **SMALL))
    error = explain(dali_message(backend, operator, reason), source, np.arange(8), "here")
    text = str(error)
    assert text == f"here: DALI failed in {backend} operator nvidia.dali.fn.{operator}: {reason}"
    assert "verify" not in text and "\n" not in text


@pytest.mark.dali
def test_a_real_non_decoding_failure_is_one_line(shard_dir):
    """DALI refuses data of the wrong type: its assertion, in one line, no shard blamed."""
    def wrong_type(info):
        return [np.zeros((64, 32, 3), np.float32)] * 2

    pipe = eval_pipeline(wrong_type, batch_size=2, encoding=Encoding.RAW, stored=(64, 32),
                         size=(64, 32), device="cpu", device_id=0, num_threads=1)
    source = ShardBytes(shard_dir("sysu", "raw", **SMALL))
    with pytest.raises(RuntimeError) as raised:
        run_pipeline(pipe, "cpu")
    text = str(explain(raised.value, source, [0, 1], "eval"))
    assert text.startswith("eval: DALI failed in CPU operator nvidia.dali.fn.external_source: ")
    assert "expected data of type uint8" in text and "verify" not in text


def damage_bodies(folder, offset: int, data: bytes) -> None:
    """Overwrite bytes inside every stored JPEG (sizes and index stay valid)."""
    for index in folder.glob("*.idx"):
        with open(index.with_suffix(".tar"), "r+b") as tar:
            for group in parse_index(index):
                for member in group:
                    if member.name.endswith(".jpg"):
                        tar.seek(member.offset + offset)
                        tar.write(data)


@pytest.mark.dali
@pytest.mark.parametrize("cpu_augment", ["fused", "dali"])
def test_damaged_jpeg_body_in_training_names_the_tar_and_key(shard_dir, copy_shards,
                                                            cpu_augment):
    """The JPEG marker is intact, the entropy-coded data is not: DALI's decoder fails, the
    sample is found and named."""
    shards = copy_shards(shard_dir("sysu", "jpeg", **SMALL))
    damage_bodies(shards, 30, b"\x13" * 300)
    loader = train_loader("dali", shards, batch_ids=4, num_pos=2, cpu_augment=cpu_augment)
    with pytest.raises(VireidError, match=r"\.tar: image \S+ cannot be decoded \(.*\): "
                                          r"damaged shard, run `vireid-shard verify --deep"):
        next(iter(loader))


@pytest.mark.dali
@pytest.mark.parametrize("offset, data, message", [
    (30, b"\x13" * 300, r"cannot be decoded"),
    (0, b"\0" * 4, r"is not a JPEG"),
])
def test_damaged_images_in_evaluation_name_the_tar_and_key(shard_dir, copy_shards, offset,
                                                         data, message):
    shards = copy_shards(shard_dir("sysu", "jpeg", **SMALL))
    damage_bodies(shards, offset, data)
    loader = eval_loader("dali", shards, np.arange(10), batch_size=4)
    with pytest.raises(VireidError, match=rf"\.tar: image \S+ {message}.*verify --deep"):
        list(loader)


def test_the_failed_pipeline_is_stopped_before_its_batch_is_decoded_again(
        shard_dir, copy_shards, monkeypatch):
    """DALI's threads may still be decoding prefetched batches of damaged images: they are
    stopped before PIL decodes the suspects for the message."""
    shards = copy_shards(shard_dir("sysu", "jpeg", **SMALL))
    damage_bodies(shards, 30, b"\x13" * 300)
    events = []

    class Pipe:
        def _shutdown(self):
            events.append("stopped")

    decode = dali_errors.decode_problem
    monkeypatch.setattr(dali_errors, "decode_problem",
                        lambda data: events.append("decoded") or decode(data))
    error = explain(dali_message("CPU", "decoders.image", "nvImageCodec failure: '#3'"),
                    ShardBytes(shards), [0, 1], "here", pipe=Pipe())
    assert events == ["stopped", "decoded"] and "cannot be decoded" in str(error)


@pytest.mark.dali
def test_stop_pipeline_stops_a_real_pipeline(shard_dir):
    """``stop_pipeline`` relies on DALI's private ``_shutdown``: this fails if DALI renames it
    (the stop would silently do nothing)."""
    source = ShardBytes(shard_dir("sysu", "raw", **SMALL))
    pipe = eval_pipeline(lambda info: [source.read(0).reshape(64, 32, 3)] * 2, batch_size=2,
                         encoding=Encoding.RAW, stored=(64, 32), size=(64, 32), device="cpu",
                         device_id=0, num_threads=1)
    pipe.build()
    run_pipeline(pipe, "cpu")
    stop_pipeline(pipe)
    assert pipe._pipe is None  # DALI's handle of the C++ pipeline: released
    stop_pipeline(pipe)  # a second stop, and no pipeline at all, do nothing
    stop_pipeline(None)
