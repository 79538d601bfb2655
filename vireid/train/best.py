"""The checkpoint the original reports: the best fc Rank-1 on the test set.

The original evaluates during training and keeps the checkpoint with the highest Rank-1 of the
fc feature (strictly higher than the best so far, so ties keep the earlier one); its
published numbers come from that checkpoint. DEEN's authors select the same way on their
distmat7 (vireid's ``all`` row): the feature is the method's (``MethodSpec.select``). vireid
reports the final epoch, and keeps that selection beside it, always labelled as selected on
the test set: ``checkpoints/best.pt`` and a ``{"kind": "best", …}`` row in ``metrics.jsonl``
each time the best changes.
"""

from __future__ import annotations

import json
from pathlib import Path

from vireid.train.checkpoint import save_checkpoint

SELECTED_ON = "test set"


def rule(feature: str = "fc") -> str:
    return f"best {feature} Rank-1 on the test set, as the original"


RULE = rule()


def selection_rank1(rows: list[dict], feature: str = "fc") -> float | None:
    """The Rank-1 of ``feature`` the rule compares: the mean over the scored trials (one
    trial: its own)."""
    scored = [r for r in rows if r["feature"] == feature]
    means = [r for r in scored if r["trial"] == "mean"]
    chosen = means or scored
    return float(chosen[0]["rank1"]) if chosen else None


class BestOnTest:
    """Tracks the best evaluation of a run (on ``feature``'s Rank-1); resumes from the run's
    own metrics.jsonl."""

    def __init__(self, out: Path, resume: bool, feature: str = "fc"):
        self.path = Path(out) / "checkpoints" / "best.pt"
        self.feature = feature
        self.rank1 = float("-inf")
        metrics = Path(out) / "metrics.jsonl"
        if resume and metrics.is_file():
            for line in metrics.read_text().splitlines():
                row = json.loads(line)
                if row.get("kind") == "best":
                    self.rank1 = float(row["rank1"])

    def update(self, epoch: int, rows: list[dict], payload: dict) -> dict | None:
        """Save ``payload`` as best.pt if ``rows`` beat the best so far; the log row if so."""
        rank1 = selection_rank1(rows, self.feature)
        if rank1 is None or not rank1 > self.rank1:
            return None
        self.rank1 = rank1
        save_checkpoint({**payload, "selected_on": rule(self.feature)}, self.path)
        return {"kind": "best", "epoch": epoch, "feature": self.feature, "rank1": rank1,
                "selected_on": SELECTED_ON, "checkpoint": str(self.path)}
