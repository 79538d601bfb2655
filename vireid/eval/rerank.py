"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with
k-reciprocal Encoding", CVPR 2017), vectorised in torch; opt-in (``vireid-test --rerank``).

The original distance is vireid's −cosine similarity of L2-normalised features, computed over
the union of queries and gallery (as the paper). Per sample p of the union:
R(p, k) = {g ∈ N(p, k+1) : p ∈ N(g, k+1)}, where N(p, n) are the n nearest (p itself first);
R*(p, k1) adds R(q, round(k1/2)) of each q ∈ R(p, k1) that shares more than 2/3 of it with
R(p, k1); V_p = exp(−d(p, ·)) on R*, normalised to sum 1, then averaged over the k2 nearest
(local query expansion); Jaccard d_J(p, g) = 1 − Σ min(V_p, V_g) / Σ max(V_p, V_g). The result
is (1 − λ)·d_J + λ·d for queries × gallery.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CHUNK_ELEMENTS = 1 << 24  # the Jaccard's (queries, gallery, columns) blocks: 64 MiB float32


@dataclass(frozen=True)
class Rerank:
    """The re-ranking parameters (the paper's defaults)."""

    k1: int = 20
    k2: int = 6
    lam: float = 0.3


def rerank(query, gallery, k1: int = 20, k2: int = 6, lam: float = 0.3,
           device: str | torch.device = "cpu"):
    """Re-ranked queries × gallery distances (float32 torch tensor on ``device``)."""
    q = torch.as_tensor(query, dtype=torch.float32, device=device)
    g = torch.as_tensor(gallery, dtype=torch.float32, device=device)
    union = torch.cat([q, g])
    dist = -(union @ union.T)
    order = torch.argsort(dist, dim=1, stable=True)
    reciprocal = _reciprocal(order, k1)
    expanded = _expand(reciprocal, _reciprocal(order, round(k1 / 2)))
    weights = torch.exp(-dist) * expanded
    v = weights / weights.sum(dim=1, keepdim=True)
    if k2 > 1:
        v = _sparse(_nearest(order, k2)) @ v / k2
    jaccard = _jaccard(v[: len(q)], v[len(q):])
    return (1 - lam) * jaccard + lam * dist[: len(q), len(q):]


def _nearest(order: torch.Tensor, n: int) -> torch.Tensor:
    """Boolean N × N: [p, g] when g is among the n nearest of p."""
    member = torch.zeros(order.shape, dtype=torch.bool, device=order.device)
    return member.scatter_(1, order[:, :n], True)


def _reciprocal(order: torch.Tensor, k: int) -> torch.Tensor:
    """R(p, k) as a boolean matrix: g among p's k+1 nearest and p among g's."""
    near = _nearest(order, k + 1)
    return near & near.T


def _expand(r: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """R*(p): R(p) plus R_half(q) of each q ∈ R(p) with |R(p) ∩ R_half(q)| > 2/3 |R_half(q)|."""
    shared = _sparse(r) @ half.float().T
    accept = r & (shared > 2 / 3 * half.sum(dim=1).float())
    return r | (_sparse(accept) @ half.float() > 0)


def _sparse(member: torch.Tensor) -> torch.Tensor:
    """A boolean matrix as a sparse float one (rows hold a few dozen entries)."""
    return member.float().to_sparse()


def _jaccard(vq: torch.Tensor, vg: torch.Tensor) -> torch.Tensor:
    """1 − Σ min / Σ max, summed over each gallery row's support (V is sparse), in blocks of
    queries."""
    values, columns = vg.topk(int((vg > 0).sum(dim=1).max()), dim=1)  # zeros pad: min is 0
    step = max(1, CHUNK_ELEMENTS // max(1, columns.numel()))
    shared = torch.cat([torch.minimum(vq[i:i + step][:, columns], values).sum(-1)
                        for i in range(0, len(vq), step)])
    return 1 - shared / (2 - shared)  # Σ max = Σ V_p + Σ V_g − Σ min, each row sums to 1
