"""DEEN's losses (Zhang & Wang, CVPR 2023) as the authors' training script combines them.

Facts from the authors' ``DEEN/loss.py`` and ``DEEN/train.py`` (docs: DEEN.md §1.3). The
network returns 6B rows for the 2B input images (B = P·K per modality), in the layout

    [vis | ir | vis_e1 | ir_e1 | vis_e2 | ir_e2]      (each part P blocks of K, one identity each)

and the total is id + triplet + λ1·(CPM(orig, e1) + CPM(orig, e2)) + λ2·ort with λ1 = 0.8
and λ2 = 0.01. Every term is computed in float32, also under autocast: squared distances of
2048-d features overflow float16.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vireid.train.losses import HARD_TRIPLET_MARGIN, hard_triplet, pairwise_distances

CPM_MARGIN = 0.2  # fixed in the authors' CPMLoss (its ranking loss ignores the argument)
BRANCHES = 3  # the original and two expansions, stacked along the batch by the network
GROUPS = 4  # rows of one CPM call: vis, ir, vis_e, ir_e
VIS, IR, VIS_E, IR_E = range(GROUPS)


@dataclass(frozen=True)
class DeenLossSettings:
    """Weights and margins of DEEN's total; the defaults are the authors' command line."""

    cpm_weight: float = 0.8  # λ1 (--lambda_1), on the sum of both CPM calls
    ort_weight: float = 0.01  # λ2 (--lambda_2)
    triplet_margin: float = HARD_TRIPLET_MARGIN  # --margin
    cpm_margin: float = CPM_MARGIN


AUTHORS_SETTINGS = DeenLossSettings()


def deen_losses(pooled: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                ort: torch.Tensor | None = None, *, num_pos: int,
                settings: DeenLossSettings = AUTHORS_SETTINGS) -> dict[str, torch.Tensor]:
    """Named float32 losses of one step; ``total`` = id + triplet + cpm + ort.

    ``pooled`` (6B, D) pre-BN pooled features and ``logits`` (6B, classes) in the layout
    above; ``labels`` (2B,) are the input images' ``[visible | infrared]`` labels, tiled here
    over the three branches. ``ort`` is the network's orthogonality term; None computes it
    from ``pooled`` (the same value, in float32). ``cpm`` and ``ort`` hold their weighted
    values, as the authors log them.
    """
    _check_layout(pooled, labels, num_pos)
    tiled = labels.repeat(BRANCHES)
    identity = F.cross_entropy(logits.float(), tiled)
    triplet = hard_triplet(pooled, tiled, settings.triplet_margin)
    cpm = settings.cpm_weight * two_expansion_cpm(pooled, labels, num_pos, settings.cpm_margin)
    if ort is None:
        ort = orthogonality_loss(pooled)
    ort = settings.ort_weight * ort.float()
    return {"total": identity + triplet + cpm + ort, "id": identity, "triplet": triplet,
            "cpm": cpm, "ort": ort}


def two_expansion_cpm(pooled: torch.Tensor, labels: torch.Tensor, num_pos: int,
                      margin: float = CPM_MARGIN) -> torch.Tensor:
    """CPM(cat(original, e1)) + CPM(cat(original, e2)), unweighted, as the authors call it."""
    original, first, second = pooled.chunk(BRANCHES)
    pair_labels = labels.repeat(2)  # [vis | ir | vis_e | ir_e]
    num_ids = labels.numel() // (2 * num_pos)
    return (cpm_loss(torch.cat([original, first]), pair_labels, num_ids, num_pos, margin)
            + cpm_loss(torch.cat([original, second]), pair_labels, num_ids, num_pos, margin))


def orthogonality_loss(pooled: torch.Tensor) -> torch.Tensor:
    """Σ_i ⟨e1_i, e2_i⟩ / 6B: the two expansions' pooled vectors per image, summed over the
    2B images and divided by all 6B rows, as the authors' network computes ``loss_ort``."""
    with torch.autocast(device_type=pooled.device.type, enabled=False):
        _, first, second = pooled.float().chunk(BRANCHES)
        return (first * second).sum() / pooled.shape[0]


