"""k-reciprocal re-ranking against a literal oracle of the paper's equations (Zhong et al.,
CVPR 2017, eqs. 3-13), written as plain loops over sets on small random cases."""

from __future__ import annotations

import numpy as np
import pytest

from vireid.eval.rerank import rerank


def normalised(rng, rows: int, dims: int = 8) -> np.ndarray:
    x = rng.normal(size=(rows, dims))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def oracle(query, gallery, k1, k2, lam) -> np.ndarray:
    """The paper, one sample at a time; d = −cosine over the union of queries and gallery."""
    union = np.concatenate([query, gallery])
    n = len(union)
    d = -(union @ union.T)
    nearest = [list(np.argsort(d[p], kind="stable")) for p in range(n)]

    def neighbours(p, k):  # N(p, k): p itself first, then its k nearest
        return set(nearest[p][:k + 1])

    def reciprocal(p, k):  # eq. 4: R(p, k)
        return {g for g in neighbours(p, k) if p in neighbours(g, k)}

    v = np.zeros((n, n))
    for p in range(n):
        r = reciprocal(p, k1)
        expanded = set(r)
        for q in r:  # eq. 6: R*(p, k1)
            half = reciprocal(q, round(k1 / 2))
            if len(r & half) > 2 / 3 * len(half):
                expanded |= half
        total = sum(np.exp(-d[p, g]) for g in expanded)
        for g in expanded:  # eq. 7
            v[p, g] = np.exp(-d[p, g]) / total
    v = np.array([np.mean([v[g] for g in nearest[p][:k2]], axis=0) for p in range(n)])  # eq. 11
    nq = len(query)
    final = np.zeros((nq, len(gallery)))
    for i in range(nq):
        for j in range(len(gallery)):
            a, b = v[i], v[nq + j]
            jaccard = 1 - np.minimum(a, b).sum() / np.maximum(a, b).sum()  # eq. 10
            final[i, j] = (1 - lam) * jaccard + lam * d[i, nq + j]  # eq. 12
    return final


@pytest.mark.parametrize("seed, k1, k2, lam", [(0, 4, 2, 0.3), (1, 4, 2, 0.3), (2, 6, 3, 0.5),
                                              (3, 3, 1, 0.0), (4, 20, 6, 0.3)])
def test_rerank_equals_the_oracle(seed, k1, k2, lam):
    rng = np.random.default_rng(seed)
    query, gallery = normalised(rng, 12), normalised(rng, 15)
    got = rerank(query.astype(np.float32), gallery.astype(np.float32), k1, k2, lam).numpy()
    np.testing.assert_allclose(got, oracle(query, gallery, k1, k2, lam), atol=1e-5)


def test_lambda_one_is_the_original_distance():
    rng = np.random.default_rng(5)
    query, gallery = normalised(rng, 5), normalised(rng, 7)
    got = rerank(query, gallery, 4, 2, 1.0).numpy()
    np.testing.assert_allclose(got, -(query @ gallery.T), atol=1e-6)


def test_rerank_moves_a_k_reciprocal_match_to_the_top():
    """Gallery 0 is near query 0 and shares its neighbourhood: re-ranking keeps it first."""
    rng = np.random.default_rng(6)
    gallery = normalised(rng, 10, 16)
    query = gallery[:3] + 0.05 * rng.normal(size=(3, 16))
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    got = rerank(query, gallery, 4, 2, 0.3).numpy()
    assert list(got.argmin(axis=1)) == [0, 1, 2]
