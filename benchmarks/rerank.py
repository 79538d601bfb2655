"""Protocol time with and without k-reciprocal re-ranking, on the CPU (not in the suite).

A SYSU-sized protocol (3,803 queries × 301 gallery images, 2048-d random L2-normalised
features, 10 trials): per trial the distances (−cosine, or ``vireid.eval.rerank`` with
k1 = 20, k2 = 6, λ = 0.3) and the ``sysu`` metric.

    python -m benchmarks.rerank
    python -m benchmarks.rerank --queries 200 --gallery 50 --trials 2 --repeats 1   # smoke
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import emit, environment, repeat, timed
from benchmarks.metrics import sysu_like
from vireid.eval.metrics import evaluate
from vireid.eval.rerank import Rerank, rerank


def features(rng, rows: int, dim: int) -> np.ndarray:
    x = rng.normal(size=(rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def protocol(trials, reranking: Rerank | None) -> None:
    """Every trial scored: distances, then the metric."""
    for q, g, labels in trials:
        distances = -(q @ g.T) if reranking is None else rerank(
            q, g, reranking.k1, reranking.k2, reranking.lam).numpy()
        evaluate(distances, *labels, "sysu")


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3803)
    parser.add_argument("--gallery", type=int, default=301)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    query = features(rng, args.queries, args.dim)  # SYSU: one query set, a gallery per trial
    trials = [(query, features(rng, args.gallery, args.dim),
               sysu_like(rng, args.queries, args.gallery, dim=8)[1:])
              for _ in range(args.trials)]
    base = {**environment(), "benchmark": "rerank", "device": "cpu",
            "threads": torch.get_num_threads(), "trials": args.trials,
            "problem": f"{args.queries}x{args.gallery}x{args.dim}"}
    rows = []
    for name, reranking in (("cosine", None), ("k-reciprocal re-ranking", Rerank())):
        timing = repeat(lambda r=reranking: timed(lambda: protocol(trials, r)), args.repeats)
        rows.append({**base, **timing, "name": name, "reranked": reranking is not None})
    for row in rows:
        row["seconds_per_trial"] = row["seconds_median"] / args.trials
        row["ratio_to_cosine"] = row["seconds_median"] / rows[0]["seconds_median"]
    emit(rows, args.results)
    return rows


if __name__ == "__main__":
    main()
