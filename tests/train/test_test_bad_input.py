"""`vireid-test` met as a hostile but realistic user meets it: outputs over inputs, non-finite
weights or features, malformed feature files, incomplete trial folders, rank lists that
cannot be written, a missing GPU. Each is one line naming the file or option, exit 1, no
traceback, nothing overwritten, and, where the input allows it, refused before any work.

Both commands run with the reference loader: these tests need no DALI.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.cli_results import one_line_error
from vireid.cli.test import app as eval_app
from vireid.cli.train import app as train_app
from vireid.shards.manifest import load_manifest
from vireid.train.run_folder import checkpoint_path

TINY = {"width": 32, "height": 64}
FAST = ["--arch", "resnet18", "--pretrained", "none", "--epochs", "1", "--batch-ids", "4",
        "--num-pos", "2", "--amp", "off", "--max-steps", "1", "--eval-every", "5",
        "--warmup-epochs", "1", "--milestones", "2", "3", "--device", "cpu", "--loader",
        "reference"]


def train(*arguments):
    return CliRunner().invoke(train_app, [str(a) for a in arguments])


def evaluate(*arguments, device: str = "cpu"):
    return CliRunner().invoke(eval_app, [*map(str, arguments), "--device", device,
                                         "--loader", "reference"])


@pytest.fixture(scope="module")
def shards(shard_dir):
    return shard_dir("sysu", "jpeg", **TINY)


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    result = train("--shards", shards, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    return checkpoint_path(out)


@pytest.fixture(scope="module")
def features(shards, trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("features") / "features.npz"
    result = evaluate("--shards", shards, "--checkpoint", trained, "--save-features", path)
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def trial_runs(shard_dir, tmp_path_factory):
    """A `--trial all` folder of RegDB: one tiny model trained, filed under every trial with
    that trial's training view (as `vireid-train --trial all` would write them)."""
    regdb = shard_dir("regdb", "jpeg", **TINY)
    work = tmp_path_factory.mktemp("trials")
    result = train("--shards", regdb, "--out", work / "one", *FAST)
    assert result.exit_code == 0, result.output
    state = torch.load(checkpoint_path(work / "one"), weights_only=True)
    for trial, view in load_manifest(regdb).trial_views:
        state["data"]["view"] = view
        checkpoint_path(work / "all" / f"trial-{trial}").parent.mkdir(parents=True)
        torch.save(state, checkpoint_path(work / "all" / f"trial-{trial}"))
    return regdb, work / "all"


@pytest.fixture
def no_work(monkeypatch):
    """Extraction and scoring fail the test: what is refused must be refused before them."""
    import vireid.train.checkpoint_eval as checkpoint_eval

    def work(*args, **kwargs):
        raise AssertionError("the evaluation started before the refusal")

    monkeypatch.setattr(checkpoint_eval, "extract_features", work)
    monkeypatch.setattr(checkpoint_eval, "score_rows", work)


