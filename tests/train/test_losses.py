"""Loss values on hand-computed cases."""

import math

import pytest
import torch

from vireid.train.losses import (
    hard_triplet,
    pairwise_distances,
    weighted_regularized_triplet,
)
from vireid.train.methods import get_method


def softplus(x):
    return math.log1p(math.exp(x))


def test_pairwise_distances():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    d = pairwise_distances(x)
    assert d[0, 1].item() == pytest.approx(5.0)
    assert d[1, 2].item() == pytest.approx(math.sqrt(9 + 9))
    assert d[0, 0].item() == pytest.approx(1e-6)  # clamp(1e-12).sqrt(), as the original


def test_wrt_on_a_hand_computed_case():
    # 1-d features 0, 1 (label 0) and 3, 6 (label 1)
    x = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
    labels = torch.tensor([0, 0, 1, 1])
    loss = weighted_regularized_triplet(x, labels).item()

    def anchor(positives, negatives):
        wp = [math.exp(d) for d in positives]
        wn = [math.exp(-d) for d in negatives]
        dp = sum(w * d for w, d in zip(wp, positives)) / sum(wp)
        dn = sum(w * d for w, d in zip(wn, negatives)) / sum(wn)
        return softplus(dp - dn)

    eps = 1e-6  # the self-distance after the clamp
    expected = (anchor([eps, 1], [3, 6]) + anchor([1, eps], [2, 5]) + anchor([eps, 3], [3, 2])
                + anchor([3, eps], [6, 5])) / 4
    assert loss == pytest.approx(expected, rel=1e-4)


def test_hard_triplet_on_a_hand_computed_case():
    x = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # hardest positive / negative per anchor: (1,3) (1,2) (3,2) (3,5)
    expected = (max(0, 1 - 3 + 0.3) + max(0, 1 - 2 + 0.3) + max(0, 3 - 2 + 0.3)
                + max(0, 3 - 5 + 0.3)) / 4
    assert hard_triplet(x, labels).item() == pytest.approx(expected, rel=1e-5)


def test_agw_losses_sum_and_float32_under_autocast():
    torch.manual_seed(0)
    pooled = (torch.rand(8, 16) * 300).to(torch.bfloat16)  # squares overflow float16
    logits = torch.randn(8, 4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = get_method("agw").losses(pooled, logits, labels)
    assert set(losses) == {"total", "id", "triplet"}
    assert losses["triplet"].dtype == torch.float32 and torch.isfinite(losses["triplet"])
    assert losses["total"].item() == pytest.approx(losses["id"].item() +
                                                   losses["triplet"].item())
    assert losses["id"].item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
    base = get_method("base").losses(pooled.float(), logits, labels)
    assert base["triplet"].item() == pytest.approx(hard_triplet(pooled.float(),
                                                                labels).item())
