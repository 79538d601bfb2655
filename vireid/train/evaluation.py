"""Evaluation of a model on a protocol of its shards: extract once, score every trial.

What to score is the data's rule (``Manifest.trial_views``): a model trained per trial
(RegDB) is scored on its own trial; otherwise every trial of the protocol, or one asked for.
How to score is the method's (``MethodSpec``): its feature rows (``features``: pool and fc, or
DEEN's all and weighted) and its flip rule.
"""

from __future__ import annotations

import logging

from vireid.eval.features import extract_features, merge_features
from vireid.eval.protocols import samples_to_extract, score_rows
from vireid.loader.settings import Backend
from vireid.train.methods import get_method

FEATURES = ("pool", "fc")  # AGW's two rows; a method names its own (``MethodSpec.features``)
log = logging.getLogger(__name__)


def scoring_plan(manifest, protocol_name: str | None, view_name: str | None,
                 trial: int | None = None):
    """The protocol and the trials to score (None: all). A model trained per trial is scored
    on the trial of its view ``view_name`` (unknown: the default view's) unless ``trial``
    names another; otherwise ``trial`` narrows the protocol to one trial."""
    protocol = manifest.protocol(protocol_name or manifest.default_protocol)
    chosen = trial
    if manifest.trial_views and chosen is None:  # trained per trial: its own trial
        view = view_name or manifest.training_view(None).name
        chosen = manifest.trained_trial(view)
    if chosen is None:
        return protocol, None
    manifest.trial(protocol.name, chosen)  # one clear error if the protocol lacks it
    return protocol, [chosen]


def score(manifest, protocol, features, trials, kinds=FEATURES,
          flip: bool = False) -> list[dict]:
    """Per-trial rows and, over several trials, their mean row, for each feature kind (one
    trial is labelled with its number, never "mean"); never re-ranked during training."""
    return score_rows(manifest, protocol, features, trials, kinds, flip=flip)


def use_flip(flip: bool | None, method) -> bool:
    """Flip averaging as asked, else the method's default (CAJ, DEEN: on; AGW, base: off)."""
    return get_method(method).flip if flip is None else flip


def summary_rows(rows: list[dict]) -> list[dict]:
    """What a report shows: the mean rows, or each row where a protocol scored one trial."""
    keys = {(r["protocol"], r["feature"]) for r in rows if r["trial"] == "mean"}
    return [r for r in rows if r["trial"] == "mean" or (r["protocol"], r["feature"]) not in keys]


class RunEvaluation:
    """A training run's evaluation, planned once from the open shard source: the protocol,
    its trials and the test images. Each call extracts this rank's slice, gathers the
    features on rank 0 and scores them there (other ranks get no rows)."""

    def __init__(self, source, config, view_name: str, backend: Backend, env):
        self.source, self.config, self.backend, self.env = source, config, backend, env
        manifest = source.manifest
        self.protocol, self.trials = scoring_plan(manifest, config.evaluation.protocol,
                                                  view_name)
        if config.evaluation.first_trial_only and self.trials is None:
            self.trials = [self.protocol.trials[0].trial]  # the original's gallery trial 0
        self.wanted = samples_to_extract(manifest, self.protocol, self.trials)
        self.flip = use_flip(config.evaluation.flip, config.model.method)
        self.method = get_method(config.model.method)

    def __call__(self, model, device, amp_dtype) -> list[dict]:
        from vireid.train.distributed import gather_to_main

        config, env = self.config, self.env
        features = extract_features(
            model, self.source, self.wanted, loader=config.loader.kind, device=device,
            amp_dtype=amp_dtype, batch_size=config.evaluation.batch_size,
            channels_last=config.run.channels_last, backend=self.backend,
            shard_id=env.rank, num_shards=env.world_size, flip=self.flip,
            flip_rule=self.method.flip_rule)
        gathered = gather_to_main(features, env)
        if not env.is_main:
            return []
        return score(self.source.manifest, self.protocol, merge_features(gathered),
                     self.trials, self.method.features, flip=self.flip)