def contents(*folders: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


# 1. outputs written over inputs
OVER_INPUTS = {  # case → (extra arguments, what the line says) from the paths of the test
    "json over the checkpoint": lambda p: ["--json", p["checkpoint"]],
    "features over the checkpoint": lambda p: ["--save-features", p["checkpoint"]],
    "json over the manifest": lambda p: ["--json", p["shards"] / "manifest.json"],
    "json over a tar": lambda p: ["--json", next(p["shards"].glob("*.tar"))],
    "a new file in the shards": lambda p: ["--save-features", p["shards"] / "f.npz"],
    "a symlink to the checkpoint": lambda p: ["--save-features", p["link"]],
    "dot-dot to the checkpoint": lambda p: ["--json", p["sub"] / ".." / "model.pt"],
    "a hard link to the checkpoint": lambda p: ["--json", p["hard"]],
    "a hard link into the shards": lambda p: ["--json", p["hard-manifest"]],
    "rank lists into the shards": lambda p: ["--rank-lists", "2", "--out", p["shards"]],
    "one file for two outputs": lambda p: ["--json", p["sub"] / "x", "--save-features",
                                           p["sub"] / "x"],
}


@pytest.mark.parametrize("case", OVER_INPUTS)
def test_an_output_over_an_input_is_refused(shards, trained, copy_shards, tmp_path, no_work,
                                            case):
    paths = {"shards": copy_shards(shards), "checkpoint": tmp_path / "model.pt",
             "link": tmp_path / "link.pt", "sub": tmp_path / "sub", "hard": tmp_path / "hard"}
    shutil.copy(trained, paths["checkpoint"])
    paths["link"].symlink_to(paths["checkpoint"])
    os.link(paths["checkpoint"], paths["hard"])
    paths["hard-manifest"] = tmp_path / "m.json"
    os.link(paths["shards"] / "manifest.json", paths["hard-manifest"])
    paths["sub"].mkdir()
    before = contents(tmp_path)
    result = evaluate("--shards", paths["shards"], "--checkpoint", paths["checkpoint"],
                      *OVER_INPUTS[case](paths))
    line = one_line_error(result)
    assert "which this command reads" in line or "given to both" in line, line
    assert contents(tmp_path) == before


def test_json_over_the_features_it_scores_is_refused(shards, features, tmp_path, no_work):
    copy = tmp_path / "f.npz"
    shutil.copy(features, copy)
    line = one_line_error(evaluate("--shards", shards, "--features", copy, "--json", copy))
    assert "would write over the features file" in line
    assert copy.read_bytes() == features.read_bytes()


def test_an_output_into_a_trial_run_is_refused(trial_runs, tmp_path, no_work):
    regdb, folder = trial_runs
    target = folder / "trial-3" / "checkpoints" / "last.pt"
    before = target.read_bytes()
    line = one_line_error(evaluate("--shards", regdb, "--checkpoint", folder, "--json", target))
    assert "would write inside" in line and "trial-3" in line
    assert target.read_bytes() == before


# 6. non-finite weights and features
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_checkpoint_with_non_finite_weights_is_refused(shards, trained, tmp_path, no_work,
                                                         value):
    state = torch.load(trained, weights_only=True)
    key = next(k for k, t in state["model"].items() if t.is_floating_point() and t.numel())
    weights = state["model"][key]
    weights[(0,) * weights.dim()] = value
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    line = one_line_error(evaluate("--shards", shards, "--checkpoint", path))
    assert line == f"error: {path}: holds non-finite weights (NaN or inf in {key}): a " \
                   "diverged run? nothing to evaluate"


def test_non_finite_saved_features_are_refused(shards, features, tmp_path):
    arrays = dict(np.load(features))
    arrays["fc"][3, 0] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, **arrays)
    line = one_line_error(evaluate("--shards", shards, "--features", path))
    assert line.startswith(f"error: {path}: ") and "non-finite" in line


# 11. malformed feature files
def truncated(arrays, path):
    np.savez(path, **arrays)
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def changed(**changes):
    return lambda arrays, path: np.savez(path, **{**arrays, **{k: f(arrays) for k, f in
                                                               changes.items()}})


def huge_header(arrays, path):
    """pool.npy claims 10^12 rows of 512 floats (2 PB) and holds a few bytes."""
    np.savez(path, **arrays)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**12, 512)})
    with zipfile.ZipFile(path) as source:
        members = {name: source.read(name) for name in source.namelist()}
    members["pool.npy"] = header.getvalue() + b"\0" * 64
    with zipfile.ZipFile(path, "w") as target:
        for name, data in members.items():
            target.writestr(name, data)


