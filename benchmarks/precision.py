"""Do float32 distances ever change a metric against float64? Protocol-sized cases.

The original ranks with float32 features and a float32 matrix product; so does vireid. This
runner ranks the same float32 features with float32 and with float64 distances and reports
how far Rank-1, mAP and mINP move. Features: one centre per identity plus noise, L2-normalised
(noise chosen so that Rank-1 is middling, where ties matter most).

    python -m benchmarks.precision
    python -m benchmarks.precision --seeds 1 --queries 300 --gallery 60   # smoke
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.common import emit, environment
from vireid.eval.metrics import evaluate

CASES = {  # name: (metric rule, queries, gallery, identities, query cams, gallery cams)
    "sysu-all": ("sysu", 3803, 301, 96, (3, 6), (1, 2, 4, 5)),
    "regdb-v2t": ("regdb", 2060, 2060, 206, (1,), (2,)),
}


def features(rng, pids, centres, noise: float) -> np.ndarray:
    x = centres[pids] + noise * rng.normal(size=(len(pids), centres.shape[1]))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def one_case(rng, rule, queries, gallery, ids, q_cams, g_cams, dim, noise) -> dict:
    centres = rng.normal(size=(ids, dim))
    q_pids = rng.integers(0, ids, queries)
    g_pids = np.concatenate([np.arange(ids), rng.integers(0, ids, max(0, gallery - ids))])
    q, g = features(rng, q_pids, centres, noise), features(rng, g_pids, centres, noise)
    qc, gc = rng.choice(q_cams, queries), rng.choice(g_cams, len(g_pids))
    single = evaluate(-(q @ g.T), q_pids, g_pids, qc, gc, rule)
    double = evaluate(-(q.astype(np.float64) @ g.astype(np.float64).T), q_pids, g_pids, qc,
                      gc, rule)
    return {"rank1_delta": abs(single.rank(1) - double.rank(1)),
            "mAP_delta": abs(single.mAP - double.mAP),
            "mINP_delta": abs(single.mINP - double.mINP), "rank1": single.rank(1)}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="random cases per protocol")
    parser.add_argument("--queries", type=int, default=None, help="override (smoke runs)")
    parser.add_argument("--gallery", type=int, default=None, help="override (smoke runs)")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--noise", type=float, default=4.0,
                        help="noise per dimension against unit centres (4: Rank-1 70-85 %%)")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    for name, (rule, queries, gallery, ids, q_cams, g_cams) in CASES.items():
        shape = (args.queries or queries, args.gallery or gallery)
        cases = [one_case(np.random.default_rng(seed), rule, *shape, min(ids, shape[1]),
                          q_cams, g_cams, args.dim, args.noise) for seed in range(args.seeds)]
        rows.append({**environment(), "benchmark": "precision", "name": name,
                     "cases": len(cases), "queries": shape[0], "gallery": shape[1],
                     "rank1_mean": float(np.mean([c["rank1"] for c in cases])),
                     **{f"max_{k}": float(max(c[k] for c in cases))
                        for k in ("rank1_delta", "mAP_delta", "mINP_delta")},
                     "cases_changed": sum(any(c[k] > 0 for k in ("rank1_delta", "mAP_delta",
                                                                 "mINP_delta"))
                                          for c in cases)})
    emit(rows, args.results)
    return rows


if __name__ == "__main__":
    main()
