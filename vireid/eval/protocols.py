"""Protocol trials over extracted features: each test image extracted once, selected per trial.

The original re-extracts the gallery for every trial; here ``samples_to_extract`` is the union of
every trial's rows and columns, extracted once, and each trial only indexes into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vireid.eval.features import Features
from vireid.eval.metrics import MetricResult, evaluate
from vireid.eval.rerank import Rerank, rerank
from vireid.records import Protocol
from vireid.shards.manifest import Manifest

RANKS = (1, 5, 10, 20)


@dataclass(frozen=True)
class TrialResult:
    trial: int
    feature: str
    metrics: MetricResult

    def row(self) -> dict:
        return {"trial": self.trial, "feature": self.feature,
                **{f"rank{k}": self.metrics.rank(k) for k in RANKS},
                "mAP": float(self.metrics.mAP), "mINP": float(self.metrics.mINP)}


def samples_to_extract(manifest: Manifest, protocol: Protocol, trials=None) -> dict:
    """Global sample numbers to extract, per modality (union over the chosen trials)."""
    by_modality: dict = {}
    for trial in _chosen(protocol, trials):
        for refs in (trial.query, trial.gallery):
            for i in refs:
                by_modality.setdefault(manifest.samples[i].modality, set()).add(i)
    return {m: np.array(sorted(s), dtype=np.int64) for m, s in by_modality.items()}


def run_protocol(manifest: Manifest, protocol: Protocol, features: Features,
                 feature: str = "pool", trials=None, reranking: Rerank | None = None,
                 device="cpu") -> list[TrialResult]:
    """Metrics of every (chosen) trial; distance = −cosine similarity, as the original, or
    with ``reranking`` its k-reciprocal re-ranking per trial (computed on ``device``)."""
    cams = np.array([s.cam for s in manifest.samples])
    results = []
    for trial in _chosen(protocol, trials):
        query = features.get(feature, trial.query)
        gallery = features.get(feature, trial.gallery)
        distances = -(query @ gallery.T) if reranking is None else rerank(
            query, gallery, reranking.k1, reranking.k2, reranking.lam, device).cpu().numpy()
        metrics = evaluate(distances, np.asarray(trial.query_pids),
                           np.asarray(trial.gallery_pids), cams[list(trial.query)],
                           cams[list(trial.gallery)], protocol.metric)
        results.append(TrialResult(trial.trial, feature, metrics))
    return results


def score_rows(manifest: Manifest, protocol: Protocol, features: Features, trials, kinds,
               reranking: Rerank | None = None, device="cpu", flip: bool = False) -> list[dict]:
    """Per-trial rows and, over several trials, their mean row, for each feature kind; every
    row says whether it was re-ranked and whether the features were flip-averaged."""
    rows = []
    for kind in kinds:
        results = run_protocol(manifest, protocol, features, kind, trials, reranking, device)
        mean = [mean_row(results)] if len(results) > 1 else []
        rows += [{"protocol": protocol.name, **row, "reranked": reranking is not None,
                  "flip": flip}
                 for row in [r.row() for r in results] + mean]
    return rows


def mean_row(results: list[TrialResult]) -> dict:
    """The average over trials, as reported in papers."""
    rows = [r.row() for r in results]
    keys = [k for k in rows[0] if k not in ("trial", "feature")]
    return {"trial": "mean", "feature": rows[0]["feature"],
            **{k: float(np.mean([row[k] for row in rows])) for k in keys}}


def _chosen(protocol: Protocol, trials):
    if trials is None:
        return protocol.trials
    wanted = set(trials)
    return [t for t in protocol.trials if t.trial in wanted]