def cpm_loss(features: torch.Tensor, labels: torch.Tensor, num_ids: int, num_pos: int,
             margin: float = CPM_MARGIN) -> torch.Tensor:
    """Cross-modality and expansion centre loss for one ``cat(original, expansion)``.

    ``features`` (4·P·K, D) hold the groups vis, ir, vis_e, ir_e with K rows per identity in
    each. The visible expansion's centre is pulled towards the infrared centre of its identity
    (L_123), the infrared expansion's towards the visible one (L_124); the result is
    (L_123 + L_124) / 2, each a mean over the P identities.
    """
    with torch.autocast(device_type=features.device.type, enabled=False):
        centres, ids = identity_centres(features, labels, num_ids, num_pos)
        dist = pairwise_distances(centres.reshape(GROUPS * num_ids, -1))
        dist = dist.view(GROUPS, num_ids, GROUPS, num_ids)  # dist[g, i, h, j] = d(g_i, h_j)
        same = ids.unsqueeze(0) == ids.unsqueeze(1)
        towards_ir = _pull_term(dist, same, expansion=VIS_E, own=VIS, other=IR, margin=margin)
        towards_vis = _pull_term(dist, same, expansion=IR_E, own=IR, other=VIS, margin=margin)
        return (towards_ir + towards_vis) / 2


def identity_centres(features: torch.Tensor, labels: torch.Tensor, num_ids: int,
                     num_pos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-identity mean of each group, (4, P, D) in ascending label order, and the P labels.

    The authors average P contiguous blocks of K rows; a stable sort of each group by label
    first keeps those blocks intact for their layout (so the centres are the same) and groups
    an identity's rows wherever they sit. The sorted order is also the order of the authors'
    ``unique()`` labels, which they pair with batch-order centres: harmless there, since the
    labels within a batch are distinct and the mask is the identity matrix.
    """
    rows = features.float().reshape(GROUPS, num_ids * num_pos, -1)
    group_labels = labels.reshape(GROUPS, num_ids * num_pos)
    order = torch.argsort(group_labels, dim=1, stable=True)
    rows = torch.gather(rows, 1, order.unsqueeze(-1).expand_as(rows))
    centres = rows.view(GROUPS, num_ids, num_pos, -1).mean(dim=2)
    ids = torch.gather(group_labels[:1], 1, order[:1]).view(num_ids, num_pos)[:, 0]
    return centres, ids


def _pull_term(dist: torch.Tensor, same: torch.Tensor, *, expansion: int, own: int,
               other: int, margin: float) -> torch.Tensor:
    """L_123 (or L_124): the expansion's centre nearer the other modality's centre of its
    identity than (a) its own modality's centre, a detached distance, and (b) the nearest
    other-identity centre among the expansions and among its own modality, each weighted ½.

    With distinct labels "same identity" is the diagonal; the masked max / min keep the
    authors' form, so only the selected distance carries gradient.
    """
    positive = _masked_max(dist[other, :, expansion, :], same)
    own_centre = _masked_min(dist[own, :, expansion, :], same).detach()
    near_expansion = _masked_min(dist[expansion, :, expansion, :], ~same)
    near_own = _masked_min(dist[own, :, own, :], ~same)
    return (_ranking(positive, own_centre, margin)
            + (_ranking(positive, near_expansion, margin)
               + _ranking(positive, near_own, margin)) * 0.5)


def _ranking(positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """MarginRankingLoss(negative, positive, y = 1): mean of max(0, positive − negative + m),
    with its clamp (gradient passes at exactly 0, unlike relu)."""
    return (-(negative - positive) + margin).clamp_min(0).mean()


def _masked_max(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return values.masked_fill(~mask, float("-inf")).max(dim=1).values


def _masked_min(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return values.masked_fill(~mask, float("inf")).min(dim=1).values


def _check_layout(pooled: torch.Tensor, labels: torch.Tensor, num_pos: int) -> None:
    """Shapes only (no device sync): three rows per label, P blocks of K per modality."""
    batch = labels.numel()
    if pooled.shape[0] != BRANCHES * batch or batch % (2 * num_pos):
        raise ValueError(f"DEEN needs {BRANCHES}×{batch} pooled rows in blocks of K = "
                         f"{num_pos} per modality, got {tuple(pooled.shape)}")
