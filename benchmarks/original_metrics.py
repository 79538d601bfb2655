"""The original's per-query metric loop (eval_sysu / eval_llcm / eval_regdb), rebuilt for the
benchmark from docs/protocols.md (Metrics): one Python iteration per query, as the original
runs it."""

from __future__ import annotations

import numpy as np


def original_eval(distmat, q_pids, g_pids, q_cams, g_cams, protocol, max_rank=20):
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    indices = np.argsort(distmat, axis=1)
    pred = g_pids[indices]
    matches = (pred == q_pids[:, None]).astype(np.int32)
    new_cmcs, cmcs, aps, inps, valid = [], [], [], [], 0
    for q in range(num_q):
        order = indices[q]
        if protocol == "sysu":
            remove = (q_cams[q] == 3) & (g_cams[order] == 2)
        else:
            remove = (g_pids[order] == q_pids[q]) & (g_cams[order] == q_cams[q])
        keep = np.invert(remove)
        if protocol != "regdb":
            labels = pred[q][keep]
            first = np.unique(labels, return_index=True)[1]
            distinct = np.array([labels[i] for i in sorted(first)])
            curve = (distinct == q_pids[q]).astype(np.int32).cumsum()[:max_rank]
            curve = np.pad(curve, (0, max_rank - len(curve)), mode="edge")
            new_cmcs.append(curve)
        raw = matches[q][keep]
        if not np.any(raw):
            continue
        cumulative = raw.cumsum()
        last = np.max(np.where(raw == 1))
        inps.append(cumulative[last] / (last + 1.0))
        cumulative[cumulative > 1] = 1
        cmcs.append(cumulative[:max_rank])
        valid += 1
        precision = np.asarray([x / (i + 1.0) for i, x in enumerate(raw.cumsum())]) * raw
        aps.append(precision.sum() / raw.sum())
    curves = new_cmcs if protocol != "regdb" else cmcs
    cmc = np.asarray(curves).astype(np.float32).sum(0) / valid
    return cmc, float(np.mean(aps)), float(np.mean(inps))
