"""Weights from elsewhere: checkpoints written by the original AGW and DEEN code, and
``--init``.

A checkpoint is recognised by its content: vireid's own (``format`` tag) or the original's
(``{'net': state_dict, 'cmc', 'mAP', 'mINP', 'epoch'}``, converted by
``vireid.model.original``; DEEN's told by its DEE weights, its variant by MFA3's; none is ever
unpickled beyond plain tensors and the few numpy types the original's file holds). ``--init``
starts a new run from any of their weights: when the class count differs (another dataset),
the classifier starts afresh and one line says so.
"""

from __future__ import annotations

import logging

import torch

from vireid.errors import VireidError
from vireid.model.original import (
    is_original,
    is_original_deen,
    original_deen,
    original_to_vireid,
    read_original,
)
from vireid.train.checkpoint import CHECKPOINT_FORMAT

log = logging.getLogger(__name__)
CLASSIFIERS = ("head.classifier.weight", "classifier.weight")  # AGW's network, DEEN's
ORIGINAL_SELECTION = "the original's own selection: best fc Rank-1 on the test set"
DEEN_SELECTION = "the authors' own selection: best Rank-1 of distmat7 (all) on the test set"


def read_model_checkpoint(path) -> dict:
    """A vireid checkpoint, or the original's converted to the same fields (``model``,
    ``num_classes``, ``arch``, ``method``, ``model_options``, ``epoch``, ``config``,
    ``selected_on``)."""
    payload = read_original(path)  # read once; the content tells the format
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        return payload
    if not is_original(payload):
        raise VireidError(path, f"not a {CHECKPOINT_FORMAT} checkpoint, nor one of the "
                          "original AGW or DEEN code's")
    epoch = int(payload.get("epoch", 0))
    if is_original_deen(payload):
        model, classes, arch, options = original_deen(payload["net"], where=path)
        return {"format": "original DEEN", "model": model, "num_classes": classes,
                "arch": arch, "method": "deen", "model_options": options, "epoch": epoch,
                "config": {}, "selected_on": DEEN_SELECTION}
    model, classes, arch, method = original_to_vireid(payload["net"], where=path)
    return {"format": "original AGW", "model": model, "num_classes": classes, "arch": arch,
            "method": method, "model_options": {}, "epoch": epoch, "config": {},
            "selected_on": ORIGINAL_SELECTION}


def init_weights(model: torch.nn.Module, path, method: str | None = None) -> None:
    """Load the weights of checkpoint ``path`` (either kind) into ``model`` to fine-tune;
    a classifier of another class count is left freshly initialised, with one line. With
    ``method`` (the run's), a DEEN checkpoint into another method's network, or another
    method's into DEEN's, is refused naming the method that fits."""
    state = read_model_checkpoint(path)
    if method is not None:
        check_network(path, str(state["method"]), method)
    weights = dict(state["model"])
    own = model.state_dict()
    classifier = next(key for key in CLASSIFIERS if key in own)
    if classifier in weights and weights[classifier].shape != own[classifier].shape:
        del weights[classifier]
        log.warning("%s: %d classes, this run has %d: the classifier is re-initialised", path,
                    state["num_classes"], own[classifier].shape[0])
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()[:160]
        raise VireidError(path, f"weights do not fit this model ({first})") from None
    missing = [k for k in missing if k != classifier]
    if missing or unexpected:
        kind, key = ("missing", missing[0]) if missing else ("unexpected", unexpected[0])
        raise VireidError(path, f"weights do not fit this model ({kind} {key})")


def check_network(path, saved: str, method: str) -> None:
    """DEEN's network and AGW's (agw, caj; base without non-local blocks) share no layout:
    say which ``--method`` the checkpoint's weights fit instead of listing missing keys."""
    if (saved == "deen") != (method == "deen"):
        raise VireidError(path, f"holds a {saved} network, which --method {method} cannot "
                          f"start from: use --method {saved}")
