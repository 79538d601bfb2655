"""The CUDA graphs, checked as defined (no GPU needed): no GPU operator receives a type it
has no kernel for, decoders upsample chroma like the CPU, and the CPU graph keeps its bits."""

from __future__ import annotations

import numpy as np
import pytest

from vireid.errors import VireidError
from vireid.loader.dali_graph import check_gpu_kernels, graph_nodes, kernel_gaps
from vireid.loader.dali_pipes import eval_pipeline, import_dali, train_pipeline
from vireid.shards.encode import Encoding

pytestmark = pytest.mark.dali


def never(info):
    raise StopIteration


def cuda_train_graph(encoding: Encoding):
    return train_pipeline(never, batch_size=4, encoding=encoding, height=64, width=32,
                          device="cuda", device_id=0, num_threads=1, prefetch=2)


def cuda_eval_graph(encoding: Encoding, size=(64, 32)):
    return eval_pipeline(never, batch_size=4, encoding=encoding, stored=(64, 32), size=size,
                         device="cuda", device_id=0, num_threads=1)


@pytest.mark.parametrize("encoding", list(Encoding))
def test_cuda_training_graph_erases_float32_and_casts_last(encoding):
    nodes = graph_nodes(cuda_train_graph(encoding))
    by_name = {node.operator: node for node in nodes}
    assert by_name["Erase"].device == "gpu" and by_name["Erase"].input_type == "FLOAT"
    assert by_name["Cast"].output_type == "FLOAT16"
    assert by_name["CropMirrorNormalize"].input_type == "UINT8"
    assert kernel_gaps(cuda_train_graph(encoding)) == []


@pytest.mark.parametrize("encoding", list(Encoding))
@pytest.mark.parametrize("size", [(64, 32), (72, 36)])
def test_cuda_evaluation_graph_has_no_kernel_gap(encoding, size):
    pipe = cuda_eval_graph(encoding, size)
    assert {node.operator for node in graph_nodes(pipe)} >= {"CropMirrorNormalize"}
    assert kernel_gaps(pipe) == []


def test_the_old_graph_float16_into_gpu_erase_is_caught():
    """The graph that crashed every CUDA run on its first batch: CMN float16 → GPU erase."""
    dali, fn, types = import_dali()
    pipe = dali.Pipeline(batch_size=2, num_threads=1, device_id=0)
    with pipe:
        images = fn.external_source(source=never, batch=True, batch_info=True, layout="HWC",
                                    dtype=types.UINT8).gpu()
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT16, output_layout="HWC")
        images = fn.erase(images, anchor=(0, 0), shape=(2, 2), axis_names="HW")
        pipe.set_outputs(images)
    assert kernel_gaps(pipe) == ["GPU operator Erase receives FLOAT16 (DALI has no GPU kernel "
                                 "for that type)"]
    with pytest.raises(VireidError, match="DALI graph: GPU operator Erase receives FLOAT16"):
        check_gpu_kernels(pipe)


def test_the_same_erase_on_the_cpu_accepts_float16():
    """Only the GPU erase lacks the kernel: a CPU erase of float16 is not reported."""
    dali, fn, types = import_dali()
    pipe = dali.Pipeline(batch_size=2, num_threads=1, device_id=None)
    with pipe:
        images = fn.external_source(source=never, batch=True, batch_info=True, layout="HWC",
                                    dtype=types.UINT8)
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT16, output_layout="HWC")
        pipe.set_outputs(fn.erase(images, anchor=(0, 0), shape=(2, 2), axis_names="HW"))
    assert kernel_gaps(pipe) == []


@pytest.mark.parametrize("encoding", [Encoding.JPEG, Encoding.PNG])
def test_gpu_decoders_upsample_chroma_like_libjpeg(encoding):
    train = [n for n in graph_nodes(cuda_train_graph(encoding)) if "decoders" in n.operator]
    evaluation = [n for n in graph_nodes(cuda_eval_graph(encoding))
                  if "decoders" in n.operator]
    assert train and evaluation
    for node in train + evaluation:
        assert node.device == "mixed" and node.arguments["jpeg_fancy_upsampling"] is True


def _old_order_pipeline(source, fn, types, dali):
    """Yesterday's CPU graph: normalise straight to float16, then erase."""
    pipe = dali.Pipeline(batch_size=8, num_threads=1, device_id=None)
    with pipe:
        images, mirror, anchor, shape = fn.external_source(
            source=source, num_outputs=4, batch=True, layout=["HWC", None, None, None])
        images = fn.crop_mirror_normalize(
            images, mirror=mirror, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
            dtype=types.FLOAT16, output_layout="HWC")
        pipe.set_outputs(fn.erase(images, anchor=anchor, shape=shape, axis_names="HW"))
    return pipe


def _new_order_pipeline(source, fn, types, dali):
    pipe = dali.Pipeline(batch_size=8, num_threads=1, device_id=None)
    with pipe:
        images, mirror, anchor, shape = fn.external_source(
            source=source, num_outputs=4, batch=True, layout=["HWC", None, None, None])
        images = fn.crop_mirror_normalize(
            images, mirror=mirror, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
            dtype=types.FLOAT, output_layout="HWC")
        images = fn.erase(images, anchor=anchor, shape=shape, axis_names="HW")
        pipe.set_outputs(fn.cast(images, dtype=types.FLOAT16))
    return pipe


def test_erasing_float32_then_casting_gives_the_bits_of_erasing_float16():
    """Every uint8 value in every channel, flips and erase boxes (some empty, some on the
    border): the reordered CPU graph is bit-identical to the old one."""
    dali, fn, types = import_dali()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 24, 3), dtype=np.uint8) for _ in range(8)]
    images[0] = (np.arange(32 * 24 * 3) % 256).astype(np.uint8).reshape(32, 24, 3)
    mirror = [np.int32(i % 2) for i in range(8)]
    anchor = [np.float32([rng.integers(0, 32), rng.integers(0, 24)]) for _ in range(8)]
    shape = [np.float32([rng.integers(0, 33), rng.integers(0, 25)]) for _ in range(8)]
    shape[1] = np.float32([0, 0])

    def source():
        return images, mirror, anchor, shape

    old = _old_order_pipeline(source, fn, types, dali)
    new = _new_order_pipeline(source, fn, types, dali)
    (a,), (b,) = old.run(), new.run()
    a, b = np.asarray(a.as_tensor()), np.asarray(b.as_tensor())
    assert a.dtype == b.dtype == np.float16
    assert np.array_equal(a.view(np.uint16), b.view(np.uint16))
