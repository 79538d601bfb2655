"""Training-loader images/s on this machine, side by side with the original, in one run.

Rows: the original loader (uint8 arrays in RAM, per-image PIL/torchvision transforms,
DataLoader with 2 workers, global-RNG identity sampler), vireid's DALI loader on the CPU over
JPEG / raw / PNG shards (fused augmentation, the default) and over JPEG with DALI's own
operators (the GPU graph on CPU operators), the DALI decode-only ceiling over the same JPEG
bytes and threads, the PyTorch reference loader, and DALI on the GPU when there is one; the
issue's targets, met or not. Then time to first batch and peak RSS, each measured in a fresh
process, at two dataset sizes, plus one run whose compiled-kernel cache starts empty.

    python -m benchmarks.loader                      # the full run (30,000-image set)
    python -m benchmarks.loader --ids 20 --images-per-camera 2 --steps 2 --repeats 1 \
        --startup-ids 20 30                          # smoke size
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.common import emit, environment
from benchmarks.measure import (
    IMAGES_PER_STEP,
    cache_files,
    endless,
    interleaved,
    throughput,
)


def decode_only(shards: Path, threads: int):
    """The JPEG ceiling: the same bytes through DALI's decoder and nothing else."""
    import numpy as np
    from nvidia.dali import fn, pipeline_def, types

    from vireid.loader.sampler import IdentitySampler
    from vireid.loader.source import ShardBytes
    source = ShardBytes(shards)
    sampler = IdentitySampler.from_view(source.manifest.training_view(None))

    def feed(info):
        step = sampler.step(0, info.iteration % sampler.steps_per_epoch)
        return [source.read(int(i)) for i in np.concatenate([step.visible, step.infrared])]

    @pipeline_def(batch_size=IMAGES_PER_STEP, num_threads=threads, device_id=None)
    def pipe():
        return fn.decoders.image(fn.external_source(feed, batch=True, batch_info=True),
                                 device="cpu", output_type=types.RGB)

    built = pipe()
    built.build()

    def batches():
        while True:
            yield built.run()
    return batches


TARGETS = {  # issue 3: CPU throughput targets, checked in the same run (never in a test)
    "jpeg": ("≥ 2× original and ≥ 60 % of decode-only",
             lambda row: row["ratio_to_original"] >= 2
             and row["fraction_of_decode_ceiling"] >= 0.6),
    "raw": ("≥ 3× original", lambda row: row["ratio_to_original"] >= 3),
}


def loader_rows(args, work: Path, env: dict) -> list[dict]:
    """Every row in its own process, measured in turns with the others; shard files are in
    the page cache (like the original's arrays in RAM) except in the "cold page cache" rows."""
    from benchmarks.datasets import fake_sysu, mean_encoded_kb, shards_of
    from vireid.loader.train_base import default_threads

    root = fake_sysu(work, args.ids, args.images_per_camera)
    threads = default_threads() + 1  # the DALI loader's default, for it and the ceiling
    shards = {encoding: shards_of(root, encoding, work) for encoding in ("jpeg", "raw", "png")}
    jpeg = shards["jpeg"]

    def cached(folder, keep=True):
        return lambda: cache_files(folder, keep)

    table = {  # name → (factory, arguments, before each repeat, row fields)
        "original (uint8 in RAM, PIL, 2 workers)": (original_batches, (root,), None,
                                                    {"threads": 2})}
    for encoding, folder in shards.items():
        fields = {"threads": threads, "encoding": encoding,
                  "mean_encoded_kb": mean_encoded_kb(folder)}
        table[f"vireid DALI cpu, fused ({encoding} shards)"] = (
            dali_batches, (folder, threads), cached(folder), fields)
    for encoding in ("jpeg", "raw"):
        table[f"vireid DALI cpu, fused ({encoding} shards, cold page cache)"] = (
            dali_batches, (shards[encoding], threads), cached(shards[encoding], keep=False),
            {"threads": threads})
    table["vireid DALI cpu, DALI operators (jpeg shards)"] = (
        dali_batches, (jpeg, threads, {"cpu_augment": "dali"}), cached(jpeg),
        {"threads": threads})
    table["DALI decode-only ceiling (jpeg)"] = (decode_only, (jpeg, threads), cached(jpeg),
                                                {"threads": threads})
    table["vireid reference loader (jpeg, PyTorch)"] = (reference_batches, (jpeg,),
                                                        cached(jpeg), {"threads": 1})
    if _has_gpu():
        table["vireid DALI gpu (jpeg shards)"] = (
            dali_batches, (jpeg, threads, {"device": "cuda"}), cached(jpeg),
            {"threads": threads, "device": "cuda"})
    measured = interleaved({name: row[:3] for name, row in table.items()}, steps=args.steps,
                           warmup=args.warmup, repeats=args.repeats, settle=args.settle)
    base = {**env, "benchmark": "train_loader", "batch": IMAGES_PER_STEP, "device": "cpu"}
    return _ratios([{**base, "name": name, **fields, **measured[name]}
                    for name, (_, _, _, fields) in table.items()])


