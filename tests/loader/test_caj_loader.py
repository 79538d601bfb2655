"""CAJ's views in every loader: two visible views and infrared per sample, the recipe's erase
fill, channel exchange on the second visible view and adaptive gray on infrared.

The channel operations are written here literally from the recipe (docs/methods.md) and
compared with the mixing-matrix formulation every loader uses; their frequencies are read
back from the pixels the loaders produce. Every augmenter's pixels of CAJ's views against
the reference: test_augmenters.py; every CPU route's batches: test_routes.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.loaders import train_loader
from vireid.constants import IMAGENET_MEAN, IMAGENET_STD
from vireid.errors import VireidError
from vireid.loader.augment import (
    CAJ_ERASE_FILL,
    copy_mix,
    draw_adaptive_gray,
    draw_channel_exchange,
    draw_params,
)
from vireid.loader.fused import NormaliseTables, augment_batch, packed
from vireid.loader.reference import channel_operation

MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)
STD = np.array(IMAGENET_STD, dtype=np.float32)
SMALL = {"width": 32, "height": 64}
CAJ = {"views": "channel", "batch_ids": 4, "num_pos": 2, "seed": 5}


# --- the channel operations, literally --------------------------------------------------

def literal_exchange(img: np.ndarray, idx: int) -> np.ndarray:
    """ChannelExchange(gray=2) with its draw ``idx`` (3×H×W float32)."""
    img = img.copy()
    if idx == 0:
        img[1, :, :] = img[0, :, :]
        img[2, :, :] = img[0, :, :]
    elif idx == 1:
        img[0, :, :] = img[1, :, :]
        img[2, :, :] = img[1, :, :]
    else:
        img[0, :, :] = img[2, :, :]
        img[1, :, :] = img[2, :, :]
    return img


def literal_gray(img: np.ndarray) -> np.ndarray:
    img = img.copy()
    tmp = 0.2989 * img[0, :, :] + 0.5870 * img[1, :, :] + 0.1140 * img[2, :, :]
    img[0, :, :], img[1, :, :], img[2, :, :] = tmp, tmp, tmp
    return img


def mixed(img: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """The formulation of the loaders: (m0·x0 + m1·x1) + m2·x2 per output channel."""
    m = mix.astype(np.float32)
    return np.stack([(m[c, 0] * img[0] + m[c, 1] * img[1]) + m[c, 2] * img[2]
                     for c in range(3)])


@pytest.fixture
def normalised():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 16, 8)).astype(np.float32)
    return ((pixels / 255 - MEAN[:, None, None]) / STD[:, None, None]).astype(np.float32)


@pytest.mark.parametrize("idx", [0, 1, 2])
def test_exchange_matrix_is_the_literal_copy(normalised, idx):
    expected = literal_exchange(normalised, idx)
    assert np.array_equal(mixed(normalised, copy_mix(np.array([idx]))[0]), expected)
    tensor = torch.from_numpy(normalised.copy())
    assert np.array_equal(channel_operation(tensor, copy_mix(np.array([idx]))[0]).numpy(),
                          expected)


def test_gray_matrix_is_the_literal_gray(normalised):
    gray = np.tile(np.array([0.2989, 0.5870, 0.1140], np.float32), (3, 1))
    expected = literal_gray(normalised)
    assert np.array_equal(mixed(normalised, gray), expected)  # bitwise, float32
    tensor = torch.from_numpy(normalised.copy())
    assert np.array_equal(channel_operation(tensor, gray).numpy(), expected)


def test_identity_matrix_changes_nothing(normalised):
    assert np.array_equal(mixed(normalised, np.eye(3, dtype=np.float32)), normalised)


def test_draws_follow_the_recipe():
    """R/G/B 1/3 each on the exchanged view; R/G/B 1/4, gray 1/8, unchanged 1/8 on infrared
    (chi-square at p = 0.001 over 40,000 draws)."""
    rng = np.random.default_rng(1)
    count = 40_000
    exchange = draw_channel_exchange(rng, count)
    copied = exchange.argmax(axis=2)[:, 0]
    assert (exchange.sum(axis=2) == 1).all() and (exchange[:, :, :].max(axis=1) ==
                                                  exchange[:, 0, :]).all()
    assert chi_square(np.bincount(copied, minlength=3), [1 / 3] * 3) < 13.82
    gray = draw_adaptive_gray(rng, count)
    outcomes = np.array([outcome_of(m) for m in gray])
    assert chi_square(np.bincount(outcomes, minlength=5), [1 / 4] * 3 + [1 / 8] * 2) < 18.47


def chi_square(counts, expected) -> float:
    expected = np.asarray(expected) * np.sum(counts)
    return float(((np.asarray(counts) - expected) ** 2 / expected).sum())


def outcome_of(mix: np.ndarray) -> int:
    """0-2: channel k copied; 3: gray; 4: unchanged."""
    for k in range(3):
        if np.array_equal(mix, np.eye(3, dtype=np.float32)[[k, k, k]]):
            return k
    return 4 if np.array_equal(mix, np.eye(3, dtype=np.float32)) else 3


# --- the fused kernel ----------------------------------------------------------------------

def test_fused_kernel_refuses_a_wrong_mix_shape():
    images = np.zeros((2, 8, 4, 3), np.uint8)
    params = draw_params(np.random.default_rng(0), 2, 8, 4)
    with pytest.raises(ValueError, match="3×3"):
        augment_batch(images, packed(params), NormaliseTables.build(4),
                      np.empty(images.shape, np.float16), np.zeros((2, 3), np.float32))


# --- the loaders ---------------------------------------------------------------------------

def take(loader, count):
    batches = []
    with loader:
        for batch in loader:
            batches.append({k: (v.clone() if torch.is_tensor(v) else v)
                            for k, v in batch.items()})
            if len(batches) == count:
                break
    return batches


@pytest.mark.dali
def test_not_augmenting_gives_two_equal_visible_views(shard_dir):
    shards = shard_dir("sysu", "raw", **SMALL)
    (batch,) = take(train_loader("dali", shards, augment=False, **CAJ), 1)
    assert torch.equal(batch["visible"][:8], batch["visible"][8:])


def classify(image: np.ndarray) -> int:
    """An output image (H×W×3 float) → 0-2: channel k copied; 3: gray; 4: unchanged. A copy
    of channel k un-normalises with k's statistics to whole pixel values."""
    if not (np.array_equal(image[..., 0], image[..., 1])
            and np.array_equal(image[..., 1], image[..., 2])):
        return 4
    for k in range(3):
        values = (image[..., 0] * STD[k] + MEAN[k]) * 255
        if np.mean(np.abs(values - np.round(values)) < 0.2) > 0.9:
            return k
    return 3


