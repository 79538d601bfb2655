"""Loss values on hand-computed cases."""

import math

import pytest
import torch

from vireid.train.losses import (
    adp_triplet,
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


def adp_deltas(x, labels):
    """δ_k = fp_k − cn_k of CAJ.md §4.2, written out per anchor in float64 (α = 1)."""
    x = [[float(v) for v in row] for row in x]
    labels = [int(v) for v in labels]
    n = len(x)

    def dist(k, j):
        dot = sum(a * b for a, b in zip(x[k], x[j]))
        squared = sum(a * a for a in x[k]) + sum(b * b for b in x[j]) - 2 * dot
        return math.sqrt(max(squared, 1e-12))

    deltas = []
    for k in range(n):
        pos = [dist(k, j) for j in range(n) if labels[j] == labels[k]]
        neg = [dist(k, j) for j in range(n) if labels[j] != labels[k]]
        top = max(pos)  # the masked row's maximum of αD
        zp = sum(math.exp(d - top) for d in pos) + 1e-6
        zn = sum(math.exp(-d) for d in neg) + 1e-6  # masked −αD: row maximum 0
        fp = sum(math.exp(d - top) / zp * d for d in pos)
        cn = sum(math.exp(-d) / zn * d for d in neg)
        deltas.append(fp - cn)
    return deltas


def adp_oracle(x, labels, square=True):
    """TripletLoss_ADP(alpha=1, gamma=1, square) of CAJ.md §4.2: SoftMarginLoss, mean."""
    total = 0.0
    for delta in adp_deltas(x, labels):
        if not square:
            total += math.log1p(math.exp(delta))  # SoftMargin(γ(cn − fp), y = 1)
            continue
        s = min(1.0 * delta * delta, 88.0)  # clamp_max(γδ², 88)
        y = -1.0 if delta > 0 else 1.0
        total += math.log1p(math.exp(-y * s))
    return total / len(x)


LABELS12 = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.0])
def test_adp_triplet_matches_the_literal_oracle(scale):
    torch.manual_seed(int(scale * 10))
    x = torch.randn(12, 5) * scale
    loss = adp_triplet(x, LABELS12).item()
    assert loss == pytest.approx(adp_oracle(x, LABELS12), rel=1e-5, abs=1e-7)


def test_adp_triplet_sign_rule_on_violated_and_satisfied_anchors():
    # label 0 spread wide around a close label-1 pair (violated), label 2 tight and far
    x = torch.tensor([[0.0], [3.0], [3.5], [3.6], [20.0], [20.1]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    deltas = adp_deltas(x, labels)
    assert max(deltas) > 0 > min(deltas)
    assert adp_triplet(x, labels).item() == pytest.approx(adp_oracle(x, labels), rel=1e-5)
    violated = torch.tensor([[0.0], [4.0], [1.0], [5.0]])  # every δ > 0: loss > ln 2
    satisfied = torch.tensor([[0.0], [0.1], [3.0], [3.1]])  # every δ < 0: loss < ln 2
    pair = torch.tensor([0, 0, 1, 1])
    assert min(adp_deltas(violated, pair)) > 0 > max(adp_deltas(satisfied, pair))
    for x in (violated, satisfied):
        assert adp_triplet(x, pair).item() == pytest.approx(adp_oracle(x, pair), rel=1e-5,
                                                            abs=1e-7)
    assert adp_triplet(violated, pair).item() > math.log(2) > adp_triplet(satisfied, pair).item()


def test_adp_triplet_gradient_is_exactly_zero_where_the_clamp_bites():
    # negatives ~100 away: Σ exp(−d) ≪ 1e-6, so cn ≈ 0 and δ² ≈ 12² = 144 > 88
    x = torch.tensor([[0.0, 0.0], [12.0, 0.0], [100.0, 0.0], [112.0, 0.0]],
                     requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    assert min(d * d for d in adp_deltas(x.detach(), labels)) > 88
    loss = adp_triplet(x, labels)
    assert loss.item() == pytest.approx(math.log1p(math.exp(88.0)), rel=1e-6)
    assert loss.item() == pytest.approx(adp_oracle(x.detach(), labels), rel=1e-6)
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    x.grad = None
    weighted_regularized_triplet(x, labels).backward()  # WRT still pulls the positives in
    assert x.grad.abs().sum() > 0


def test_adp_triplet_gradient_flows_through_the_soft_weights():
    # the oracle's central differences (float64) against autograd: detached weights differ
    x = torch.tensor([[0.0, 0.2], [0.9, -0.3], [1.4, 0.5], [0.4, 1.1], [-0.6, 0.8],
                      [1.0, 1.3]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    adp_triplet(x, labels).backward()
    h = 1e-5
    numeric = torch.zeros_like(x)
    base = x.detach().double()
    for index in range(base.numel()):
        step = torch.zeros_like(base).view(-1)
        step[index] = h
        step = step.view_as(base)
        numeric.view(-1)[index] = (adp_oracle(base + step, labels)
                                   - adp_oracle(base - step, labels)) / (2 * h)
    assert torch.allclose(x.grad, numeric, atol=1e-4, rtol=1e-3)


def test_adp_triplet_without_square_is_wrt():
    torch.manual_seed(4)
    x = torch.randn(12, 5)
    assert adp_triplet(x, LABELS12, square=False).item() == pytest.approx(
        weighted_regularized_triplet(x, LABELS12).item(), rel=1e-6)
    assert adp_triplet(x, LABELS12, square=False).item() == pytest.approx(
        adp_oracle(x, LABELS12, square=False), rel=1e-5)


def test_caj_losses_in_float32_under_autocast():
    pooled = (torch.rand(12, 16) * 3).to(torch.bfloat16)
    logits = torch.randn(12, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = get_method("caj").losses(pooled, logits, LABELS12)
    assert losses["triplet"].dtype == torch.float32
    assert losses["triplet"].item() == pytest.approx(adp_triplet(pooled.float(),
                                                                 LABELS12).item(), rel=1e-6)
