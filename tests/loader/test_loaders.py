"""DALI loaders against the PyTorch reference loaders, on real shards built from fake trees."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.loaders import eval_loader, train_loader
from vireid.constants import IMAGENET_MEAN, IMAGENET_STD
from vireid.errors import VireidError
from vireid.loader.augment import PAD

MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)
STD = np.array(IMAGENET_STD, dtype=np.float32)
SMALL = {"width": 32, "height": 64}


def to_uint8(batch: torch.Tensor) -> np.ndarray:
    """Undo normalisation: N×3×H×W float16 → N×H×W×3 values (exact for stored pixels)."""
    values = batch.float().permute(0, 2, 3, 1).numpy()
    return values * STD * 255 + MEAN * 255


def take(loader, count):
    batches = []
    for batch in loader:
        batches.append({k: (v.clone() if torch.is_tensor(v) else v) for k, v in batch.items()})
        if len(batches) == count:
            break
    return batches


CPU_AUGMENT = ["fused", "dali"]  # one compiled pass / DALI's operators (the GPU graph)


@pytest.mark.dali
@pytest.mark.parametrize("encoding", ["raw", "png", "jpeg"])
@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("cpu_augment", CPU_AUGMENT)
def test_dali_equals_reference(shard_dir, encoding, augment, cpu_augment):
    shards = shard_dir("sysu", encoding)
    options = {"batch_ids": 4, "num_pos": 2, "seed": 3, "augment": augment}
    dali = take(train_loader("dali", shards, cpu_augment=cpu_augment, **options), 3)
    reference = take(train_loader("reference", shards, **options), 3)
    for a, b in zip(dali, reference):
        for key in ("visible", "infrared"):
            assert a[key].shape == (8, 3, 288, 144) and a[key].dtype == torch.float16
            assert a[key].is_contiguous(memory_format=torch.channels_last)
            difference = np.abs(to_uint8(a[key]) - to_uint8(b[key]))
            # raw/PNG: identical pixels; JPEG: within decoder tolerance
            assert difference.max() <= (0.5 if encoding != "jpeg" else 8.0)
        assert torch.equal(a["labels_visible"], b["labels_visible"])
        assert torch.equal(a["labels_visible"], a["labels_infrared"])
        assert a["labels_visible"].dtype == torch.int64
        assert (a["epoch"], a["step"]) == (b["epoch"], b["step"])


@pytest.mark.dali
def test_batches_show_the_sampled_identities(shard_dir):
    shards = shard_dir("sysu", "raw")
    loader = train_loader("dali", shards, batch_ids=4, num_pos=2, seed=1, augment=False)
    source = loader.source
    manifest = source.manifest
    view_labels = dict(zip(loader.view.visible.samples, loader.view.visible.labels))
    view_labels.update(zip(loader.view.infrared.samples, loader.view.infrared.labels))
    batch = next(iter(loader))
    plan = loader.plan(0, 0)
    for row, sample in enumerate(plan.samples):
        stored = source.read(int(sample)).reshape(manifest.height, manifest.width, 3)
        images = batch["visible"] if row < 8 else batch["infrared"]
        np.testing.assert_allclose(to_uint8(images[row % 8:row % 8 + 1])[0], stored, atol=0.5)
        modality = "visible" if row < 8 else "infrared"
        assert manifest.samples[sample].modality.value == modality
        assert view_labels[int(sample)] == int(batch["labels_visible"][row % 8])


def _recover(output: np.ndarray, stored: np.ndarray) -> tuple[bool, int, int]:
    """Find (flip, top, left) by exact match of a 12×12 patch of ``output`` in ``stored``."""
    height, width = stored.shape[:2]
    padded = np.pad(stored, ((PAD, PAD), (PAD, PAD), (0, 0))).astype(np.float32)
    erased = np.all(np.abs(output - MEAN * 255) < 0.6, axis=2)
    for y in range(0, height - 12, 3):
        for x in range(0, width - 12, 3):
            if erased[y:y + 12, x:x + 12].any():
                continue
            patch = np.rint(output[y:y + 12, x:x + 12])
            found = []
            for flip in (False, True):
                source = padded[:, ::-1] if flip else padded
                for top in range(2 * PAD + 1):
                    for left in range(2 * PAD + 1):
                        lx = (2 * PAD - left) if flip else left
                        window = source[top + y:top + y + 12, lx + x:lx + x + 12]
                        if np.array_equal(window, patch):
                            found.append((flip, top, left))
            if len(found) == 1:
                return found[0]
    raise AssertionError("no unambiguous patch")


@pytest.mark.dali
@pytest.mark.slow
@pytest.mark.parametrize("cpu_augment", CPU_AUGMENT)
def test_augmentation_statistics_measured_on_dali_output(shard_dir, cpu_augment):
    """Flip rate, crop offsets, zero padding and erasing, read back from DALI's pixels."""
    shards = shard_dir("sysu", "raw", **SMALL)
    check_augmentation(train_loader("dali", shards, batch_ids=8, num_pos=4, seed=7,
                                         cpu_augment=cpu_augment))


