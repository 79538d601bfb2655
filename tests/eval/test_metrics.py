"""Vectorised metrics against a plain transcription of docs/protocols.md (Metrics), and
hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vireid.errors import VireidError
from vireid.eval.metrics import evaluate


def spec_metrics(dist, q_pids, g_pids, q_cams, g_cams, protocol, max_rank=20):
    """docs/protocols.md, Metrics, written out literally: one query at a time, Python lists."""
    max_rank = min(max_rank, len(g_pids))
    curves, aps, inps, valid = [], [], [], 0
    for q in range(len(q_pids)):
        ranked = sorted(range(len(g_pids)), key=lambda g: dist[q][g])
        kept = []
        for g in ranked:
            if protocol == "sysu" and q_cams[q] == 3 and g_cams[g] == 2:
                continue
            if protocol != "sysu" and g_pids[g] == q_pids[q] and g_cams[g] == q_cams[q]:
                continue
            kept.append(g)
        hits = [g_pids[g] == q_pids[q] for g in kept]
        if protocol != "regdb":
            distinct = []
            for g in kept:
                if g_pids[g] not in distinct:
                    distinct.append(g_pids[g])
            curve = []
            for k in range(max_rank):
                curve.append(1.0 if q_pids[q] in distinct[:k + 1] else 0.0)
            curves.append(curve)
        if not any(hits):
            continue
        valid += 1
        positions = [i for i, h in enumerate(hits) if h]
        aps.append(sum((n + 1) / (p + 1) for n, p in enumerate(positions)) / len(positions))
        inps.append(len(positions) / (positions[-1] + 1))
        if protocol == "regdb":
            curves.append([1.0 if positions[0] <= k else 0.0 for k in range(max_rank)])
    cmc = [sum(c[k] for c in curves) / valid for k in range(max_rank)]
    return cmc, sum(aps) / valid, sum(inps) / valid


def random_case(rng, protocol, num_q, num_g, num_ids):
    pids = np.arange(num_ids) * 3 + 2
    q_pids, g_pids = rng.choice(pids, num_q), rng.choice(pids, num_g)
    if protocol == "sysu":
        q_cams, g_cams = rng.choice([3, 6], num_q), rng.choice([1, 2, 4, 5], num_g)
    elif protocol == "llcm":
        q_cams, g_cams = rng.integers(1, 10, num_q), rng.integers(1, 10, num_g)
    else:
        q_cams, g_cams = np.ones(num_q, int), np.full(num_g, 2)
    dist = rng.permutation(num_q * num_g).reshape(num_q, num_g) / (num_q * num_g)  # no ties
    return dist, q_pids, g_pids, q_cams, g_cams


def assert_same(case, protocol):
    ours = evaluate(*case, protocol)
    cmc, ap, inp = spec_metrics(*[list(x) if x.ndim == 1 else x.tolist() for x in case],
                                protocol)
    np.testing.assert_allclose(ours.cmc, cmc, atol=1e-6)
    assert ours.mAP == pytest.approx(ap, abs=1e-6)
    assert ours.mINP == pytest.approx(inp, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(protocol=st.sampled_from(["sysu", "regdb", "llcm"]), num_q=st.integers(1, 25),
       num_g=st.integers(1, 40), num_ids=st.integers(1, 30), seed=st.integers(0, 2**32 - 1))
def test_equals_the_spec_on_random_tie_free_inputs(protocol, num_q, num_g, num_ids, seed):
    case = random_case(np.random.default_rng(seed), protocol, num_q, num_g, num_ids)
    try:
        expected = spec_metrics(*[x.tolist() for x in case], protocol)
    except ZeroDivisionError:  # no valid query at all
        with pytest.raises(VireidError):
            evaluate(*case, protocol)
        return
    ours = evaluate(*case, protocol)
    np.testing.assert_allclose(ours.cmc, expected[0], atol=1e-6)
    assert ours.mAP == pytest.approx(expected[1], abs=1e-6)
    assert ours.mINP == pytest.approx(expected[2], abs=1e-6)


@pytest.mark.parametrize("protocol", ["sysu", "regdb", "llcm"])
def test_equals_the_original_loop_on_larger_inputs(protocol):
    from benchmarks.original_metrics import original_eval

    rng = np.random.default_rng(1)
    case = random_case(rng, protocol, 300, 120, 40)
    ours = evaluate(*case, protocol)
    cmc, ap, inp = original_eval(*case, protocol)
    np.testing.assert_allclose(ours.cmc, cmc, atol=1e-6)
    assert ours.mAP == pytest.approx(ap, abs=1e-6) and ours.mINP == pytest.approx(inp, abs=1e-6)
    assert_same(random_case(rng, protocol, 40, 60, 25), protocol)


def test_worked_example_from_the_docstring():
    # query pid 1 on camera 3; ranked gallery pids [2, 2, 1, 3, 1], cameras [1, 4, 5, 1, 2]
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    result = evaluate(dist, np.array([1]), np.array([2, 2, 1, 3, 1]), np.array([3]),
                      np.array([1, 4, 5, 1, 2]), "sysu")
    # camera 2 dropped → kept [2, 2, 1, 3]: one positive at rank 3
    assert result.mAP == pytest.approx(1 / 3) and result.mINP == pytest.approx(1 / 3)
    # distinct identities [2, 1, 3]: matched at rank 2 (the standard CMC would say 3)
    np.testing.assert_array_equal(result.cmc, [0, 1, 1, 1, 1])
    # the same ranking under LLCM rules keeps the camera-2 positive
    llcm = evaluate(dist, np.array([1]), np.array([2, 2, 1, 3, 1]), np.array([3]),
                    np.array([1, 4, 5, 1, 2]), "llcm")
    # positives at ranks 3 and 5: AP = (1/3 + 2/5) / 2, INP = 2/5
    assert llcm.mAP == pytest.approx((1 / 3 + 2 / 5) / 2) and llcm.mINP == pytest.approx(0.4)


def test_regdb_hand_case_and_standard_cmc():
    # gallery ranked pids [5, 7, 7, 5]: positives (pid 7) at ranks 2, 3
    dist = np.array([[0.1, 0.2, 0.3, 0.4]])
    result = evaluate(dist, np.array([7]), np.array([5, 7, 7, 5]), np.array([1]),
                      np.array([2, 2, 2, 2]), "regdb")
    assert result.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert result.mINP == pytest.approx(2 / 3)
    np.testing.assert_array_equal(result.cmc, [0, 1, 1, 1])


def test_llcm_drops_same_pid_same_camera():
    dist = np.array([[0.1, 0.2, 0.3]])
    args = (np.array([4]), np.array([4, 9, 4]), np.array([2]))
    result = evaluate(dist, *args, np.array([2, 5, 6]), "llcm")  # first positive dropped
    assert result.mAP == pytest.approx(1 / 2)
    kept = evaluate(dist, *args, np.array([3, 5, 6]), "llcm")
    assert kept.mAP == pytest.approx((1 + 2 / 3) / 2)


def test_invalid_queries_count_in_the_new_cmc_numerator_only():
    dist = np.array([[0.1, 0.2], [0.1, 0.2]])
    # query 2 (pid 8) has no positive: skipped for AP, adds zeros to the CMC sum
    result = evaluate(dist, np.array([1, 8]), np.array([1, 2]), np.array([3, 3]),
                      np.array([1, 4]), "sysu")
    assert result.num_valid == 1
    np.testing.assert_array_equal(result.cmc, [1, 1])


def test_no_valid_query_and_unknown_protocol():
    dist = np.zeros((1, 2))
    with pytest.raises(VireidError, match="no query"):
        evaluate(dist, np.array([1]), np.array([2, 3]), np.array([3]), np.array([1, 1]),
                 "sysu")
    with pytest.raises(VireidError, match="unknown metric"):
        evaluate(dist, np.array([1]), np.array([1, 3]), np.array([3]), np.array([1, 1]),
                 "market")


def test_chunked_evaluation_equals_one_block(monkeypatch):
    import vireid.eval.metrics as metrics

    case = random_case(np.random.default_rng(3), "llcm", 200, 50, 30)
    whole = evaluate(*case, "llcm")
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 300)
    chunked = evaluate(*case, "llcm")
    np.testing.assert_allclose(whole.cmc, chunked.cmc)
    assert whole.mAP == pytest.approx(chunked.mAP)
