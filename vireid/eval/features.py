"""One feature-extraction loop: every requested test image once, through its modality's stem.

With ``flip`` each batch also runs mirrored along the width, and the two outputs are combined
by the method's rule (docs/methods.md): ``mean``, normalise((f(x) + f(flip x)) / 2) of the two
L2-normalised outputs (CAJ's test script), or ``sum``, f(x) + f(flip x) without normalising
again (DEEN's, whose outputs are per-branch L2-normalised concatenations).

Feature kinds: ``pool`` and ``fc`` are the model's two outputs; ``all`` and ``weighted`` join
them (``COMBINED``), so that one dot product gives DEEN's summed similarity matrices:
``all`` = [pool | fc] (distmat7: every part's similarity, weight 1), ``weighted`` =
[√0.1·pool | √0.9·fc] (distmat8 = 0.1·pool similarities + 0.9·fc similarities).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vireid.choices import FlipRule, LoaderKind
from vireid.errors import VireidError
from vireid.loader import make_eval_loader
from vireid.loader.settings import EVAL_BATCH_SIZE, Backend
from vireid.records import Modality

# kinds made of both outputs → (weight of the pool similarity, weight of the fc similarity)
COMBINED = {"all": (1.0, 1.0), "weighted": (0.1, 0.9)}
KINDS = ("pool", "fc", *COMBINED)


@dataclass(frozen=True)
class Features:
    """Test features of a set of samples (L2-normalised, per branch for DEEN; flip sums are
    not normalised again); rows follow ``samples`` (sorted)."""

    samples: np.ndarray
    pool: np.ndarray
    fc: np.ndarray

    def rows(self, wanted) -> np.ndarray:
        """Row numbers of the given global sample numbers (each must have been extracted)."""
        return np.searchsorted(self.samples, np.asarray(wanted, dtype=np.int64))

    def get(self, kind: str, wanted) -> np.ndarray:
        """The rows of ``wanted`` for feature ``kind`` (one of ``KINDS``)."""
        rows = self.rows(wanted)
        if kind not in COMBINED:
            return getattr(self, kind)[rows]
        pool, fc = (np.float32(np.sqrt(w)) for w in COMBINED[kind])
        return np.concatenate([pool * self.pool[rows], fc * self.fc[rows]], axis=1)


def check_finite(features: Features, where, verb: str = "gives") -> None:
    """Refuse NaN or infinite features (a diverged model): scored, they would print Rank-1
    numbers that mean nothing. ``verb``: "gives" (a model) or "holds" (a file)."""
    for kind in ("pool", "fc"):
        bad = ~np.isfinite(getattr(features, kind)).all(axis=1)
        if bad.any():
            raise VireidError(where, f"{verb} non-finite {kind} features (NaN or inf) for "
                              f"{int(bad.sum()):,} of {len(bad):,} images, e.g. sample "
                              f"{int(features.samples[bad.argmax()])}: nothing to score")


def merge_features(parts: list[Features]) -> Features:
    """Features extracted by several ranks (disjoint slices) as one sorted set."""
    samples = np.concatenate([p.samples for p in parts])
    order = np.argsort(samples, kind="stable")
    return Features(samples[order], np.concatenate([p.pool for p in parts])[order],
                    np.concatenate([p.fc for p in parts])[order])


@torch.no_grad()
def extract_features(model, shards, by_modality: dict[Modality, np.ndarray], *,
                     loader: LoaderKind = LoaderKind.DALI, device: torch.device,
                     amp_dtype=None, batch_size: int = EVAL_BATCH_SIZE,
                     channels_last: bool = True, backend: Backend | None = None,
                     shard_id: int = 0, num_shards: int = 1,
                     size: tuple[int, int] | None = None, flip: bool = False,
                     flip_rule: FlipRule = FlipRule.MEAN) -> Features:
    """Run ``model`` in eval mode over the samples of each modality; returns pool/fc features.

    ``shards``: a shard folder or an open ``ShardBytes`` (opened once for every modality and
    every evaluation of a run). ``backend``: the DALI loader's settings (default: on
    ``device``). ``size``: resize the images to (height, width) first (None: as stored).
    ``flip``: combine with the features of the horizontally mirrored images by
    ``flip_rule``.
    """
    model.eval()
    backend = backend or Backend(device.type, device.index or 0)
    samples, pool, fc = [], [], []
    for modality, wanted in by_modality.items():
        batches = make_eval_loader(loader, shards, wanted, batch_size=batch_size, size=size,
                                   shard_id=shard_id, num_shards=num_shards, backend=backend)
        with batches:
            _extract(model, batches, device, amp_dtype, channels_last, modality,
                     (samples, pool, fc), flip, flip_rule)
    return merge_features([Features(np.concatenate(samples), np.concatenate(pool),
                                    np.concatenate(fc))])


def _extract(model, batches, device, amp_dtype, channels_last, modality, into,
             flip: bool = False, flip_rule: FlipRule = FlipRule.MEAN) -> None:
    """Append the features of every batch of one modality to ``into`` (samples, pool, fc)."""
    samples, pool, fc = into
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for batch in batches:
        images = batch["images"].to(device, non_blocking=True)
        images = images if amp_dtype else images.float()
        images = images.contiguous(memory_format=fmt)
        pooled, bn = _forward(model, images, device, amp_dtype, modality)
        if flip:  # N×C×H×W: dimension 3 is the width
            mirrored = images.flip(3).contiguous(memory_format=fmt)
            combine = FLIP_RULES[FlipRule(flip_rule)]
            pooled, bn = (combine(a, b) for a, b in
                          zip((pooled, bn), _forward(model, mirrored, device, amp_dtype,
                                                     modality)))
        samples.append(np.asarray(batch["samples"], dtype=np.int64))
        pool.append(pooled.float().cpu().numpy())
        fc.append(bn.float().cpu().numpy())


def _forward(model, images, device, amp_dtype, modality):
    """(pool, fc) features of one batch through its modality's stem."""
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None):
        stem = {"visible": images} if modality is Modality.VISIBLE else {"infrared": images}
        return model(**stem)


def _mean_direction(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """normalise((normalise(a) + normalise(b)) / 2), in float32."""
    a, b = F.normalize(a.float(), dim=1), F.normalize(b.float(), dim=1)
    return F.normalize((a + b) / 2, dim=1)


def _sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b as the model gave them, in float32 (DEEN: ``feat = f(x) + f(flip x)``)."""
    return a.float() + b.float()


FLIP_RULES = {FlipRule.MEAN: _mean_direction, FlipRule.SUM: _sum}
