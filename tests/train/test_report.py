"""The run report: report.png drawn from metrics.jsonl, by hand and after each evaluation."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from PIL import Image

from vireid.train import loop, report_plot
from vireid.train.report_plot import DPI, FIGSIZE, write_report

pytest.importorskip("matplotlib", reason="the run report needs matplotlib")


def epoch_row(epoch: int) -> dict:
    return {"kind": "epoch", "epoch": epoch, "loss": 5.0 - epoch, "loss_id": 4.0 - epoch,
            "loss_triplet": 1.0, "accuracy": 0.1 * epoch, "lr": 0.01 * (epoch + 1),
            "images_per_s": 300.0 + epoch, "steps": 3}


def eval_rows(epoch: int, trials=(0, 1, "mean")) -> list[dict]:
    return [{"kind": "eval", "epoch": epoch, "protocol": "sysu-all", "feature": feature,
             "trial": trial, "rank1": 0.2 + 0.1 * epoch, "rank5": 0.5, "mAP": 0.15 + 0.1 * epoch,
             "mINP": 0.05 + 0.05 * epoch}
            for feature in ("pool", "fc") for trial in trials]


def write_lines(run, rows, mode="w") -> None:
    with open(run / "metrics.jsonl", mode) as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)


def decoded_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()  # decodes every byte: a truncated PNG fails here
        return image.size


def test_report_is_drawn_and_redrawn_after_more_rows(tmp_path):
    write_lines(tmp_path, [epoch_row(0), *eval_rows(0),
                           {"kind": "best", "epoch": 0, "feature": "fc", "rank1": 0.2}])
    path = write_report(tmp_path)
    assert path == tmp_path / "report.png"
    assert decoded_size(path) == (FIGSIZE[0] * DPI, FIGSIZE[1] * DPI)
    first = path.read_bytes()
    write_lines(tmp_path, [epoch_row(1), *eval_rows(1),
                           {"kind": "best", "epoch": 1, "feature": "fc", "rank1": 0.3}], "a")
    assert write_report(tmp_path) == path
    assert path.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl", "report.png"]


def test_single_trial_rows_and_no_evaluation_yet(tmp_path):
    write_lines(tmp_path, [epoch_row(0)])
    assert decoded_size(write_report(tmp_path))[0] > 0  # epochs only: the score panel is empty
    write_lines(tmp_path, [*eval_rows(0, trials=(0,)), epoch_row(1)], "a")
    assert decoded_size(write_report(tmp_path))[0] > 0  # one scored trial, an int


def test_summary_series_pick_the_mean_or_the_one_trial():
    mean = report_plot.score_series(eval_rows(0) + eval_rows(1))
    assert [r["trial"] for r in mean[("sysu-all", "fc")]] == ["mean", "mean"]
    single = report_plot.score_series(eval_rows(0, trials=(3,)))
    assert [r["trial"] for r in single[("sysu-all", "pool")]] == [3]


def test_nothing_to_draw_and_a_torn_last_line(tmp_path):
    assert write_report(tmp_path) is None  # no metrics.jsonl yet
    write_lines(tmp_path, [epoch_row(0)])
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"kind": "epoch", "ep')  # a run killed mid-write
    assert decoded_size(write_report(tmp_path))[0] > 0


def test_without_matplotlib_the_report_is_skipped_with_one_warning(tmp_path, monkeypatch,
                                                                    caplog):
    write_lines(tmp_path, [epoch_row(0)])
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    report_plot._warn_missing.cache_clear()
    with caplog.at_level(logging.WARNING, logger=report_plot.__name__):
        assert write_report(tmp_path) is None
        assert write_report(tmp_path) is None
    assert len([r for r in caplog.records if "matplotlib" in r.message]) == 1
    assert not (tmp_path / "report.png").exists()
    report_plot._warn_missing.cache_clear()


def short_run(shard_dir, out):
    from tests.train.test_runner import TINY, config
    from vireid.train.runner import run_training

    shards = shard_dir("sysu", "jpeg", **TINY)
    return run_training(config(shards, out, epochs=2, eval_every=1, max_steps=1,
                               loader="reference"))


def test_a_run_redraws_its_report_after_each_evaluation(shard_dir, tmp_path, monkeypatch):
    calls = []

    def spy(run_dir):
        calls.append(run_dir)
        return write_report(run_dir)

    monkeypatch.setattr(loop, "write_report", spy)
    short_run(shard_dir, tmp_path / "run")
    assert calls == [tmp_path / "run"] * 2
    assert decoded_size(tmp_path / "run" / "report.png")[0] > 0


def test_a_report_that_fails_does_not_stop_the_run(shard_dir, tmp_path, monkeypatch, caplog):
    def broken(run_dir):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(loop, "write_report", broken)
    with caplog.at_level(logging.WARNING, logger=loop.__name__):
        rows = short_run(shard_dir, tmp_path / "run").evaluations
    assert rows
    assert [r.message for r in caplog.records].count(
        "run report not drawn: RuntimeError: no fonts") == 2
