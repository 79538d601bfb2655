"""Each benchmark runs once at a tiny size (numbers are not checked: machines are noisy)."""

import json

import pytest
import torch

pytestmark = pytest.mark.dali


@pytest.mark.slow
def test_quick_suite_writes_rows_report_and_plots(tmp_path):
    from benchmarks.__main__ import main

    report = main(["--quick", "--out", str(tmp_path / "results"), "--work",
                   str(tmp_path / "work")])
    rows = [json.loads(line) for line in report.with_suffix(".jsonl").read_text().splitlines()]
    kinds = {row["benchmark"] for row in rows}
    assert kinds - {"decoder"} == {"train_loader", "loader_scaling", "startup", "train_step",
                                   "shard_build", "evaluation", "metrics", "precision"}
    assert ("decoder" in kinds) == torch.cuda.is_available()  # the decoder sweep: GPU only
    names = {row["name"] for row in rows if row["benchmark"] == "train_loader"}
    assert "vireid DALI cpu, fused, CAJ views (jpeg shards)" in names
    assert any(name.startswith("CAJ original (") for name in names)
    assert all(row["batch"] == 96 for row in rows if "CAJ" in row.get("name", ""))
    for row in rows:
        assert row["versions"]["torch"] and row["cores"] >= 1
        if "images_per_s" in row:
            assert row["images_per_s"] > 0
    text = report.read_text()
    assert "## Training loader" in text and "ratio_to_original" in text
    assert "## Metrics with float32 against float64 distances" in text
    assert report.with_name(report.stem + "-loader.png").stat().st_size > 1000
    assert report.with_name(report.stem + "-scaling.png").stat().st_size > 1000