MALFORMED = {
    "truncated": truncated,
    "empty": lambda arrays, path: path.write_bytes(b""),
    "a plain npy": lambda arrays, path: np.save(open(path, "wb"), arrays["pool"]),
    "fewer rows than samples": changed(pool=lambda a: a["pool"][:-3]),
    "one-dimensional": changed(fc=lambda a: a["fc"][:, 0]),
    "strings": changed(pool=lambda a: a["pool"].astype(str)),
    "unsorted samples": changed(**{k: (lambda a, k=k: a[k][::-1]) for k in (
        "samples", "pool", "fc", "pid", "cam", "modality", "key")}),
    "a header of 10^12 rows": huge_header,
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_features_file_is_one_line(shards, features, tmp_path, case):
    path = tmp_path / "bad.npz"
    MALFORMED[case](dict(np.load(features)), path)
    line = one_line_error(evaluate("--shards", shards, "--features", path))
    assert line.startswith(f"error: {path}: "), line


# 9. a `--trial all` folder: completeness, dataset, trial
def test_an_incomplete_trial_folder_is_refused_by_default(trial_runs, tmp_path, no_work):
    regdb, folder = trial_runs
    partial = tmp_path / "runs"
    shutil.copytree(folder, partial, ignore=shutil.ignore_patterns("trial-5", "trial-7"))
    line = one_line_error(evaluate("--shards", regdb, "--checkpoint", partial))
    assert line == f"error: {partial}: lacks trials 5, 7 of 10 (no trial-<N>/checkpoints/" \
                   "last.pt): finish them, or score the others with --allow-missing-trials"


def test_an_allowed_incomplete_trial_folder_says_what_its_mean_covers(trial_runs, tmp_path):
    regdb, folder = trial_runs
    partial = tmp_path / "runs"
    shutil.copytree(folder, partial, ignore=shutil.ignore_patterns("trial-5", "trial-7"))
    result = evaluate("--shards", regdb, "--checkpoint", partial, "--allow-missing-trials",
                      "--protocol", "regdb-v2t", "--feature", "fc", "--json",
                      tmp_path / "rows.json")
    assert result.exit_code == 0, result.output
    assert "mean of trials 1, 2, 3, 4, 6, 8, 9, 10 (8 of 10; missing 5, 7)" in result.output
    rows = json.loads((tmp_path / "rows.json").read_text())
    mean = [r for r in rows if r["trial"] == "mean"]
    assert len(mean) == 1 and mean[0]["trials"] == [1, 2, 3, 4, 6, 8, 9, 10]
    assert mean[0]["missing"] == [5, 7] and len(rows) == 9


def test_a_trial_folder_on_another_datasets_shards_is_refused(trial_runs, shards, no_work):
    _, folder = trial_runs
    line = one_line_error(evaluate("--shards", shards, "--checkpoint", folder))
    assert line == f"error: {checkpoint_path(folder / 'trial-1')}: was trained on regdb, " \
                   f"these shards hold sysu ({shards})"


def test_a_trial_folder_with_a_model_of_another_trial_is_refused(trial_runs, tmp_path,
                                                                 no_work):
    regdb, folder = trial_runs
    swapped = tmp_path / "runs"
    shutil.copytree(folder, swapped)
    shutil.copy(checkpoint_path(folder / "trial-4"), checkpoint_path(swapped / "trial-3"))
    line = one_line_error(evaluate("--shards", regdb, "--checkpoint", swapped))
    assert line.endswith("trial-3/checkpoints/last.pt: is trial 4's model (view trial4), "
                         "filed under trial-3")


# 10. rank lists
RANK_LIST_PROBLEMS = {  # case → (arguments, end of the line)
    "out is a file": (lambda t: ["--rank-lists", "2", "--out", t / "file"],
                      "is a file; give a folder for --out"),
    "a file in the way": (lambda t: ["--rank-lists", "2", "--out", t / "file" / "lists"],
                          "is a file"),
    "an unknown query": (lambda t: ["--queries", "nobody", "--out", t / "lists"],
                         "'nobody' is not a query of this protocol's trial 0"),
    "out without rank lists": (lambda t: ["--out", t / "lists"],
                               "names the rank lists' folder: give --rank-lists N or --queries"),
}


@pytest.mark.parametrize("case", RANK_LIST_PROBLEMS)
def test_rank_list_problems_are_refused_before_extracting(shards, trained, tmp_path, no_work,
                                                          case):
    (tmp_path / "file").write_text("x")
    arguments, ending = RANK_LIST_PROBLEMS[case]
    line = one_line_error(evaluate("--shards", shards, "--checkpoint", trained,
                                   *arguments(tmp_path)))
    assert line.endswith(ending), line
    assert not (tmp_path / "lists").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_rank_list_folder_is_refused_before_extracting(shards, trained, tmp_path,
                                                                   no_work):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = one_line_error(evaluate("--shards", shards, "--checkpoint", trained,
                                       "--rank-lists", "2", "--out", folder / "lists"))
    finally:
        folder.chmod(0o755)
    assert "is read-only for this user" in line


def test_a_full_disk_while_drawing_keeps_the_table_and_leaves_nothing(shards, trained,
                                                                      tmp_path, monkeypatch):
    from PIL import Image

    def full(self, target, *args, **kwargs):
        Path(target).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    lists = tmp_path / "lists"
    result = evaluate("--shards", shards, "--checkpoint", trained, "--rank-lists", "2",
                      "--out", lists, "--json", tmp_path / "rows.json")
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert any(line.startswith("protocol") for line in lines), result.output
    assert lines[-1].startswith(f"error: {lists}") and lines[-1].endswith(
        "cannot write: No space left on device (0 of 2 rank lists written)"), lines[-1]
    assert json.loads((tmp_path / "rows.json").read_text())
    assert not lists.exists() or not any(lists.iterdir())


# 13. the device and missing folders
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_before_anything(shards, trained, no_work):
    line = one_line_error(evaluate("--shards", shards, "--checkpoint", trained,
                                   device="cuda"))
    assert "no GPU is visible to this process" in line


@pytest.mark.parametrize("option", ["--json", "--save-features"])
def test_a_missing_output_folder_is_refused_before_the_evaluation(shards, trained, tmp_path,
                                                                  no_work, option):
    target = tmp_path / "missing" / "out.file"
    line = one_line_error(evaluate("--shards", shards, "--checkpoint", trained, option, target))
    assert line == f"error: {target}: cannot be written: its folder {target.parent} does not " \
                   "exist"
