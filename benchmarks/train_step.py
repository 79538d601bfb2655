"""Training-step images/s: the model alone on synthetic in-memory batches (AMP off/bf16/fp16,
channels-last on/off, torch.compile on/off) and end to end with the DALI loader (on a GPU:
``mixed`` decoding and the decoded device cache), so the report shows whether the loader or
the model is the bottleneck. Each row also gives the host time blocked waiting for the loader
per step, peak GPU memory, and what its rate means for 81 SYSU-MM01 epochs; the issue's
targets, met or not (recorded, never asserted).

    python -m benchmarks.train_step                       # resnet18 on CPU, resnet50 on GPU
    python -m benchmarks.train_step --arch resnet18 --steps 2 --repeats 1 --no-end-to-end
    python -m benchmarks.train_step --methods agw deen --no-end-to-end   # DEEN rows beside AGW

Each method's model-only rows use its own network, losses and sampling defaults (AGW: P = 8,
K = 4, 64 images a step; DEEN: P = 6, K = 4, 48 images, three branches from DEE on).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import emit, environment
from vireid.loader.settings import Sampling
from vireid.train.engine import train_one_epoch
from vireid.train.methods import get_method
from vireid.train.schedule import make_optimizer

BATCH_IDS, NUM_POS = Sampling.batch_ids, Sampling.num_pos  # the original's P and K
SYSU_TRAIN = (22_258, 11_909)  # SYSU-MM01 training images: visible, infrared
EPOCHS = 81  # AGW's schedule
E2E_LOADERS = ["decoding", "device-cache"]  # the end-to-end rows' loaders
TARGETS = {  # issue 14, recorded in the rows (never asserted)
    "amp": ("≥ 3× the original's float32 NCHW step", lambda row: row["ratio_to_original"] >= 3),
    "wait": ("loader wait < 5 % of a step", lambda row: row["loader_wait_fraction"] < 0.05),
    "sysu": ("81 SYSU epochs ≤ 20 min (one H100)",
             lambda row: row["sysu_81_epochs_minutes"] <= 20),
}


class Synthetic:
    """A loader-shaped source of fixed in-memory batches (no data work at all)."""

    def __init__(self, steps: int, height: int, width: int, classes: int,
                 batch_ids: int = BATCH_IDS, num_pos: int = NUM_POS):
        n = batch_ids * num_pos
        images = torch.randn(n, 3, height, width).to(torch.float16)
        images = images.contiguous(memory_format=torch.channels_last)
        labels = torch.arange(batch_ids).repeat_interleave(num_pos) % classes
        self.batch = {"visible": images, "infrared": images.clone(), "labels_visible": labels,
                      "labels_infrared": labels, "epoch": 0, "step": 0}
        self.steps = steps

    def __len__(self):
        return self.steps

    def __iter__(self):
        for step in range(self.steps):
            yield {**self.batch, "step": step}


def measure(model, loader, device, amp_dtype, channels_last, repeats, method: str = "agw",
            num_pos: int = NUM_POS) -> dict:
    optimizer = make_optimizer(model.param_groups(0.01))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    options = dict(device=device, amp_dtype=amp_dtype, method=method,
                   channels_last=channels_last, log_every=10**9, num_pos=num_pos)
    train_one_epoch(model, _Cut(loader, 2), optimizer, scaler, **options)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rates, waits = [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        waited = _Waited(loader)
        start = time.perf_counter()
        stats = train_one_epoch(model, waited, optimizer, scaler, **options)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        rates.append(stats["images"] / elapsed)
        waits.append((waited.wait / max(waited.steps, 1), waited.wait / elapsed))
    order = sorted(range(repeats), key=rates.__getitem__)
    middle = order[len(order) // 2]
    return {"images_per_s": rates[middle], "images_per_s_min": rates[order[0]],
            "images_per_s_max": rates[order[-1]], "repeats": repeats,
            "loader_wait_ms_per_step": 1000 * waits[middle][0],
            "loader_wait_fraction": waits[middle][1], **gpu_memory(device),
            "sysu_81_epochs_minutes": sysu_minutes(rates[middle])}


def gpu_memory(device) -> dict:
    """Peak memory PyTorch allocated since the warm-up, and all memory in use on the device
    (DALI's buffers and other processes included); nothing on a CPU."""
    if device.type != "cuda":
        return {}
    free, total = torch.cuda.mem_get_info(device)
    return {"peak_gpu_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20,
            "gpu_memory_in_use_mb": (total - free) / 2**20}


def sysu_minutes(images_per_s: float, epochs: int = EPOCHS, batch_ids: int = BATCH_IDS,
                 num_pos: int = NUM_POS) -> float:
    """Training time of a SYSU-MM01 run at this rate (steps per epoch as the sampler counts
    them; evaluation not included): 81 epochs at P = 8, K = 4 by default (AGW)."""
    from vireid.loader.sampler import IdentitySampler

    steps = IdentitySampler((), (), *SYSU_TRAIN, batch_ids, num_pos).steps_per_epoch
    return epochs * steps * 2 * batch_ids * num_pos / images_per_s / 60


class _Waited:
    """A loader whose consumer's time blocked in ``next`` is added up (``wait``, seconds)."""

    def __init__(self, loader):
        self.loader, self.wait, self.steps = loader, 0.0, 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        iterator = iter(self.loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.wait += time.perf_counter() - start
            self.steps += 1
            yield batch


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
    parser.add_argument("--compile-channels-last-only", action="store_true",
                        help="with --compile: compile the channels-last rows only (faster)")
    parser.add_argument("--compile-amp", nargs="*", default=None, metavar="AMP",
                        help="with --compile: compile these AMP modes only (default: all)")
    parser.add_argument("--end-to-end", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--model-only", action=argparse.BooleanOptionalAction, default=True,
                        help="--no-model-only: the end-to-end rows alone")
    parser.add_argument("--rows", nargs="*", default=None, metavar="TEXT",
                        help="only the model-only rows whose names contain TEXT (and the "
                        "float32 NCHW reference of the ratios)")
    parser.add_argument("--e2e-loaders", nargs="*", choices=E2E_LOADERS, default=E2E_LOADERS,
                        help="end to end: the decoding loader, the device cache (GPU)")
    parser.add_argument("--methods", nargs="+", default=["agw"], metavar="METHOD",
                        help="model-only rows of these methods (agw, base, caj, deen), each "
                        "with its own network, losses and P, K (default: agw)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/vireid-bench"))
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    arch = args.arch or ("resnet50" if device.type == "cuda" else "resnet18")

    base = {**environment(), "benchmark": "train_step", "device": device.type, "arch": arch,
            "batch": 2 * BATCH_IDS * NUM_POS, "threads": torch.get_num_threads(),
            "size": f"{args.height}x{args.width}"}
    rows = []
    for method in args.methods:
        rows += model_rows(args, method, arch, device, base)
    if args.end_to_end:
        rows += end_to_end(args, arch, device, base)
    for row in rows:
        # the float32 NCHW row of the same method, measured in this run (not with
        # --no-model-only): the original's way of running it
        reference = next((r["images_per_s"] for r in rows if r.get("amp") == "off"
                          and not r["channels_last"] and not r["compile"]
                          and r.get("method", "agw") == row.get("method", "agw")), None)
        if "images_per_s" in row:  # not a row saying why it was skipped
            if reference:
                row["ratio_to_original"] = row["images_per_s"] / reference
            _targets(row)
    emit(rows, args.results)
    return rows


def _targets(row: dict) -> None:
    """The issue's targets for this row, met or not (GPU rows only: they are GPU targets;
    the AMP target needs the float32 reference of the same run)."""
    if row["device"] != "cuda":
        return
    if row["name"].startswith("end to end"):
        row["target"], met = TARGETS["wait"]
        row["sysu_target"], sysu = TARGETS["sysu"]
        row["target_met"], row["sysu_target_met"] = bool(met(row)), bool(sysu(row))
    elif row["amp"] != "off" and row["channels_last"] and "ratio_to_original" in row:
        row["target"], met = TARGETS["amp"]
        row["target_met"] = bool(met(row))


def model_rows(args, method: str, arch: str, device, base: dict) -> list[dict]:
    """The model-only rows of one method: every AMP mode, channels-last on and off, and
    torch.compile where asked, on synthetic batches of the method's P × K."""
    from vireid.train.device import resolve_amp

    spec = get_method(method)
    batch_ids = spec.settings.get("batch_ids", BATCH_IDS)
    num_pos = spec.settings.get("num_pos", NUM_POS)
    epochs = spec.epochs
    prefix = "" if method == "agw" else f"{method} "
    rows = []
    compiles = (False, True) if args.compile else (False,)
    for amp, channels_last, compiled in itertools.product(amp_modes(device), (True, False),
                                                          compiles):
        if compiled and ((not channels_last and args.compile_channels_last_only)
                         or amp not in (args.compile_amp or [amp])):
            continue
        name = f"{prefix}model only, amp {amp}, channels-last {'on' if channels_last else 'off'}" \
            f"{', compile' if compiled else ''}"
        reference = amp == "off" and not channels_last and not compiled
        if not args.model_only or not (reference or not args.rows
                                       or any(text in name for text in args.rows)):
            continue
        model = _model(arch, 395, device, channels_last, compiled, method)
        loader = Synthetic(args.steps, args.height, args.width, 395, batch_ids, num_pos)
        measured = measure(model, loader, device, resolve_amp(amp, device.type), channels_last,
                           args.repeats, method, num_pos)
        if method != "agw":  # AGW's schedule at this rate: not this method's
            measured.pop("sysu_81_epochs_minutes")
        rows.append({**base, "name": name, "method": method, "amp": amp,
                     "channels_last": channels_last, "compile": compiled,
                     "batch": 2 * batch_ids * num_pos, **measured,
                     "sysu_run_minutes": sysu_minutes(measured["images_per_s"], epochs,
                                                      batch_ids, num_pos),
                     "sysu_run_epochs": epochs})
    return rows


def _model(arch, classes, device, channels_last, compiled, method: str = "agw"):
    torch.manual_seed(0)
    spec = get_method(method)
    model = spec.build_model(classes, arch, pretrained="none",
                             **spec.model_options("sysu")).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compiled else model


def end_to_end(args, arch, device, base) -> list[dict]:
    """The DALI loader over JPEG shards feeding the model (best AMP mode of this device): on
    a GPU with ``mixed`` decoding and from the decoded device cache (a row saying why where
    the cache cannot run); ``--e2e-loaders`` picks them. The device cache's
    ``loader_wait_ms_per_step`` is the host's idle time per step: a step that synchronised
    would wait there for the previous step's backward pass."""
    from benchmarks.datasets import fake_sysu, shards_of
    from benchmarks.loader import cache_problem
    from vireid.files import available_cores

    shards = shards_of(fake_sysu(args.work, 60, 4), "jpeg", args.work)
    amp = "fp16" if device.type == "cuda" else "bf16"
    rows = []
    if "decoding" in args.e2e_loaders:
        rows.append(_end_to_end_row(args, arch, device, base, shards, amp, {},
                                    "DALI jpeg loader"))
    if device.type == "cuda" and "device-cache" in args.e2e_loaders:
        name = "end to end (DALI device cache + model)"
        problem = cache_problem(shards, available_cores() + 1, "device")
        if problem:
            print(f"train_step: row {name!r} skipped: {problem}", file=sys.stderr)
            return rows + [{**base, "name": name, "note": f"skipped: {problem}"}]
        rows.append(_end_to_end_row(args, arch, device, base, shards, amp,
                                    {"cache": "device"}, "DALI device cache"))
    return rows


def _end_to_end_row(args, arch, device, base, shards, amp, options, what) -> dict:
    from vireid.loader import make_train_loader
    from vireid.loader.settings import Backend
    from vireid.train.device import resolve_amp

    backend = Backend(device.type, device.index or 0, **options)
    loader = make_train_loader("dali", shards, backend=backend)
    try:
        model = _model(arch, loader.num_classes, device, True, False)
        cut = _Cut(_Endless(loader), args.steps)
        return {**base, "name": f"end to end ({what} + model), amp {amp}", "amp": amp,
                "channels_last": True, "compile": False,
                **measure(model, cut, device, resolve_amp(amp, device.type), True,
                          args.repeats)}
    finally:
        loader.close()


class _Endless:
    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        while True:
            yield from self.loader


if __name__ == "__main__":
    main()
