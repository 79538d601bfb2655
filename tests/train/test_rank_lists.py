"""`vireid-test --rank-lists N`: PNG sheets whose frames are read back and checked against the
ground truth of the ranking, computed here from the saved features."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vireid.cli.test import app as eval_app
from vireid.cli.train import app as train_app
from vireid.eval.ranklists import COLOURS, TOP, frame_colour
from vireid.shards.manifest import load_manifest

pytestmark = pytest.mark.dali

FAST = ["--arch", "resnet18", "--pretrained", "none", "--epochs", "1", "--batch-ids", "4",
        "--num-pos", "2", "--amp", "off", "--max-steps", "1", "--eval-every", "5",
        "--warmup-epochs", "1", "--milestones", "2", "3", "--device", "cpu"]


@pytest.fixture(scope="module")
def run(shard_dir, tmp_path_factory):
    shards = shard_dir("sysu", "jpeg", width=32, height=64)
    out = tmp_path_factory.mktemp("ranklists") / "run"
    result = CliRunner().invoke(train_app, ["--shards", str(shards), "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    return shards, out / "checkpoints" / "last.pt"


def expected_frames(saved, manifest, trial, query: int) -> list[tuple[int, int, int]]:
    """Ground truth: the top-10 gallery images by −cosine of the fc features, same pid?"""
    row = {int(s): i for i, s in enumerate(saved["samples"])}
    gallery = list(trial.gallery)
    g = saved["fc"][[row[s] for s in gallery]]
    order = np.argsort(-(g @ saved["fc"][row[query]]), kind="stable")[:TOP]
    pid = manifest.samples[query].pid
    return [COLOURS[manifest.samples[gallery[i]].pid == pid] for i in order]


def test_rank_list_frames_follow_the_ranking(run, tmp_path):
    shards, checkpoint = run
    lists = tmp_path / "lists"
    result = CliRunner().invoke(eval_app, [
        "--shards", str(shards), "--checkpoint", str(checkpoint), "--device", "cpu",
        "--rank-lists", "3", "--out", str(lists), "--save-features", str(tmp_path / "f.npz")])
    assert result.exit_code == 0, result.output
    assert f"rank lists: {lists}" in result.output
    manifest = load_manifest(shards)
    trial = manifest.trial(manifest.default_protocol, 0)
    keys = {manifest.samples[q].key: q for q in trial.query}
    sheets = sorted(lists.glob("*.png"))
    assert len(sheets) == 3
    saved = dict(np.load(tmp_path / "f.npz"))
    greens = reds = 0
    for sheet in sheets:
        query = keys[sheet.stem.split("-trial0-")[1]]
        image = Image.open(sheet).convert("RGB")
        assert frame_colour(image, 0, manifest.width) == COLOURS["query"]
        frames = [frame_colour(image, p, manifest.width) for p in range(1, TOP + 1)]
        expected = expected_frames(saved, manifest, trial, query)
        assert frames == expected
        greens += frames.count(COLOURS[True])
        reds += frames.count(COLOURS[False])
    assert greens and reds  # both colours occur: the check can fail


def test_rank_lists_of_chosen_queries_and_a_bad_key(run, tmp_path):
    shards, checkpoint = run
    manifest = load_manifest(shards)
    key = manifest.samples[manifest.trial(manifest.default_protocol, 0).query[5]].key
    base = ["--shards", str(shards), "--checkpoint", str(checkpoint), "--device", "cpu",
            "--out", str(tmp_path)]
    result = CliRunner().invoke(eval_app, [*base, "--queries", key])
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.glob("*.png")] == [f"sysu-all-trial0-{key}.png"]
    bad = CliRunner().invoke(eval_app, [*base, "--queries", "nobody"])
    assert bad.exit_code == 1 and "'nobody' is not a query" in bad.output


def test_default_folder_is_beside_the_run(run):
    from vireid.train.checkpoint_eval import rank_list_folder

    _, checkpoint = run
    assert rank_list_folder(checkpoint) == checkpoint.resolve().parent.parent / "rank-lists"
