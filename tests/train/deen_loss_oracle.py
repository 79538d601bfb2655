"""DEEN's losses written out literally in float64, loop for loop, for the tests only.

A transcription of what the authors' ``DEEN/loss.py`` and ``DEEN/train.py`` compute (DEEN.md
§1.3), in our own words: their repository has no licence. Loops run where theirs do (over
blocks, identities and anchors); distances use their formula |a|² + |b|² − 2a·b, clamped at
1e-12 before the root. Every function keeps autograd, so tests can compare gradients too.
"""

from __future__ import annotations

import math

import torch

CLAMP = 1e-12


def distances(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrix, the authors' way, in the inputs' dtype."""
    squared = ((rows * rows).sum(dim=1, keepdim=True) + (cols * cols).sum(dim=1).unsqueeze(0)
               - 2 * rows @ cols.t())
    return squared.clamp(min=CLAMP).sqrt()


def ranking_terms(negatives: list, positives: list, margin: float) -> list[torch.Tensor]:
    """MarginRankingLoss(x1 = negative, x2 = positive, y = 1) per pair: max(0, −(n − p) + m)."""
    return [torch.clamp(-(n - p) + margin, min=0) for n, p in zip(negatives, positives)]


def ranking(negatives: list, positives: list, margin: float) -> torch.Tensor:
    """The same with its mean reduction."""
    terms = ranking_terms(negatives, positives, margin)
    return sum(terms) / len(terms)


def block_centres(group: torch.Tensor, count: int) -> list[torch.Tensor]:
    """Means of ``count`` contiguous chunks (torch.chunk sizes), in batch order."""
    size = math.ceil(group.shape[0] / count)
    centres = []
    for start in range(0, group.shape[0], size):
        block = group[start:start + size]
        total = block[0]
        for r in range(1, block.shape[0]):
            total = total + block[r]
        centres.append(total / block.shape[0])
    return centres


def cpm_pairs(features: torch.Tensor, labels: torch.Tensor,
              detach: bool = True) -> dict[str, tuple[list, list]]:
    """CPMLoss's (negatives, positives) per hinge, one entry per identity, for one
    cat(original, expansion): groups vis, ir, vis_e, ir_e (1..4 in the authors' names).
    ``detach=False`` drops the authors' detach, to show that tests can tell."""
    groups = features.double().chunk(4)
    ids = sorted(set(labels.chunk(4)[0].tolist()))  # unique() sorts; centres stay in batch order
    n = len(ids)
    c = [None] + [torch.stack(block_centres(g, n)) for g in groups]  # c[1] .. c[4]
    d = {(a, b): distances(c[a], c[b]) for a, b in
         [(1, 3), (2, 3), (3, 3), (1, 1), (1, 4), (2, 4), (4, 4), (2, 2)]}
    same = [[ids[i] == ids[j] for j in range(n)] for i in range(n)]

    def hardest(pair, positive, farthest):
        chosen = []
        for i in range(n):
            row = [d[pair][i][j] for j in range(n) if same[i][j] == positive]
            best = row[0]
            for value in row[1:]:
                if (value > best) if farthest else (value < best):
                    best = value
            chosen.append(best)
        return chosen

    def keep(values):
        return [v.detach() for v in values] if detach else values

    ap3, ap4 = hardest((2, 3), True, True), hardest((1, 4), True, True)
    return {"13": (keep(hardest((1, 3), True, False)), ap3),
            "33": (hardest((3, 3), False, False), ap3),
            "11": (hardest((1, 1), False, False), ap3),
            "24": (keep(hardest((2, 4), True, False)), ap4),
            "44": (hardest((4, 4), False, False), ap4),
            "22": (hardest((2, 2), False, False), ap4)}


def cpm(features: torch.Tensor, labels: torch.Tensor, margin: float = 0.2,
        detach: bool = True) -> torch.Tensor:
    """CPMLoss: (L_123 + L_124) / 2, each its detached hinge plus ½ of two neighbour ones."""
    h = {key: ranking(*pair, margin) for key, pair in cpm_pairs(features, labels, detach).items()}
    loss3 = h["13"] + (h["33"] + h["11"]) * 0.5
    loss4 = h["24"] + (h["44"] + h["22"]) * 0.5
    return (loss3 + loss4) / 2


def hardest_pairs(dist: torch.Tensor, labels: torch.Tensor) -> tuple[list, list]:
    """Per anchor: the farthest same-label distance (itself included), the nearest other."""
    n = dist.shape[0]
    mask = [[bool(labels[i] == labels[j]) for j in range(n)] for i in range(n)]
    positives, negatives = [], []
    for i in range(n):
        positives.append(dist[i][torch.tensor(mask[i])].max())
        negatives.append(dist[i][~torch.tensor(mask[i])].min())
    return positives, negatives


def triplet(features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """OriTripletLoss: batch-hard, margin 0.3, mean over anchors."""
    x = features.double()
    positives, negatives = hardest_pairs(distances(x, x), labels)
    return ranking(negatives, positives, margin)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over rows of log Σ exp(z) − z[label]."""
    z = logits.double()
    rows = [torch.log(torch.exp(z[i]).sum()) - z[i][int(labels[i])] for i in range(len(z))]
    return sum(rows) / len(rows)


def orthogonality(pooled: torch.Tensor) -> torch.Tensor:
    """The network's loss_ort: Σ over images of ⟨e1, e2⟩, divided by the rows (3 per image)."""
    x = pooled.double()
    images = x.shape[0] // 3
    total = 0
    for i in range(images):
        e1, e2 = x[images + i], x[2 * images + i]
        total = total + sum(e1[k] * e2[k] for k in range(x.shape[1]))
    return total / x.shape[0]


def total(pooled: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
          lambda_1: float = 0.8, lambda_2: float = 0.01) -> dict[str, torch.Tensor]:
    """One training step's terms as train.py forms them; ``labels`` = [label1 | label2]."""
    l1, l2 = labels.chunk(2)
    labs = torch.cat((l1, l2, l1, l2))
    tiled = torch.cat((l1, l2, l1, l2, l1, l2))
    ft1, ft2, ft3 = pooled.chunk(3)
    parts = {"id": cross_entropy(logits, tiled), "triplet": triplet(pooled, tiled),
             "cpm": (cpm(torch.cat((ft1, ft2)), labs) + cpm(torch.cat((ft1, ft3)), labs))
             * lambda_1,
             "ort": orthogonality(pooled) * lambda_2}
    return {"total": parts["id"] + parts["triplet"] + parts["cpm"] + parts["ort"], **parts}
