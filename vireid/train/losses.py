"""Identity cross-entropy plus a triplet loss on the pooled features (docs/recipe.md, Losses).

Distances and the triplet losses are computed in float32 even under autocast: squared
distances of 2048-d features overflow float16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

HARD_TRIPLET_MARGIN = 0.3
SOFTMAX_EPS = 1e-6  # the original's guard in the softmax weights' normaliser
DIST_EPS = 1e-12  # the original's clamp before the square root


def pairwise_distances(features: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrix (float32), clamped at 1e-12 before the root as the original."""
    x = features.float()
    squared = x.pow(2).sum(dim=1, keepdim=True)
    dist = torch.addmm(squared + squared.t(), x, x.t(), beta=1, alpha=-2)
    return dist.clamp(min=DIST_EPS).sqrt()


def _softmax_weights(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of ``values`` over the entries where ``mask`` is 1 (row-wise)."""
    top = (values * mask).max(dim=1, keepdim=True).values
    exp = torch.exp(values - top) * mask
    return exp / (exp.sum(dim=1, keepdim=True) + SOFTMAX_EPS)


def weighted_regularized_triplet(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """WRT: softmax-weighted positive and negative distances, soft margin.

    For anchor i: d_p = Σ_j w_ij d_ij over positives with w = softmax(d) over positives,
    d_n = Σ_k v_ik d_ik over negatives with v = softmax(−d) over negatives;
    loss = mean softplus(d_p − d_n).
    """
    with torch.autocast(device_type=features.device.type, enabled=False):
        return F.softplus(_weighted_difference(features, labels)).mean()


def hard_triplet(features: torch.Tensor, labels: torch.Tensor,
                 margin: float = HARD_TRIPLET_MARGIN) -> torch.Tensor:
    """Batch-hard triplet (method base): hardest positive and negative, margin 0.3."""
    with torch.autocast(device_type=features.device.type, enabled=False):
        dist = pairwise_distances(features)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        hardest_positive = dist.masked_fill(~same, float("-inf")).max(dim=1).values
        hardest_negative = dist.masked_fill(same, float("inf")).min(dim=1).values
        return F.relu(hardest_positive - hardest_negative + margin).mean()


ADP_CLAMP = 88.0  # the original's clamp_max on the squared difference (exp(88) ≈ float32 max)


def adp_triplet(features: torch.Tensor, labels: torch.Tensor,
                square: bool = True) -> torch.Tensor:
    """CAJ's TripletLoss_ADP with α = γ = 1 and square = 1 (docs/methods.md).

    Softmax-weighted distances as WRT: fp (weights softmax(d) over positives) and cn
    (softmax(−d) over negatives), weights not detached. Then δ = fp − cn, s = min(δ², 88),
    y = −1 where δ > 0 (violated) else +1, loss = mean log(1 + exp(−y·s)). Where the clamp
    is active the gradient is exactly zero, as in the original. ``square=False`` is the
    original's square = 0: softplus(δ), which is WRT.
    """
    with torch.autocast(device_type=features.device.type, enabled=False):
        delta = _weighted_difference(features, labels)
        if not square:
            return F.softplus(delta).mean()
        squared = delta.pow(2).clamp_max(ADP_CLAMP)
        sign = torch.where(delta > 0, -1.0, 1.0)  # SoftMarginLoss target
        return F.softplus(-sign * squared).mean()


def _weighted_difference(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """fp − cn per anchor: the softmax-weighted positive and negative distances of WRT."""
    dist = pairwise_distances(features)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    positive, negative = same.float(), (~same).float()
    dist_ap, dist_an = dist * positive, dist * negative
    far_positive = (dist_ap * _softmax_weights(dist_ap, positive)).sum(dim=1)
    close_negative = (dist_an * _softmax_weights(-dist_an, negative)).sum(dim=1)
    return far_positive - close_negative
