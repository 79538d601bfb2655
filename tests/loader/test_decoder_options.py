"""The CUDA decoder's options (``DecoderOptions``) reach the graph as defined (no GPU needed),
only the ``mixed`` decoder gets them, CPU decoding on a CUDA run copies to the GPU before
augmenting, and ``vireid-train`` parses, bounds and records them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vireid.choices import DecodeOn
from vireid.errors import VireidError
from vireid.loader.dali_graph import graph_nodes, kernel_gaps
from vireid.loader.dali_pipes import eval_pipeline, import_dali, train_pipeline
from vireid.loader.settings import Backend, DecoderOptions
from vireid.shards.encode import Encoding
from vireid.train.config import TrainConfig

MIXED_ONLY = ("hw_decoder_load", "preallocate_width_hint", "preallocate_height_hint",
              "device_memory_padding", "host_memory_padding", "hybrid_huffman_threshold")
CHOSEN = DecoderOptions(hw_decoder_load=0.3, preallocate_width_hint=200,
                        device_memory_padding=2**20, host_memory_padding=2**19,
                        hybrid_huffman_threshold=5000)


def never(info):
    raise StopIteration


def graphs(device: str, decoder: DecoderOptions | None):
    """The training and evaluation graphs over 64×32 JPEG shards, as defined."""
    train = train_pipeline(never, batch_size=4, encoding=Encoding.JPEG, height=64, width=32,
                           device=device, device_id=0, num_threads=1, prefetch=2,
                           decoder=decoder)
    evaluation = eval_pipeline(never, batch_size=4, encoding=Encoding.JPEG, stored=(64, 32),
                               size=(64, 32), device=device, device_id=0, num_threads=1,
                               decoder=decoder)
    return train, evaluation


def decoders(pipe):
    return [node for node in graph_nodes(pipe) if node.operator.startswith("decoders__")]


@pytest.mark.dali
@pytest.mark.parametrize("decoder", [None, DecoderOptions(), CHOSEN])
def test_mixed_decoders_of_both_graphs_get_the_options(decoder):
    expected = (decoder or DecoderOptions()).mixed_arguments((64, 32))
    for pipe in graphs("cuda", decoder):
        (node,) = decoders(pipe)
        assert node.device == "mixed"
        assert {name: node.arguments[name] for name in MIXED_ONLY} == expected
        assert kernel_gaps(pipe) == []


def test_hints_of_zero_follow_the_stored_size_and_given_hints_win():
    assert DecoderOptions().mixed_arguments((288, 144))["preallocate_width_hint"] == 144
    assert DecoderOptions().mixed_arguments((288, 144))["preallocate_height_hint"] == 288
    chosen = CHOSEN.mixed_arguments((288, 144))
    assert (chosen["preallocate_width_hint"], chosen["preallocate_height_hint"]) == (200, 288)
    assert DecoderOptions().mixed_arguments()["preallocate_width_hint"] == 0  # size unknown


@pytest.mark.dali
def test_cpu_decoding_on_a_cuda_run_decodes_on_the_cpu_then_augments_on_the_gpu():
    for pipe in graphs("cuda", DecoderOptions(on=DecodeOn.CPU)):
        (node,) = decoders(pipe)
        assert node.device == "cpu"
        assert not set(MIXED_ONLY) & set(node.arguments)
        by_name = {n.operator: n for n in graph_nodes(pipe)}
        assert by_name["CropMirrorNormalize"].device == "gpu"
        assert kernel_gaps(pipe) == []


@pytest.mark.dali
def test_a_cpu_run_never_passes_the_mixed_options():
    for pipe in graphs("cpu", CHOSEN):
        (node,) = decoders(pipe)
        assert node.device == "cpu" and not set(MIXED_ONLY) & set(node.arguments)


@pytest.mark.dali
def test_the_cpu_decoder_would_accept_and_ignore_them():
    """Why leaving them out of CPU graphs is a choice, not a necessity (DALI 2.x)."""
    import io

    import numpy as np
    from PIL import Image

    dali, fn, types = import_dali()
    encoded = io.BytesIO()
    Image.fromarray(np.full((64, 32, 3), 90, np.uint8)).save(encoded, "JPEG")
    data = np.frombuffer(encoded.getvalue(), np.uint8)
    pipe = dali.Pipeline(batch_size=2, num_threads=1, device_id=None)
    with pipe:
        images = fn.decoders.image(fn.external_source(lambda: [data, data], batch=True),
                                   device="cpu", output_type=types.RGB,
                                   **CHOSEN.mixed_arguments((64, 32)))
        pipe.set_outputs(images)
    pipe.build()
    (out,) = pipe.run()
    assert out.shape() == [(64, 32, 3)] * 2


@pytest.mark.parametrize("bad", [{"hw_decoder_load": 1.5}, {"device_memory_padding": -1},
                                 {"preallocate_height_hint": -2}, {"on": "gpu"}])
def test_out_of_range_options_are_refused(bad):
    with pytest.raises(VireidError):
        DecoderOptions(**bad)


def test_loader_settings_build_the_backends_decoder_and_round_trip_flat():
    config = TrainConfig.from_flat(shards="s", out="o", decode_on="cpu", hw_decoder_load=0.9,
                                   preallocate_width_hint=144, host_memory_padding=0)
    backend = config.backend("cuda", 0, None)
    assert backend.decoder.on is DecodeOn.CPU and backend.decoder.hw_decoder_load == 0.9
    assert backend.decoder.preallocate_width_hint == 144
    assert backend.decoder.host_memory_padding == 0
    flat = config.to_dict()
    assert flat["decode_on"] == "cpu" and flat["hybrid_huffman_threshold"] == 1_000_000
    assert TrainConfig.from_flat(**flat).decoder == config.decoder
    assert TrainConfig.from_flat(shards="s", out="o").backend("cuda", 0, None).decoder == \
        Backend().decoder


def cli(*arguments):
    from vireid.cli.train import app

    return CliRunner().invoke(app, [str(a) for a in arguments])


@pytest.mark.parametrize("bad", [["--hw-decoder-load", "1.2"], ["--decode-on", "gpu"],
                                 ["--device-memory-padding", "-1"], ["--prefetch", "0"]])
def test_the_cli_refuses_out_of_bounds_values_while_parsing(bad, tmp_path):
    result = cli("--shards", tmp_path, "--out", tmp_path / "run", *bad)
    assert result.exit_code == 2, result.output


@pytest.mark.dali
def test_the_cli_records_them_in_config_json(shard_dir, tmp_path):
    shards = shard_dir("sysu", "jpeg", width=32, height=64)
    out = tmp_path / "run"
    result = cli("--shards", shards, "--out", out, "--arch", "resnet18", "--pretrained", "none",
                 "--batch-ids", "4", "--num-pos", "2", "--max-steps", "1", "--epochs", "1",
                 "--warmup-epochs", "1", "--milestones", "2", "3", "--device", "cpu",
                 "--eval-every", "5", "--decode-on", "cpu", "--hw-decoder-load", "0.4",
                 "--preallocate-width-hint", "144", "--preallocate-height-hint", "288",
                 "--device-memory-padding", "1048576", "--host-memory-padding", "524288",
                 "--hybrid-huffman-threshold", "2000000", "--prefetch", "3")
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert {name: saved[name] for name in ("decode_on", *MIXED_ONLY, "prefetch")} == {
        "decode_on": "cpu", "hw_decoder_load": 0.4, "preallocate_width_hint": 144,
        "preallocate_height_hint": 288, "device_memory_padding": 1048576,
        "host_memory_padding": 524288, "hybrid_huffman_threshold": 2000000, "prefetch": 3}
