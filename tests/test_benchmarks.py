"""Each benchmark runs once at a tiny size (numbers are not checked: machines are noisy)."""

import json

import pytest


@pytest.mark.slow
def test_quick_suite_writes_rows_report_and_plots(tmp_path):
    from benchmarks.__main__ import main

    report = main(["--quick", "--out", str(tmp_path / "results"), "--work",
                   str(tmp_path / "work")])
    rows = [json.loads(line) for line in report.with_suffix(".jsonl").read_text().splitlines()]
    kinds = {row["benchmark"] for row in rows}
    assert kinds == {"train_loader", "loader_scaling", "startup", "train_step", "shard_build",
                     "evaluation", "metrics", "precision"}
    for row in rows:
        assert row["versions"]["torch"] and row["cores"] >= 1
        if "images_per_s" in row:
            assert row["images_per_s"] > 0
    text = report.read_text()
    assert "## Training loader" in text and "ratio_to_original" in text
    assert "## Metrics with float32 against float64 distances" in text
    assert report.with_name(report.stem + "-loader.png").stat().st_size > 1000
    assert report.with_name(report.stem + "-scaling.png").stat().st_size > 1000
