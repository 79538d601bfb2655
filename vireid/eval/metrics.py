"""Re-identification metrics of the original AGW code, vectorised (docs/protocols.md, Metrics).

For every query the gallery is ranked by ascending distance, then entries are dropped:
SYSU drops gallery camera 2 for queries from camera 3; LLCM and RegDB drop the query's own
(pid, camera). Queries left without a positive are skipped. AP is the mean precision at each
positive, INP = #positives / rank of the last positive, both averaged over valid queries.

CMC: RegDB uses the standard curve over valid queries. SYSU and LLCM use the original's "new"
CMC: walk the kept ranking keeping only the FIRST image of each gallery identity, and count a
match at rank k when the query's identity is among the first k distinct identities; rows of
ALL queries are summed (invalid ones add zeros) and divided by the number of valid queries.

Worked example (SYSU, query pid 1 on camera 3): ranked gallery pids [2, 2, 1, 3, 1] on cameras
[1, 4, 5, 1, 2]. Camera 2 is dropped → kept [2, 2, 1, 3]. Positives at kept ranks 3: AP = 1/3,
INP = 1/3. Distinct identities in order: [2, 1, 3] → new CMC = [0, 1, 1, …]; the standard CMC
would be [0, 0, 1, …].

When fewer than ``max_rank`` distinct identities remain, the original would fail on ragged
arrays; here the curve keeps its last value up to ``max_rank``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vireid.errors import VireidError

PROTOCOLS = ("sysu", "regdb", "llcm")
CHUNK_ELEMENTS = 4_000_000  # queries × gallery entries processed at once


@dataclass(frozen=True)
class MetricResult:
    cmc: np.ndarray  # fraction matched within rank k+1, k = 0 … max_rank-1
    mAP: float
    mINP: float
    num_valid: int

    def rank(self, k: int) -> float:
        return float(self.cmc[min(k, len(self.cmc)) - 1])


def evaluate(distmat, q_pids, g_pids, q_cams, g_cams, protocol: str,
             max_rank: int = 20) -> MetricResult:
    """The original's eval_sysu / eval_regdb / eval_llcm on a queries × gallery matrix."""
    if protocol not in PROTOCOLS:
        raise VireidError("protocol", f"unknown metric protocol {protocol!r} ({PROTOCOLS})")
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_cams, g_cams = np.asarray(q_cams), np.asarray(g_cams)
    max_rank = min(max_rank, distmat.shape[1])
    _, identity = np.unique(g_pids, return_inverse=True)
    by_identity = np.argsort(identity, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(identity[by_identity]) != 0])
    step = max(1, CHUNK_ELEMENTS // max(1, distmat.shape[1]))
    parts = [_chunk(distmat[i:i + step], q_pids[i:i + step], q_cams[i:i + step], g_pids,
                    g_cams, identity, by_identity, starts, protocol, max_rank)
             for i in range(0, len(q_pids), step)]
    valid = sum(p[0] for p in parts)
    if valid == 0:
        raise VireidError("evaluation", "no query has a positive in its gallery")
    cmc = sum(p[1] for p in parts) / valid
    return MetricResult(cmc, float(sum(p[2] for p in parts) / valid),
                        float(sum(p[3] for p in parts) / valid), int(valid))


def _chunk(dist, q_pids, q_cams, g_pids, g_cams, identity, by_identity, starts, protocol,
           max_rank):
    """(valid count, summed CMC rows, summed AP, summed INP) of a block of queries."""
    order = np.argsort(dist, axis=1)  # like the original; exact ties may fall either way
    pids, cams = g_pids[order], g_cams[order]
    if protocol == "sysu":
        keep = ~((q_cams[:, None] == 3) & (cams == 2))
    else:
        keep = ~((pids == q_pids[:, None]) & (cams == q_cams[:, None]))
    rank = np.cumsum(keep, axis=1, dtype=np.int32) - 1  # position in the kept ranking
    positive = (pids == q_pids[:, None]) & keep
    count = positive.sum(axis=1)
    valid = count > 0
    hits = np.cumsum(positive, axis=1, dtype=np.int32)
    ap = np.where(positive, hits / (np.maximum(rank, 0) + 1.0), 0.0).sum(axis=1)[valid] \
        / count[valid]
    last = np.where(positive, rank, -1).max(axis=1)
    inp = count[valid] / (last[valid] + 1.0)
    ranks = np.arange(max_rank)
    if protocol == "regdb":
        first = np.where(positive, rank, np.iinfo(np.int32).max).min(axis=1)[valid]
        cmc = (first[:, None] <= ranks[None, :]).sum(axis=0)
    else:
        cmc = _new_cmc(order, keep, rank, q_pids, g_pids, identity, by_identity, starts,
                       ranks)
    return int(valid.sum()), cmc.astype(np.float64), ap.sum(), inp.sum()


def _new_cmc(order, keep, rank, q_pids, g_pids, identity, by_identity, starts, ranks):
    """Summed de-duplicated-identity CMC rows of a block of queries."""
    never = np.iinfo(np.int32).max
    kept_rank = np.empty_like(rank)
    rows = np.arange(len(order))[:, None]
    kept_rank[rows, order] = np.where(keep, rank, never)  # back in gallery column order
    first = np.minimum.reduceat(kept_rank[:, by_identity], starts, axis=1)  # per identity
    ids = g_pids[by_identity][starts]
    column = np.searchsorted(ids, q_pids)
    present = (column < len(ids)) & (ids[np.minimum(column, len(ids) - 1)] == q_pids)
    own = np.where(present, first[np.arange(len(first)), np.minimum(column, len(ids) - 1)],
                   never)
    position = (first < own[:, None]).sum(axis=1)  # distinct identities ranked before it
    matched = own < never
    return (matched[:, None] & (position[:, None] <= ranks[None, :])).sum(axis=0)