def check_augmentation(loader) -> None:
    """Every image's flip, crop offsets, padding and erase box recovered from the pixels
    equal the step plan's; their rates and ranges are the recipe's."""
    source, manifest = loader.source, loader.source.manifest
    flips, offsets, erased, boxes = [], [], 0, []
    total = 0
    for batch in take(loader, 5):
        plan = loader.plan(batch["epoch"], batch["step"])
        outputs = np.concatenate([to_uint8(batch["visible"].cpu()),
                                  to_uint8(batch["infrared"].cpu())])
        for i, sample in enumerate(plan.samples):
            stored = source.read(int(sample)).reshape(manifest.height, manifest.width, 3)
            flip, top, left = _recover(outputs[i], stored)
            assert (flip, top, left) == (bool(plan.params.flip[i]), int(plan.params.top[i]),
                                         int(plan.params.left[i]))
            flips.append(flip)
            offsets.append((top - PAD, left - PAD))
            box = plan.params.erase[i]
            if box[2] * box[3]:
                erased += 1
                boxes.append(box)
                t, lft, h, w = box
                assert np.allclose(outputs[i][t:t + h, lft:lft + w], MEAN * 255, atol=0.6)
            _check_padding(outputs[i], top - PAD, left - PAD, flip, box)
            total += 1
    assert 0.35 < np.mean(flips) < 0.65
    assert 0.35 < erased / total < 0.65
    dy, dx = np.array(offsets).T
    assert dy.min() >= -PAD and dy.max() <= PAD and dx.min() >= -PAD and dx.max() <= PAD
    assert len(set(dy.tolist())) >= 15 and len(set(dx.tolist())) >= 15
    areas = [h * w / (manifest.height * manifest.width) for _, _, h, w in boxes]
    assert 0.015 < min(areas) and max(areas) < 0.45


def _check_padding(output, dy, dx, flip, box):
    """Rows/columns that fall outside the image are black (pixel 0 before normalising)."""
    height, width = output.shape[:2]
    black = np.abs(output).max(axis=2) < 0.6
    top, left, h, w = box
    black[top:top + h, left:left + w] = True  # erasing (after padding) may cover the border
    if dy < 0:
        assert black[: -dy].all()
    if dy > 0:
        assert black[height - dy:].all()
    columns = slice(0, -dx) if dx < 0 else slice(width - dx, width) if dx > 0 else None
    if columns is not None:
        if flip:
            columns = slice(width - columns.stop, width - columns.start)
        assert black[:, columns].all()


def test_erase_box_distribution_matches_the_spec():
    """Boxes from ``draw_params`` against a literal transcription of docs/recipe.md,
    Augmentation (the random-erasing rule)."""
    import math
    import random

    from vireid.loader.augment import draw_params

    params = draw_params(np.random.default_rng(0), 4000, 288, 144)
    ours = [(h, w) for _, _, h, w in params.erase if h * w]

    spec = random.Random(0)
    theirs = []
    for _ in range(4000):
        if spec.uniform(0, 1) > 0.5:
            continue
        for _ in range(100):
            area = spec.uniform(0.02, 0.4) * 288 * 144
            ratio = spec.uniform(0.3, 1 / 0.3)
            h, w = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if h < 288 and w < 144:
                theirs.append((h, w))
                break
    assert abs(len(ours) - len(theirs)) < 150
    for column in (0, 1):
        a = np.array([b[column] for b in ours])
        b = np.array([b[column] for b in theirs])
        assert abs(a.mean() - b.mean()) < 0.05 * b.mean()
        assert abs(np.median(a) - np.median(b)) < 0.08 * np.median(b)
    assert all(h < 288 and w < 144 for h, w in ours)
    tops_ok = all(t + h <= 288 and left + w <= 144 for t, left, h, w in params.erase)
    assert tops_ok


@pytest.mark.dali
@pytest.mark.parametrize("cpu_augment", CPU_AUGMENT)
def test_resume_mid_epoch_gives_the_same_batches(shard_dir, cpu_augment):
    shards = shard_dir("sysu", "jpeg")
    options = {"batch_ids": 4, "num_pos": 2, "seed": 5, "cpu_augment": cpu_augment}
    straight = train_loader("dali", shards, **options)
    expected = [b["visible"].clone() for b in straight] + [b["visible"].clone()
                                                           for b in take(straight, 2)]
    interrupted = train_loader("dali", shards, **options)
    got = [b["visible"].clone() for b in take(interrupted, 3)]
    state = json.loads(json.dumps(interrupted.state_dict()))  # survives serialisation
    assert state["step"] == 3
    resumed = train_loader("dali", shards, **options)
    resumed.load_state_dict(state)
    got += [b["visible"].clone() for b in resumed]
    got += [b["visible"].clone() for b in take(resumed, 2)]
    assert len(got) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))


@pytest.mark.dali
def test_state_from_another_configuration_is_refused(shard_dir):
    shards = shard_dir("sysu", "jpeg")
    state = train_loader("dali", shards, seed=1, batch_ids=4).state_dict()
    with pytest.raises(VireidError, match="seed"):
        train_loader("dali", shards, seed=2, batch_ids=4).load_state_dict(state)


