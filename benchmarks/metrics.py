"""Metric time for the SYSU 10-trial protocol: vectorised vs the original's per-query loop.

A SYSU-sized problem (3,803 queries × 301 gallery images, 96 identities, query cameras 3/6,
gallery cameras 1/2/4/5), random L2-normalised features, distance = −cosine, 10 trials.

    python -m benchmarks.metrics
    python -m benchmarks.metrics --queries 200 --gallery 50 --trials 2 --repeats 1   # smoke
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.common import emit, environment, repeat, timed
from benchmarks.original_metrics import original_eval
from vireid.eval.metrics import evaluate


def sysu_like(rng, queries: int, gallery: int, ids: int = 96, dim: int = 2048):
    q_pids, g_pids = rng.integers(0, ids, queries), rng.integers(0, ids, gallery)
    q = rng.normal(size=(queries, dim)).astype(np.float32)
    g = rng.normal(size=(gallery, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return (-(q @ g.T), q_pids, g_pids, rng.choice([3, 6], queries),
            rng.choice([1, 2, 4, 5], gallery))


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3803)
    parser.add_argument("--gallery", type=int, default=301)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    cases = [sysu_like(rng, args.queries, args.gallery) for _ in range(args.trials)]
    for case in cases:  # warm-up, and agreement to 1e-6
        ours, theirs = evaluate(*case, "sysu"), original_eval(*case, "sysu")
        assert np.allclose(ours.cmc, theirs[0], atol=1e-6)
        assert abs(ours.mAP - theirs[1]) < 1e-6 and abs(ours.mINP - theirs[2]) < 1e-6
    base = {**environment(), "benchmark": "metrics", "images": args.queries * args.trials,
            "device": "cpu", "threads": 1, "trials": args.trials,
            "problem": f"{args.queries}x{args.gallery}"}
    loop = repeat(lambda: timed(lambda: [original_eval(*c, "sysu") for c in cases]),
                  args.repeats)
    vectorised = repeat(lambda: timed(lambda: [evaluate(*c, "sysu") for c in cases]),
                        args.repeats)
    rows = [{**base, **loop, "name": "original per-query loop"},
            {**base, **vectorised, "name": "vireid vectorised"}]
    for row in rows:
        row["ratio_to_original"] = loop["seconds_median"] / row["seconds_median"]
        row["queries_per_s"] = row["images"] / row["seconds_median"]
    emit(rows, args.results)
    return rows


if __name__ == "__main__":
    main()
