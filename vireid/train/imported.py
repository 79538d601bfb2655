"""Weights from elsewhere: checkpoints written by the original AGW code, and ``--init``.

A checkpoint is recognised by its content: vireid's own (``format`` tag) or the original's
(``{'net': state_dict, 'cmc', 'mAP', 'mINP', 'epoch'}``, converted by
``vireid.model.original``; neither is ever unpickled beyond plain tensors and the few numpy
types the original's file holds). ``--init`` starts a new run from either one's weights: when
the class count differs (another dataset), the classifier starts afresh and one line says so.
"""

from __future__ import annotations

import logging

import torch

from vireid.errors import VireidError
from vireid.model.original import is_original, original_to_vireid, read_original
from vireid.train.checkpoint import CHECKPOINT_FORMAT

log = logging.getLogger(__name__)
CLASSIFIER = "head.classifier.weight"
ORIGINAL_SELECTION = "the original's own selection: best fc Rank-1 on the test set"


def read_model_checkpoint(path) -> dict:
    """A vireid checkpoint, or the original's converted to the same fields (``model``,
    ``num_classes``, ``arch``, ``method``, ``epoch``, ``config``, ``selected_on``)."""
    payload = read_original(path)  # read once; the content tells the format
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        return payload
    if not is_original(payload):
        raise VireidError(path, f"not a {CHECKPOINT_FORMAT} checkpoint, nor one of the "
                          "original AGW code's")
    model, classes, arch, method = original_to_vireid(payload["net"], where=path)
    return {"format": "original AGW", "model": model, "num_classes": classes, "arch": arch,
            "method": method, "epoch": int(payload.get("epoch", 0)), "config": {},
            "selected_on": ORIGINAL_SELECTION}


def init_weights(model: torch.nn.Module, path) -> None:
    """Load the weights of checkpoint ``path`` (either kind) into ``model`` to fine-tune;
    a classifier of another class count is left freshly initialised, with one line."""
    state = read_model_checkpoint(path)
    weights = dict(state["model"])
    own = model.state_dict()
    if CLASSIFIER in weights and weights[CLASSIFIER].shape != own[CLASSIFIER].shape:
        del weights[CLASSIFIER]
        log.warning("%s: %d classes, this run has %d: the classifier is re-initialised", path,
                    state["num_classes"], own[CLASSIFIER].shape[0])
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()[:160]
        raise VireidError(path, f"weights do not fit this model ({first})") from None
    missing = [k for k in missing if k != CLASSIFIER]
    if missing or unexpected:
        kind, key = ("missing", missing[0]) if missing else ("unexpected", unexpected[0])
        raise VireidError(path, f"weights do not fit this model ({kind} {key})")
