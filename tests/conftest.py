"""Session-wide fake trees and shard folders, built once and shared by the tests.

Tests that modify files must copy them first (``copy_shards``). Tests that need a GPU or NVIDIA
DALI skip, with the reason, on machines without one.
"""

from __future__ import annotations

import ast
import functools
import shutil
from pathlib import Path

import pytest

from vireid.datasets import read_dataset
from vireid.shards.build import BuildOptions, build_shards
from vireid.shards.encode import Encoding

ROOT = Path(__file__).resolve().parents[1]
DALI_REASON = "needs NVIDIA DALI (pip install 'vireid[cuda130]')"
# Tests that need DALI without importing it: they use the DALI loaders, directly or through
# vireid-train / vireid-test (whose default loader is DALI), or DALI's wds2idx tool. "*" is the
# whole module. Found by running the suite with DALI unimportable (a sitecustomize.py on
# PYTHONPATH whose meta-path finder refuses nvidia.dali* and wds2idx). Tests that import
# nvidia.dali themselves, and those marked `dali`, need no entry.
DALI_TESTS = {
    "tests/loader/test_dali_graph.py": "*",
    "tests/loader/test_handoff.py": "*",
    "tests/loader/test_dali_errors.py": (
        "test_a_real_non_decoding_failure_is_one_line",
        "test_damaged_jpeg_body_in_training_names_the_tar_and_key",
        "test_damaged_images_in_evaluation_name_the_tar_and_key"),
    "tests/loader/test_loaders.py": (
        "test_dali_equals_reference", "test_batches_show_the_sampled_identities",
        "test_augmentation_statistics_measured_on_dali_output",
        "test_resume_mid_epoch_gives_the_same_batches",
        "test_state_from_another_configuration_is_refused",
        "test_eval_loader_reads_requested_samples_in_order",
        "test_eval_loader_resizes_when_asked", "test_broken_shards_fail_before_the_first_batch",
        "test_unknown_cpu_augment_is_refused", "test_fused_and_dali_graphs_agree_over_epochs",
        "test_damaged_image_inside_an_intact_shard_is_one_clear_error"),
    "tests/shards/test_build.py": ("test_index_files_equal_dalis_wds2idx",),
    "tests/test_benchmarks.py": "*",
    "tests/train/test_bad_input.py": (
        "test_a_stale_lock_of_a_dead_process_does_not_block",
        "test_a_full_disk_while_saving_is_one_line_and_leaves_no_partial",
        "test_a_mistyped_pretrained_path_is_refused",
        "test_resume_accepts_the_same_data_by_another_path",
        "test_resume_on_other_data_or_of_a_finished_run_is_refused",
        "test_shards_rebuilt_under_a_running_training_stop_it",
        "test_a_changed_byte_is_caught_before_training_and_testing",
        "test_json_output_is_checked_before_the_evaluation", "test_json_rows_are_written",
        "test_a_huge_batch_size_is_refused_and_batches_follow_the_data",
        "test_a_model_trained_at_another_size_is_tested_at_its_size",
        "test_resume_with_the_default_regdb_trial_spelled_out",
        "test_a_destroyed_jpeg_header_is_one_line_in_training_and_testing"),
    "tests/train/test_device.py": (
        "test_a_cpu_run_resumed_with_another_precision_is_refused",
        "test_an_older_checkpoint_from_several_gpus_resumes_on_the_cpu"),
    "tests/train/test_distributed.py": "*",
    "tests/train/test_runner.py": (
        "test_resume_after_a_kill_matches_the_uninterrupted_run", "test_run_folder_contents",
        "test_nan_loss_stops_and_keeps_the_last_good_checkpoint",
        "test_checkpoint_of_another_model_or_class_count",
        "test_a_short_run_learns_far_above_chance"),
}


@functools.cache
def has_dali() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def _is_dali_import(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(alias.name.startswith("nvidia.dali") for alias in node.names)
    if isinstance(node, ast.ImportFrom):
        module = node.module or ""
        return module.startswith("nvidia.dali") or (
            module == "nvidia" and any(alias.name == "dali" for alias in node.names))
    return False


@functools.cache
def dali_importers(path: Path) -> frozenset[str]:
    """Where a test module imports nvidia.dali: "top" for its own import statements (run at
    import time), the names of the test functions that do, "*" for any helper or class."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and _is_dali_import(node):
            found.add("top")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and any(
                map(_is_dali_import, ast.walk(node))):
            found.add(node.name if node.name.startswith("test_") else "*")
    return frozenset(found)


def needs_dali(item) -> bool:
    """Marked `dali`, listed in DALI_TESTS, or importing nvidia.dali (itself or its module)."""
    if item.get_closest_marker("dali"):
        return True
    name = getattr(item, "originalname", item.name)
    listed = DALI_TESTS.get(item.path.relative_to(ROOT).as_posix(), ())
    return listed == "*" or name in listed or bool({"top", "*", name} & dali_importers(
        item.path))


class _ModuleNeedingDali(pytest.Module):
    def collect(self):
        pytest.skip(DALI_REASON)


def pytest_pycollect_makemodule(module_path, parent):
    """A test module that imports DALI at its top skips whole (instead of failing to import)."""
    if "top" in dali_importers(module_path) and not has_dali():
        return _ModuleNeedingDali.from_parent(parent, path=module_path)
    return None


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    """Such a skip names its module, not this file."""
    report = yield
    if isinstance(collector, _ModuleNeedingDali) and report.skipped:
        report.longrepr = (str(collector.path), None, f"Skipped: {DALI_REASON}")
    return report


def skip_without_dali(items) -> None:
    dali_items = [item for item in items if needs_dali(item)]
    if dali_items and not has_dali():
        for item in dali_items:
            item.add_marker(pytest.mark.skip(reason=DALI_REASON))


def pytest_collection_modifyitems(config, items):
    """GPU and DALI tests skip, with a reason, where CUDA or DALI is absent."""
    skip_without_dali(items)
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fake_tree(tmp_path_factory):
    """``fake_tree(dataset)`` → root of a small generated raw tree (cached per dataset)."""
    from vireid.fake import make_fake

    cache: dict[str, Path] = {}

    def make(dataset: str) -> Path:
        if dataset not in cache:
            root = tmp_path_factory.mktemp(f"raw-{dataset}") / dataset
            cache[dataset] = make_fake(dataset, root, seed=0).root
        return cache[dataset]

    return make


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory, fake_tree):
    """``shard_dir(dataset, encoding="jpeg")`` → a built shard folder (cached, read-only)."""
    cache: dict[tuple[str, str], Path] = {}

    def make(dataset: str, encoding: str = "jpeg", **options) -> Path:
        key = (dataset, encoding, tuple(sorted(options.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"shards-{dataset}-{encoding}") / "out"
            build_shards(read_dataset(dataset, fake_tree(dataset)), out,
                         BuildOptions(encoding=Encoding(encoding), workers=1, **options))
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture
def copy_shards(tmp_path):
    """``copy_shards(folder)`` → a private copy that a test may damage."""

    def make(folder: Path) -> Path:
        target = tmp_path / f"copy-{folder.parent.name}"
        shutil.copytree(folder, target)
        return target

    return make
