"""Evaluation cost: feature extraction images/s, and the SYSU 10-trial protocol done the
original's way (query once + the gallery re-extracted for every trial, PyTorch loader) vs
vireid's (every test image once with DALI, trials select rows).

    python -m benchmarks.evaluation
    python -m benchmarks.evaluation --ids 12 --arch resnet18 --repeats 1     # smoke
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import emit, environment
from vireid.eval.features import extract_features
from vireid.eval.protocols import samples_to_extract
from vireid.model import build_model
from vireid.records import Modality
from vireid.shards.manifest import load_manifest


def timed_extraction(model, shards, by_modality, loader, device, amp_dtype) -> tuple[float, int]:
    start = time.perf_counter()
    features = extract_features(model, shards, by_modality, loader=loader, device=device,
                                amp_dtype=amp_dtype)
    return time.perf_counter() - start, len(features.samples)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=96, help="fake SYSU identities")
    parser.add_argument("--arch", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/vireid-bench"))
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    from benchmarks.datasets import fake_sysu, shards_of
    from vireid.train.device import resolve_amp

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    arch = args.arch or ("resnet50" if device.type == "cuda" else "resnet18")
    amp = "fp16" if device.type == "cuda" else "bf16"
    amp_dtype = resolve_amp(amp, device.type)
    shards = shards_of(fake_sysu(args.work, args.ids, 3), "jpeg", args.work)
    manifest = load_manifest(shards)
    protocol = manifest.protocol("sysu-all")
    model = build_model(10, arch=arch, pretrained="none").to(device)
    model = model.to(memory_format=torch.channels_last)
    once = samples_to_extract(manifest, protocol)
    base = {**environment(), "benchmark": "evaluation", "device": device.type, "arch": arch,
            "amp": amp, "trials": len(protocol.trials)}
    timed_extraction(model, shards, once, "dali", device, amp_dtype)  # warm-up
    vireid = [timed_extraction(model, shards, once, "dali", device, amp_dtype)
              for _ in range(args.repeats)]
    original = [original_way(model, shards, protocol, device, amp_dtype)
                for _ in range(args.repeats)]
    rows = []
    for name, runs in (("original: query once + gallery per trial (PyTorch loader)", original),
                       ("vireid: every test image once (DALI)", vireid)):
        seconds = float(np.median([s for s, _ in runs]))
        rows.append({**base, "name": name, "images": runs[0][1], "seconds_median": seconds,
                     "seconds_min": min(s for s, _ in runs),
                     "seconds_max": max(s for s, _ in runs),
                     "images_per_s": runs[0][1] / seconds})
    for row in rows:
        row["ratio_to_original"] = rows[0]["seconds_median"] / row["seconds_median"]
    emit(rows, args.results)
    return rows


def original_way(model, shards, protocol, device, amp_dtype) -> tuple[float, int]:
    """The original's loop: the query set once, then one gallery extraction per trial."""
    trial = protocol.trials[0]
    seconds, images = timed_extraction(model, shards, {Modality.INFRARED: np.unique(
        trial.query)}, "reference", device, amp_dtype)
    for trial in protocol.trials:
        s, n = timed_extraction(model, shards, {Modality.VISIBLE: np.unique(trial.gallery)},
                                "reference", device, amp_dtype)
        seconds, images = seconds + s, images + n
    return seconds, images


if __name__ == "__main__":
    main()