@pytest.mark.dali
@pytest.mark.parametrize("encoding", ["raw", "png", "jpeg"])
def test_eval_loader_reads_requested_samples_in_order(shard_dir, encoding):
    shards = shard_dir("sysu", encoding)
    wanted = list(range(1, 60, 4)) + [2]
    dali = list(eval_loader("dali", shards, wanted, batch_size=6))
    reference = list(eval_loader("reference", shards, wanted, batch_size=6))
    got = np.concatenate([b["samples"] for b in dali])
    np.testing.assert_array_equal(got, sorted(set(wanted)))
    for a, b in zip(dali, reference):
        assert a["images"].is_contiguous(memory_format=torch.channels_last)
        tolerance = 0.5 if encoding != "jpeg" else 8.0
        assert np.abs(to_uint8(a["images"]) - to_uint8(b["images"])).max() <= tolerance
    assert sum(len(b["images"]) for b in dali) == len(set(wanted))


@pytest.mark.dali
def test_eval_loader_resizes_when_asked(shard_dir):
    shards = shard_dir("sysu", "raw")
    batch = next(iter(eval_loader("dali", shards, [0, 1], size=(128, 64))))
    assert batch["images"].shape == (2, 3, 128, 64)


def test_regdb_trains_one_view_per_trial(shard_dir):
    shards = shard_dir("regdb", "jpeg")
    first = train_loader("reference", shards, batch_ids=2, num_pos=2, trial=1)
    second = train_loader("reference", shards, batch_ids=2, num_pos=2, trial=2)
    assert first.view.name == "trial1" and second.view.name == "trial2"
    assert set(first.view.visible.samples) != set(second.view.visible.samples)
    with pytest.raises(VireidError, match=r"^regdb: no training set for trial 11 \(trials 1, "):
        train_loader("reference", shards, trial=11)
    with pytest.raises(VireidError, match="^sysu: has one training set; trial 2 names"):
        train_loader("reference", shard_dir("sysu", "jpeg"), trial=2)


@pytest.mark.dali
def test_broken_shards_fail_before_the_first_batch(shard_dir, copy_shards):
    shards = copy_shards(shard_dir("sysu", "jpeg"))
    index = sorted(shards.glob("*.idx"))[0]
    index.write_text(index.read_text().replace("jpg", "jpq", 1))
    with pytest.raises(VireidError, match=index.name):
        train_loader("dali", shards)
    index.unlink()
    with pytest.raises(VireidError, match="missing index"):
        eval_loader("dali", shards, [0])
    tar = sorted(shards.glob("*.tar"))[-1]
    tar.write_bytes(tar.read_bytes()[:-4096])
    with pytest.raises(VireidError, match=tar.name):
        train_loader("dali", shards)


@pytest.mark.dali
def test_manifest_of_another_version_is_refused(shard_dir, copy_shards):
    shards = copy_shards(shard_dir("sysu", "jpeg"))
    manifest = json.loads((shards / "manifest.json").read_text())
    manifest["version"] = 99
    (shards / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VireidError, match="manifest.json.*version 99"):
        train_loader("dali", shards)


def test_unknown_loader_kind():
    with pytest.raises(VireidError, match=r"^loader: unknown choice 'ffcv' \(dali, reference\)$"):
        train_loader("ffcv", "nowhere")


@pytest.mark.dali
def test_loaders_come_from_the_registry(shard_dir):
    from vireid.loader import list_loaders

    assert list_loaders() == ["dali", "reference"]
    for kind in list_loaders():
        with train_loader(kind, shard_dir("sysu", "jpeg"), batch_ids=4, num_pos=2) as loader:
            assert loader.num_classes > 0


@pytest.mark.dali
def test_unknown_cpu_augment_is_refused(shard_dir):
    with pytest.raises(VireidError, match=r"^CPU augmentation: unknown choice 'opencv'"):
        train_loader("dali", shard_dir("sysu", "jpeg"), cpu_augment="opencv")


@pytest.mark.dali
@pytest.mark.parametrize("cpu_augment", CPU_AUGMENT)
def test_damaged_image_inside_an_intact_shard_is_one_clear_error(shard_dir, copy_shards,
                                                                  cpu_augment):
    """Sizes and index still match, but the JPEG bytes are not a JPEG any more: one error
    naming the shard, the image and the command that checks them — not a crash in DALI."""
    from vireid.shards.tario import parse_index

    shards = copy_shards(shard_dir("sysu", "jpeg"))
    for index in shards.glob("*.idx"):
        with open(index.with_suffix(".tar"), "r+b") as tar:
            for group in parse_index(index):
                for member in group:
                    if member.name.endswith(".jpg"):
                        tar.seek(member.offset)
                        tar.write(b"\0" * 4)  # no JPEG start-of-image marker
    loader = train_loader("dali", shards, batch_ids=4, num_pos=2, cpu_augment=cpu_augment)
    with pytest.raises(VireidError, match=r"\.tar: image \S+ is not a JPEG.*verify --deep"):
        take(loader, 1)
