"""A run's report: ``RUN/report.png``, redrawn from ``RUN/metrics.jsonl`` after each evaluation.

Three small panels: per epoch the loss parts (total, id, triplet), the learning rate with the
images/s beside it, and per evaluation Rank-1 / mAP / mINP of the summary rows (the mean over
the trials, or the one scored trial) for each feature, with the best-on-test evaluation
marked. The file is the whole history, so a resumed run's report shows every epoch.

matplotlib is a dependency; should it be missing, the report is skipped with one warning. It is
drawn on a bare Agg canvas (no pyplot, so no global backend switch and no open figures left
behind) and written via a temporary file and ``os.replace``, so a reader never sees half a PNG.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import defaultdict
from pathlib import Path

from vireid.files import replaced_atomically
from vireid.train.evaluation import summary_rows

log = logging.getLogger(__name__)

REPORT = "report.png"
FIGSIZE = (13.0, 3.6)  # inches; at DPI 100 a 1300 × 360 image
DPI = 100
LOSSES = ("loss", "loss_id", "loss_triplet")
SCORES = {"rank1": "Rank-1", "mAP": "mAP", "mINP": "mINP"}
# the feature is the line style, the score its colour
STYLES = {"pool": "--", "fc": "-", "all": "-", "weighted": "--"}


def read_rows(path: Path) -> list[dict]:
    """The JSON lines of ``path``; a torn last line (a run killed mid-write) is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def last_per_epoch(rows: list[dict]) -> list[dict]:
    """Epoch rows in epoch order, the last written winning (a resumed run may repeat one)."""
    return list(dict(sorted({r["epoch"]: r for r in rows}.items())).values())


def score_series(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """(protocol, feature) → its summary rows in epoch order, one per evaluation."""
    by_epoch = defaultdict(list)
    for row in rows:
        by_epoch[row["epoch"]].append(row)
    series = defaultdict(list)
    for epoch in sorted(by_epoch):
        for row in summary_rows(by_epoch[epoch]):
            series[(row["protocol"], row["feature"])].append(row)
    return dict(series)


@functools.cache
def _warn_missing(reason: str) -> None:
    """One warning per process, not one per evaluation."""
    log.warning("run report skipped: matplotlib is not installed (%s); "
                "pip install matplotlib to get RUN/report.png", reason)


def _figure():
    """A figure of three panels on an Agg canvas, or None without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        _warn_missing(str(error))
        return None
    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _plot_losses(axes, epochs: list[dict]) -> None:
    x = [r["epoch"] for r in epochs]
    for key in LOSSES:
        axes.plot(x, [r.get(key, float("nan")) for r in epochs], marker=".", label=key)
    axes.set(title="loss", xlabel="epoch")
    axes.legend(fontsize="small")


def _plot_speed(axes, epochs: list[dict]) -> None:
    """The learning rate (left axis) and images/s (right axis) share the epoch axis."""
    x = [r["epoch"] for r in epochs]
    axes.plot(x, [r.get("lr", float("nan")) for r in epochs], marker=".", color="C0")
    axes.set(title="learning rate · images/s", xlabel="epoch")
    axes.set_ylabel("lr", color="C0")
    right = axes.twinx()
    right.plot(x, [r.get("images_per_s", float("nan")) for r in epochs], marker=".",
               color="C1")
    right.set_ylabel("images/s", color="C1")


def _plot_scores(axes, series: dict, best: dict | None) -> None:
    """Scores in percent; the label names the protocol only where a run has several."""
    several = len({protocol for protocol, _ in series}) > 1
    for (protocol, feature), rows in sorted(series.items()):
        x = [r["epoch"] for r in rows]
        name = f"{protocol} {feature}" if several else feature
        for colour, (key, title) in enumerate(SCORES.items()):
            axes.plot(x, [100 * r[key] for r in rows], STYLES.get(feature, ":"), marker=".",
                      color=f"C{colour}", label=f"{title} {name}")
    if best:
        axes.plot([best["epoch"]], [100 * best["rank1"]], "*", color="k", markersize=12,
                  label=f"best on test (epoch {best['epoch']})")
    axes.set(title="evaluation (%)", xlabel="epoch")
    if series:
        axes.legend(fontsize="x-small", ncol=2)
    else:
        axes.text(0.5, 0.5, "no evaluation yet", ha="center", va="center",
                  transform=axes.transAxes)


def draw(figure, rows: list[dict]) -> None:
    """The three panels of ``rows`` (all kinds of metrics.jsonl rows) onto ``figure``."""
    kinds = defaultdict(list)
    for row in rows:
        kinds[row.get("kind")].append(row)
    epochs = last_per_epoch(kinds["epoch"])
    loss, speed, scores = figure.subplots(1, 3)
    _plot_losses(loss, epochs)
    _plot_speed(speed, epochs)
    _plot_scores(scores, score_series(kinds["eval"]), (kinds["best"] or [None])[-1])


def save_atomically(figure, path: Path) -> None:
    """PNG to a temporary file beside ``path``, then renamed over it."""
    with replaced_atomically(path) as partial, open(partial, "wb") as stream:
        figure.savefig(stream, format="png", dpi=DPI)


def write_report(run_dir: Path) -> Path | None:
    """Redraw ``run_dir/report.png`` from ``run_dir/metrics.jsonl``; its path, or None when
    there is nothing to draw yet or matplotlib is missing."""
    metrics = Path(run_dir) / "metrics.jsonl"
    rows = read_rows(metrics) if metrics.is_file() else []
    if not rows:
        return None
    figure = _figure()
    if figure is None:
        return None
    draw(figure, rows)
    path = Path(run_dir) / REPORT
    save_atomically(figure, path)
    return path