def dali_batches(folder: Path, threads: int, options: dict | None = None):
    """Endless batches of the DALI loader; ``options``: ``Backend`` settings."""
    from vireid.loader import make_train_loader
    from vireid.loader.settings import Backend

    backend = Backend(num_threads=threads, **(options or {}))
    return endless(lambda: make_train_loader("dali", folder, backend=backend))


def reference_batches(folder: Path):
    from vireid.loader import make_train_loader

    return endless(lambda: make_train_loader("reference", folder))


def _ratios(rows: list[dict]) -> list[dict]:
    """Ratios to the original and to the decode-only ceiling; the targets, met or not."""
    original = rows[0]["images_per_s"]
    ceiling = next(r for r in rows if r["name"].startswith("DALI decode-only"))["images_per_s"]
    for row in rows:
        row["ratio_to_original"] = row["images_per_s"] / original
        row["images_per_s_per_thread"] = row["images_per_s"] / row["threads"]
        if "(jpeg" in row["name"]:
            row["fraction_of_decode_ceiling"] = row["images_per_s"] / ceiling
        if row.get("encoding") in TARGETS:
            row["target"], met = TARGETS[row["encoding"]]
            row["target_met"] = bool(met(row))
    return rows


def scaling_rows(args, work: Path, env: dict) -> list[dict]:
    """Fused DALI loader (JPEG shards) images/s for 1, 2, … threads, up to cores + 1."""
    from benchmarks.datasets import fake_sysu, shards_of
    from vireid.loader.train_base import default_threads

    jpeg = shards_of(fake_sysu(work, args.ids, args.images_per_camera), "jpeg", work)
    measure = dict(steps=args.steps, warmup=args.warmup, repeats=args.repeats)
    rows = []
    for threads in range(1, default_threads() + 2):
        rows.append({**env, "benchmark": "loader_scaling", "device": "cpu",
                     "batch": IMAGES_PER_STEP, "threads": threads,
                     "name": f"vireid DALI cpu (jpeg), {threads} thread(s)",
                     **throughput(dali_batches(jpeg, threads), **measure)})
    for row in rows:
        row["images_per_s_per_thread"] = row["images_per_s"] / row["threads"]
    return rows


def original_batches(root: Path):
    from benchmarks.datasets import training_arrays
    from benchmarks.original.loader import original_loader

    arrays = training_arrays(root)
    return endless(lambda: original_loader(*arrays, workers=2))


def startup_rows(args, work: Path, env: dict) -> list[dict]:
    """Time to first batch and peak RSS, each in a fresh process, at two dataset sizes; at the
    larger size once more with an empty kernel cache (the first run after installing)."""
    from benchmarks.datasets import fake_sysu, shards_of

    rows = []
    for ids in args.startup_ids:
        root = fake_sysu(work, ids, args.startup_images_per_camera)
        shards = shards_of(root, "jpeg", work)
        runs = [("original", root, []), ("vireid-dali", shards, [])]
        if ids == args.startup_ids[-1]:
            runs.append(("vireid-dali", shards, ["--fresh-kernel-cache"]))
        for kind, target, flags in runs:
            result = json.loads(subprocess.run(
                [sys.executable, "-m", "benchmarks.probe", kind, str(target),
                 "--steps", str(args.probe_steps), *flags],
                check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            name = kind + (" (empty kernel cache: compiles once)" if flags else "")
            rows.append({**env, "benchmark": "startup", "name": name, "ids": ids, **result})
    return rows


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/vireid-bench"))
    parser.add_argument("--ids", type=int, default=100, help="fake SYSU ids for throughput")
    parser.add_argument("--images-per-camera", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds of quiet before each measurement")
    parser.add_argument("--startup-ids", type=int, nargs=2, default=[300, 1350],
                        help="two dataset sizes (ids) for start-up time and RSS")
    parser.add_argument("--startup-images-per-camera", type=int, default=5)
    parser.add_argument("--probe-steps", type=int, default=5)
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    env = environment()
    rows = (loader_rows(args, args.work, env) + scaling_rows(args, args.work, env)
            + startup_rows(args, args.work, env))
    emit(rows, args.results)
    return rows


if __name__ == "__main__":
    main()
