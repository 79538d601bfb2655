"""Training-step images/s: the model alone on synthetic in-memory batches (AMP off/bf16/fp16,
channels-last on/off, torch.compile on/off) and end to end with the DALI loader, so the report
shows whether the loader or the model is the bottleneck.

    python -m benchmarks.train_step                       # resnet18 on CPU, resnet50 on GPU
    python -m benchmarks.train_step --arch resnet18 --steps 2 --repeats 1 --no-end-to-end
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch

from benchmarks.common import emit, environment
from vireid.loader.settings import Sampling
from vireid.model import build_model
from vireid.train.engine import train_one_epoch
from vireid.train.schedule import make_optimizer

BATCH_IDS, NUM_POS = Sampling.batch_ids, Sampling.num_pos  # the original's P and K


class Synthetic:
    """A loader-shaped source of fixed in-memory batches (no data work at all)."""

    def __init__(self, steps: int, height: int, width: int, classes: int):
        n = BATCH_IDS * NUM_POS
        images = torch.randn(n, 3, height, width).to(torch.float16)
        images = images.contiguous(memory_format=torch.channels_last)
        labels = torch.arange(BATCH_IDS).repeat_interleave(NUM_POS) % classes
        self.batch = {"visible": images, "infrared": images.clone(), "labels_visible": labels,
                      "labels_infrared": labels, "epoch": 0, "step": 0}
        self.steps = steps

    def __len__(self):
        return self.steps

    def __iter__(self):
        for step in range(self.steps):
            yield {**self.batch, "step": step}


def measure(model, loader, device, amp_dtype, channels_last, repeats) -> dict:
    optimizer = make_optimizer(model.param_groups(0.01))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    options = dict(device=device, amp_dtype=amp_dtype, method="agw",
                   channels_last=channels_last, log_every=10**9)
    train_one_epoch(model, _Cut(loader, 2), optimizer, scaler, **options)  # warm-up
    rates = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        stats = train_one_epoch(model, loader, optimizer, scaler, **options)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(stats["images"] / (time.perf_counter() - start))
    rates.sort()
    return {"images_per_s": rates[len(rates) // 2], "images_per_s_min": rates[0],
            "images_per_s_max": rates[-1], "repeats": repeats}


class _Cut:
    """The first ``steps`` batches of a loader, as a loader."""

    def __init__(self, loader, steps):
        self.loader, self.steps = loader, steps

    def __len__(self):
        return self.steps

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.steps)


def amp_modes(device: torch.device) -> list[str]:
    return ["off", "bf16", "fp16"] if device.type == "cuda" else ["off", "bf16"]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=None, help="default: resnet50 on GPU, resnet18 on CPU")
    parser.add_argument("--height", type=int, default=288)
    parser.add_argument("--width", type=int, default=144)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    parser.add_argument("--end-to-end", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/vireid-bench"))
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    arch = args.arch or ("resnet50" if device.type == "cuda" else "resnet18")
    from vireid.train.device import resolve_amp

    base = {**environment(), "benchmark": "train_step", "device": device.type, "arch": arch,
            "batch": 2 * BATCH_IDS * NUM_POS, "threads": torch.get_num_threads(),
            "size": f"{args.height}x{args.width}"}
    rows = []
    compiles = (False, True) if args.compile else (False,)
    for amp, channels_last, compiled in itertools.product(amp_modes(device), (True, False),
                                                          compiles):
        model = _model(arch, 395, device, channels_last, compiled)
        loader = Synthetic(args.steps, args.height, args.width, 395)
        rows.append({**base, "name": f"model only, amp {amp}, channels-last "
                     f"{'on' if channels_last else 'off'}{', compile' if compiled else ''}",
                     "amp": amp, "channels_last": channels_last, "compile": compiled,
                     **measure(model, loader, device, resolve_amp(amp, device.type),
                               channels_last, args.repeats)})
    if args.end_to_end:
        rows += end_to_end(args, arch, device, base)
    reference = next(r for r in rows if r["amp"] == "off" and not r["channels_last"]
                     and not r["compile"])["images_per_s"]  # the original: float32, NCHW
    for row in rows:
        row["ratio_to_original"] = row["images_per_s"] / reference
    emit(rows, args.results)
    return rows


def _model(arch, classes, device, channels_last, compiled):
    torch.manual_seed(0)
    model = build_model(classes, arch=arch, pretrained="none").to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compiled else model


def end_to_end(args, arch, device, base) -> list[dict]:
    """The DALI loader over JPEG shards feeding the model (best AMP mode of this device)."""
    from benchmarks.datasets import fake_sysu, shards_of
    from vireid.loader import make_train_loader
    from vireid.loader.settings import Backend
    from vireid.train.device import resolve_amp

    shards = shards_of(fake_sysu(args.work, 60, 4), "jpeg", args.work)
    amp = "fp16" if device.type == "cuda" else "bf16"
    loader = make_train_loader("dali", shards, backend=Backend(device.type, device.index or 0))
    model = _model(arch, loader.num_classes, device, True, False)
    cut = _Cut(_Endless(loader), args.steps)
    return [{**base, "name": f"end to end (DALI jpeg loader + model), amp {amp}", "amp": amp,
             "channels_last": True, "compile": False,
             **measure(model, cut, device, resolve_amp(amp, device.type), True, args.repeats)}]


class _Endless:
    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        while True:
            yield from self.loader


if __name__ == "__main__":
    main()
