"""One start-up measurement in a fresh process: seconds to the first training batch and peak
resident memory after a few batches. Prints one JSON line.

    python -m benchmarks.probe original RAW_ROOT      # decode every image first, as the original
    python -m benchmarks.probe vireid-dali SHARDS [--fresh-kernel-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path


def rss_mb(field: str = "VmRSS") -> float:
    """Current (VmRSS) or peak (VmHWM) resident memory of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["original", "vireid-dali"])
    parser.add_argument("target", type=Path)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--fresh-kernel-cache", action="store_true",
                        help="start with an empty numba cache (the first run after installing)")
    args = parser.parse_args()
    if args.fresh_kernel_cache:
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="vireid-numba-")
    launched = time.perf_counter()
    import torch  # noqa: F401 - both approaches need it; its import is not the dataset's cost
    from nvidia import dali  # noqa: F401

    baseline = rss_mb()
    start = time.perf_counter()
    if args.kind == "original":
        from benchmarks.datasets import training_arrays
        from benchmarks.original.loader import original_loader

        arrays = training_arrays(args.target)
        loaded = time.perf_counter() - start
        batches = iter(original_loader(*arrays, workers=2))
        images = len(arrays[0]) + len(arrays[2])
    else:
        from vireid.loader import make_train_loader

        loader = make_train_loader("dali", args.target)
        loaded = time.perf_counter() - start
        batches = iter(loader)
        images = len(loader.source.manifest.samples)
    next(batches)
    first = time.perf_counter() - start
    time_with_imports = time.perf_counter() - launched
    for _ in range(args.steps - 1):
        next(batches)
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"dataset_images": images, "seconds_to_ready": loaded,
                      "seconds_to_first_batch": first,
                      "seconds_to_first_batch_with_imports": time_with_imports,
                      "rss_after_imports_mb": baseline,
                      "peak_rss_mb": rss_mb("VmHWM"), "rss_mb": rss_mb(),
                      "data_rss_mb": rss_mb() - baseline,
                      "peak_rss_children_mb": children_kb / 1024}))
    if args.fresh_kernel_cache:
        shutil.rmtree(os.environ["NUMBA_CACHE_DIR"], ignore_errors=True)


if __name__ == "__main__":
    main()
