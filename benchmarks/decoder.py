"""The CUDA decoder's options swept on a GPU: training-loader images/s for each value of one
option, the others at their defaults (``vireid.loader.settings.DecoderOptions``).

The defaults of ``DecoderOptions`` come from DALI's documentation, not from measurement; this
runner measures them for 144×288 JPEGs: ``mixed`` against CPU decoding (then copied to the
GPU), ``hw_decoder_load``, the hardware decoder's preallocation hints, nvJPEG's device and
host memory paddings, ``hybrid_huffman_threshold``, the prefetch depth and DALI's threads.
Rows are measured one after another in this process (a fresh loader each) and written as
they are measured; each gives images/s, its ratio to the defaults' row (measured first) and
the GPU memory in use (DALI's buffers included).
Without a CUDA GPU it says so in one line and measures nothing.

    python -m benchmarks.decoder
    python -m benchmarks.decoder --ids 20 --images-per-camera 2 --steps 5 --repeats 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import emit, environment
from benchmarks.measure import throughput

MIB = 2**20


def sweep(height: int, width: int, cores: int) -> list[tuple[str, object, dict]]:
    """(option, value, settings) rows: the defaults, then each option varied alone.
    Settings: ``DecoderOptions`` fields, plus ``prefetch`` and ``num_threads`` (Backend)."""
    rows = [("defaults", "documentation-derived", {})]
    values = {
        "decode_on": ["cpu"],
        "hw_decoder_load": [0.0, 0.35, 0.9, 1.0],
        # 1×1: no useful preallocation (DALI's own default is none); 2×: a generous hint
        "preallocate_hint": [(1, 1), (2 * height, 2 * width)],
        "device_memory_padding": [0, 1 * MIB, 64 * MIB],
        "host_memory_padding": [0, 1 * MIB, 32 * MIB],
        "hybrid_huffman_threshold": [0],  # every image through the hybrid Huffman decoder
        "prefetch": [1, 3, 4],
        "num_threads": sorted({max(1, cores // 2), 2 * cores}),
    }
    for option, choices in values.items():
        for value in choices:
            if option == "preallocate_hint":
                settings = {"preallocate_height_hint": value[0],
                            "preallocate_width_hint": value[1]}
                value = f"{value[0]}x{value[1]}"
            elif option == "decode_on":
                settings = {"on": value}
            else:
                settings = {option: value}
            rows.append((option, value, settings))
    return rows


def measure_row(shards: Path, settings: dict, threads: int, args) -> dict:
    """images/s of the CUDA training loader with ``settings``; GPU memory in use after it."""
    import torch

    from vireid.loader import make_train_loader
    from vireid.loader.settings import Backend, DecoderOptions

    settings = dict(settings)
    prefetch = settings.pop("prefetch", Backend.prefetch)
    threads = settings.pop("num_threads", threads)
    backend = Backend(device="cuda", num_threads=threads, prefetch=prefetch,
                      decoder=DecoderOptions(**settings))
    loader = make_train_loader("dali", shards, backend=backend)

    def batches():
        while True:
            yield from loader

    try:
        row = throughput(batches, steps=args.steps, warmup=args.warmup, repeats=args.repeats)
        free, total = torch.cuda.mem_get_info()
        return {**row, "threads": threads, "prefetch": prefetch,
                "gpu_memory_in_use_mb": (total - free) / MIB}
    finally:
        loader.close()


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/vireid-bench"))
    parser.add_argument("--ids", type=int, default=100, help="fake SYSU ids")
    parser.add_argument("--images-per-camera", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("decoder: no CUDA GPU (the options tune nvJPEG's `mixed` decoder); nothing "
              "measured", file=sys.stderr)
        return []
    from benchmarks.datasets import fake_sysu, mean_encoded_kb, shards_of
    from vireid.files import available_cores
    from vireid.shards.manifest import load_manifest

    args.work.mkdir(parents=True, exist_ok=True)
    shards = shards_of(fake_sysu(args.work, args.ids, args.images_per_camera), "jpeg",
                       args.work)
    manifest = load_manifest(shards)
    base = {**environment(), "benchmark": "decoder", "device": "cuda", "batch": 64,
            "size": f"{manifest.height}x{manifest.width}",
            "mean_encoded_kb": mean_encoded_kb(shards)}
    rows = []
    for option, value, settings in sweep(manifest.height, manifest.width, available_cores()):
        name = "defaults" if option == "defaults" else f"{option} = {value}"
        row = {**base, "name": name, "option": option, "value": value,
               **measure_row(shards, settings, available_cores() + 1, args)}
        row["ratio_to_default"] = row["images_per_s"] / (rows or [row])[0]["images_per_s"]
        rows.append(row)
        emit([row], args.results)  # each row as measured: a sweep cut short keeps its rows
    return rows


if __name__ == "__main__":
    main()
