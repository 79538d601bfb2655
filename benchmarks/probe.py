"""One start-up measurement in a fresh process: seconds to the first training batch and peak
resident memory after a few batches. Prints one JSON line.

    python -m benchmarks.probe original RAW_ROOT      # decode every image first, as the original
    python -m benchmarks.probe vireid-dali SHARDS
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["original", "vireid-dali"])
    parser.add_argument("target", type=Path)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
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
    for _ in range(args.steps - 1):
        next(batches)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"dataset_images": images, "seconds_to_ready": loaded,
                      "seconds_to_first_batch": first, "peak_rss_mb": peak_kb / 1024,
                      "peak_rss_children_mb": children_kb / 1024}))


if __name__ == "__main__":
    main()