@pytest.mark.dali
@pytest.mark.parametrize("cpu_augment", ["fused", "dali"])
def test_channel_outcomes_read_back_from_pixels(shard_dir, cpu_augment):
    """Over 30 steps (240 images per group), from the fused kernel and from the DALI graph
    on the CPU: the exchanged view is always a copy, R/G/B about 1/3 each; infrared is R/G/B
    1/4, gray 1/8, unchanged 1/8; the first view is never mixed (chi-square at p = 0.001)."""
    shards = shard_dir("sysu", "raw", **SMALL)
    counts = {"first": np.zeros(5, int), "second": np.zeros(5, int), "infrared": np.zeros(5, int)}
    for batch in take(train_loader("dali", shards, erase_prob=0.0, cpu_augment=cpu_augment,
                                   **CAJ), 30):
        visible = batch["visible"].float().permute(0, 2, 3, 1).numpy()
        infrared = batch["infrared"].float().permute(0, 2, 3, 1).numpy()
        for name, images in (("first", visible[:8]), ("second", visible[8:]),
                             ("infrared", infrared)):
            for image in images:
                counts[name][classify(image)] += 1
    assert counts["first"][4] == counts["first"].sum()
    assert counts["second"][3:].sum() == 0
    assert chi_square(counts["second"][:3], [1 / 3] * 3) < 13.82
    assert chi_square(counts["infrared"], [1 / 4] * 3 + [1 / 8] * 2) < 18.47


@pytest.mark.dali
def test_caj_erase_fill_is_the_recipe_value(shard_dir):
    """Erased boxes of the first visible view (never mixed) hold float16 of the fill."""
    shards = shard_dir("sysu", "raw", **SMALL)
    loader = train_loader("dali", shards, erase_prob=1.0, **CAJ)
    with loader:
        plan = loader.plan(0, 0)
        (batch,) = take(loader, 1)
    first = batch["visible"][:8].permute(0, 2, 3, 1)
    for n in range(8):
        y, x, h, w = (int(v) for v in plan.params.erase[n])
        if h:
            box = first[n, y:y + h, x:x + w]
            assert torch.equal(box, torch.tensor(CAJ_ERASE_FILL).half().expand_as(box))


@pytest.mark.dali
def test_resume_with_other_views_is_refused(shard_dir):
    shards = shard_dir("sysu", "raw", **SMALL)
    with train_loader("dali", shards, batch_ids=4, num_pos=2) as agw:
        state = agw.state_dict()
    with train_loader("dali", shards, **CAJ) as caj:
        state = {**state, "seed": caj.state_dict()["seed"]}
        with pytest.raises(VireidError, match="views"):
            caj.load_state_dict(state)
