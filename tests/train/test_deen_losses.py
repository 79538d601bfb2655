"""DEEN's losses against the literal float64 oracle (tests/train/deen_loss_oracle.py): values,
which distances carry gradient, the weighted total, and float32 under autocast."""

from __future__ import annotations

import pytest
import torch

from tests.train import deen_loss_oracle as oracle
from vireid.train.deen_losses import (
    DeenLossSettings,
    cpm_loss,
    deen_losses,
    orthogonality_loss,
    two_expansion_cpm,
)
from vireid.train.losses import hard_triplet, pairwise_distances

P, K, D = 6, 4, 64


def step(seed: int, ids: int = P, pos: int = K, dim: int = D, spread: float = 0.3):
    """Pooled rows [vis | ir | vis_e1 | ir_e1 | vis_e2 | ir_e2] of one step and its labels.

    Identities in shuffled order (distinct labels, unsorted); a shared modality gap with a
    per-identity part, and expansions part-way along it, so that every hinge is active for
    some identities and not for others; a larger ``spread`` separates the identities.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randperm(40, generator=g)[:ids].repeat_interleave(pos)
    identity = torch.randn(ids, dim, generator=g) * spread
    gap = torch.randn(1, dim, generator=g) * 0.6 + torch.randn(ids, dim, generator=g) * 0.2
    t = torch.rand(4, ids, 1, generator=g)
    centres = [identity, identity + gap, identity + t[0] * gap, identity + (1 - t[1]) * gap,
               identity + t[2] * gap, identity + (1 - t[3]) * gap]
    rows = [c.repeat_interleave(pos, 0) + 0.3 * torch.randn(ids * pos, dim, generator=g)
            for c in centres]
    return torch.cat(rows), torch.cat([labels, labels])


def expansion_pair(pooled: torch.Tensor, k: int) -> torch.Tensor:
    original, *expansions = pooled.chunk(3)
    return torch.cat([original, expansions[k - 1]])


def with_grad(x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    return x.detach().to(dtype).requires_grad_()


CASES = [(seed, k) for seed in range(10) for k in (1, 2)]


@pytest.mark.parametrize("seed,k", CASES)
def test_cpm_matches_the_literal_oracle_in_value_and_gradient(seed, k):
    pooled, labels = step(seed)
    ours, theirs = with_grad(expansion_pair(pooled, k)), with_grad(expansion_pair(pooled, k),
                                                                   torch.float64)
    labs = labels.repeat(2)
    value, expected = cpm_loss(ours, labs, P, K), oracle.cpm(theirs, labs)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    value.backward()
    expected.backward()
    scale = theirs.grad.abs().max().item()
    assert scale > 0
    assert (ours.grad.double() - theirs.grad).abs().max().item() <= 1e-5 * scale


def test_the_cases_exercise_every_hinge_both_ways():
    active = {}
    for seed, k in CASES:
        pooled, labels = step(seed)
        pairs = oracle.cpm_pairs(expansion_pair(pooled, k), labels.repeat(2))
        for key, (negatives, positives) in pairs.items():
            active.setdefault(key, []).extend(bool(p - n + 0.2 > 0)
                                              for n, p in zip(negatives, positives))
    assert set(active) == {"13", "33", "11", "24", "44", "22"}
    assert all(any(flags) and not all(flags) for flags in active.values())


def detached_case():
    """Identities 3·√2 apart; infrared 1 from visible, the visible expansion 0.3 from visible
    (off-axis) and the infrared expansion on the visible centre. Only L_123's detached hinge
    is active: max(0, d(ir, vis_e) − d(vis, vis_e) + 0.2) with d(vis, vis_e) detached."""
    dim = P + 2
    vis = torch.eye(P, dim) * 3
    ir, vis_e = vis.clone(), vis.clone()
    ir[:, P] += 1.0
    vis_e[:, P + 1] += 0.3
    groups = [vis, ir, vis_e, vis.clone()]
    labels = torch.arange(P).repeat_interleave(K).repeat(4)
    return torch.cat([g.repeat_interleave(K, 0) for g in groups]), labels


def test_no_gradient_flows_through_the_detached_self_distance():
    x, labs = detached_case()
    ours, theirs, undetached = with_grad(x), with_grad(x, torch.float64), with_grad(x,
                                                                                     torch.float64)
    value = cpm_loss(ours, labs, P, K)
    expected = oracle.cpm(theirs, labs)
    without = oracle.cpm(undetached, labs, detach=False)
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    assert expected.item() == pytest.approx(without.item())  # the value cannot tell
    for loss in (value, expected, without):
        loss.backward()
    visible = slice(0, P * K)
    assert torch.equal(ours.grad[visible], torch.zeros(P * K, P + 2))  # d(vis, vis_e) detached
    assert torch.equal(theirs.grad[visible], torch.zeros(P * K, P + 2, dtype=torch.float64))
    assert undetached.grad[visible].abs().sum() > 0  # without the detach it would flow
    assert torch.allclose(ours.grad.double(), theirs.grad, atol=1e-7)
    assert ours.grad[P * K:].abs().sum() > 0  # the active hinge still pulls ir and vis_e


def test_identities_out_of_sorted_order_match_the_sorted_batch():
    pooled, labels = step(3)
    labs = labels.repeat(2)
    x = expansion_pair(pooled, 1)
    order = torch.argsort(labs.view(4, P, K)[0, :, 0])  # whole blocks into label order
    blocks = x.view(4, P, K, D)[:, order].reshape(-1, D)
    sorted_labs = labs.view(4, P, K)[:, order].reshape(-1)
    assert not torch.equal(labs, sorted_labs)
    shuffled, tidy = cpm_loss(x, labs, P, K), cpm_loss(blocks, sorted_labs, P, K)
    assert shuffled.item() == pytest.approx(tidy.item(), rel=1e-6)
    assert shuffled.item() == pytest.approx(oracle.cpm(x, labs).item(), rel=1e-5)


def test_centres_follow_labels_when_rows_are_not_in_blocks():
    """vireid averages each identity's rows wherever they sit; the authors' contiguous chunks
    would mix identities here (their sampler never does this)."""
    pooled, labels = step(5)
    labs, x = labels.repeat(2), expansion_pair(pooled, 2)
    within = torch.randperm(P * K, generator=torch.Generator().manual_seed(0))
    mixed = x.view(4, P * K, D)[:, within].reshape(-1, D)
    mixed_labs = labs.view(4, P * K)[:, within].reshape(-1)
    assert cpm_loss(mixed, mixed_labs, P, K).item() == pytest.approx(
        cpm_loss(x, labs, P, K).item(), rel=1e-6)
    assert oracle.cpm(mixed, mixed_labs).item() != pytest.approx(oracle.cpm(x, labs).item())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_triplet_is_the_loop(seed):
    pooled, labels = step(seed, spread=0.5)
    tiled = labels.repeat(3)
    # the same distances, the authors' per-anchor loop: exactly the vectorised loss
    positives, negatives = oracle.hardest_pairs(pairwise_distances(pooled), tiled)
    terms = torch.stack(oracle.ranking_terms(negatives, positives, 0.3))
    assert torch.equal(hard_triplet(pooled, tiled), terms.mean())
    assert (terms > 0).any() and (terms == 0).any()  # some anchors pull, some rest
    ours, theirs = with_grad(pooled), with_grad(pooled, torch.float64)
    value, expected = hard_triplet(ours, tiled), oracle.triplet(theirs, tiled)
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    value.backward()
    expected.backward()
    assert torch.allclose(ours.grad.double(), theirs.grad, atol=1e-7, rtol=1e-4)


def test_orthogonality_term():
    pooled, _ = step(7, ids=3, pos=2, dim=16)
    pooled = pooled.abs()  # pooled after ReLU: non-negative
    assert orthogonality_loss(pooled).item() == pytest.approx(
        oracle.orthogonality(pooled).item(), rel=1e-6)
    first, second = pooled.chunk(3)[1:]
    assert orthogonality_loss(pooled).item() == pytest.approx(
        sum(float(a @ b) for a, b in zip(first, second)) / 36, rel=1e-6)


def logits_for(seed: int, rows: int, classes: int = 40) -> torch.Tensor:
    return torch.randn(rows, classes, generator=torch.Generator().manual_seed(100 + seed)) * 3


@pytest.mark.parametrize("seed", [0, 1])
def test_the_total_with_its_weights(seed):
    pooled, labels = step(seed, ids=3, pos=2, dim=16)
    pooled, logits = pooled.abs(), logits_for(seed, len(pooled))
    ours = deen_losses(pooled, logits, labels, num_pos=2)
    theirs = oracle.total(pooled, logits, labels)
    assert set(ours) == {"total", "id", "triplet", "cpm", "ort"}
    for name in ours:
        assert ours[name].dtype == torch.float32
        assert ours[name].item() == pytest.approx(theirs[name].item(), rel=1e-5), name
    unweighted = two_expansion_cpm(pooled, labels, 2).item()
    assert ours["cpm"].item() == pytest.approx(0.8 * unweighted, rel=1e-6)  # λ1 on the sum
    assert ours["ort"].item() == pytest.approx(0.01 * orthogonality_loss(pooled).item())
    assert ours["total"].item() == pytest.approx(
        ours["id"].item() + ours["triplet"].item() + 0.8 * unweighted
        + 0.01 * orthogonality_loss(pooled).item(), rel=1e-6)


def test_settings_and_the_network_s_own_ort():
    pooled, labels = step(2, ids=3, pos=2, dim=16)
    logits = logits_for(2, len(pooled))
    plain = deen_losses(pooled, logits, labels, num_pos=2,
                        settings=DeenLossSettings(cpm_weight=0.0, ort_weight=0.0))
    assert plain["total"].item() == pytest.approx(plain["id"].item() + plain["triplet"].item())
    given = deen_losses(pooled, logits, labels, torch.tensor(5.0), num_pos=2)
    assert given["ort"].item() == pytest.approx(0.05)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_give_float32_losses(dtype):
    pooled, labels = step(4, ids=3, pos=2)
    pooled = pooled.abs() * 40  # squared norms (~1e5) overflow float16
    logits = logits_for(4, len(pooled))
    reference = deen_losses(pooled.to(dtype).float(), logits.to(dtype).float(), labels,
                            num_pos=2)
    with torch.autocast("cpu", dtype=dtype):
        losses = deen_losses(pooled.to(dtype), logits.to(dtype), labels, num_pos=2)
    for name, value in losses.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), name
        assert value.item() == pytest.approx(reference[name].item(), rel=1e-5), name


def test_a_batch_that_is_not_three_branches_of_blocks_is_refused():
    pooled, labels = step(0, ids=3, pos=2, dim=8)
    logits = logits_for(0, len(pooled))
    with pytest.raises(ValueError, match="three|3"):
        deen_losses(pooled[:-6], logits[:-6], labels, num_pos=2)
    with pytest.raises(ValueError, match="blocks"):
        deen_losses(pooled, logits, labels, num_pos=5)
