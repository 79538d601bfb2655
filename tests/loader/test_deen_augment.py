"""DEEN's training augmentation (docs/methods.md, DEEN): random gray (p = 0.5, both
modalities, PIL's ``convert('L')`` before normalisation and erasing), and random erasing over
0.2-0.8 of the image on SYSU-MM01, 0.02-0.4 on RegDB and LLCM, filled with (0.485, 0.456,
0.406) in normalised space; AGW's and CAJ's draws unchanged.

The gray is checked against PIL itself on every colour; its frequency and the erase boxes are
read back from augmented pixels of plans drawn by ``plan_step``; every member against the
reference on DEEN's parameters: test_augmenters.py.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
from PIL import Image

from tests.loader.test_augmenters import ORACLE, members, pil_luma
from tests.loader.test_caj_loader import chi_square
from tests.loader.test_fused import assert_bitwise
from vireid.choices import Views
from vireid.constants import IMAGENET_MEAN, IMAGENET_STD
from vireid.loader import make_train_loader
from vireid.loader.augment import (
    ERASE_AREA,
    ERASE_FILL,
    PAD,
    Augmentation,
    AugmentParams,
    draw_adaptive_gray,
    draw_channel_exchange,
    identity_mix,
)
from vireid.loader.augmenters import make_augmenter
from vireid.loader.plan import plan_step
from vireid.loader.sampler import AUGMENT_STREAM, CHANNEL_STREAM, IdentitySampler, step_rng
from vireid.loader.settings import Backend, Sampling
from vireid.shards.manifest import load_manifest
from vireid.train.methods import get_method, list_methods

MEAN = np.array(IMAGENET_MEAN, np.float32)
STD = np.array(IMAGENET_STD, np.float32)
SMALL = {"width": 32, "height": 64}
DEEN = get_method("deen")
FILL = (0.485, 0.456, 0.406)  # the authors' RandomErasing mean, in normalised space
AREAS = {"sysu": (0.2, 0.8), "regdb": (0.02, 0.4), "llcm": (0.02, 0.4)}  # the authors'
CHI_SQUARE_1DOF = 10.83  # p = 0.001


def every_colour() -> np.ndarray:
    """All 2^24 RGB colours as 16 images of 1024 × 1024."""
    code = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([code >> 16, (code >> 8) & 255, code & 255], axis=-1).astype(np.uint8)
    return rgb.reshape(16, 1024, 1024, 3)


def pil_gray(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).convert("L"))


# --- the gray: PIL's luma --------------------------------------------------------------------

def test_the_luma_formula_is_pils_on_every_colour():
    """The integer formula every member computes is PIL's convert('L') on all 2^24 colours
    (not only on random ones: the whole space takes a second)."""
    for image in every_colour():
        np.testing.assert_array_equal(pil_luma(image), pil_gray(image))


@pytest.mark.parametrize("name, device", members() + members([ORACLE]))
def test_every_member_grays_every_colour_as_pil(name, device):
    """Each member, gray flag set, identity crop: every one of the 2^24 colours becomes PIL's
    luma in all three channels, normalised (its bits: the member's own output for the image
    PIL made gray, gray flag off; the normalisation of every value: test_augmenters.py)."""
    images = every_colour()[:4] if name == ORACLE else every_colour()  # PIL is PIL: a share
    count = len(images)
    flags = np.ones(count, bool)
    still = AugmentParams(np.full(count, PAD, np.int32), np.full(count, PAD, np.int32),
                          np.zeros(count, bool), np.zeros((count, 4), np.int32), gray=flags)
    augmenter = make_augmenter(name, device=device, threads=2)
    try:
        for n in range(count):
            one = still.take(np.array([n]))
            got = augmenter(images[n:n + 1], one).cpu().numpy()
            gray = np.repeat(pil_gray(images[n])[None, ..., None], 3, axis=-1)
            plain = AugmentParams(one.top, one.left, one.flip, one.erase)
            assert_bitwise(got, augmenter(gray, plain).cpu().numpy())
    finally:
        augmenter.close()


def test_gray_on_random_images_is_pils_in_every_member():
    """Random images through the reference (PIL itself) and the fused kernel, gray flags on:
    un-normalised, every output pixel is PIL's luma of its source pixel, in R, G and B."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 40, 24, 3), dtype=np.uint8)
    count = len(images)
    params = AugmentParams(np.full(count, PAD, np.int32), np.full(count, PAD, np.int32),
                           np.arange(count) % 2 == 1, np.zeros((count, 4), np.int32),
                           gray=np.ones(count, bool))
    for name in ("reference", "fused", "tensor"):
        out = make_augmenter(name)(images, params).float().numpy()
        values = np.round((out * STD + MEAN) * 255).astype(np.uint8)
        for n in range(count):
            expected = pil_gray(images[n][:, ::-1] if params.flip[n] else images[n])
            for channel in range(3):
                np.testing.assert_array_equal(values[n, ..., channel], expected)


# --- the method's record ---------------------------------------------------------------------

@pytest.mark.parametrize("dataset", sorted(AREAS))
def test_deens_augmentation_is_the_authors_on_each_dataset(dataset):
    assert DEEN.augmentation(dataset) == Augmentation(gray=0.5, erase_area=AREAS[dataset],
                                                      fill=FILL)


@pytest.mark.parametrize("dataset", sorted(AREAS))
def test_every_other_method_keeps_agws_augmentation(dataset):
    for name in (m for m in list_methods() if m != "deen"):
        assert get_method(name).augmentation(dataset) == Augmentation()
    assert Augmentation() == Augmentation(0.0, ERASE_AREA, None) and ERASE_AREA == (0.02, 0.4)


def test_an_impossible_augmentation_is_refused():
    for wrong in ({"gray": 1.5}, {"erase_area": (0.5, 0.2)}, {"erase_area": (0.0, 0.4)},
                  {"fill": (0.1, 0.2)}):
        with pytest.raises(ValueError):
            Augmentation(**wrong)


# --- the plans --------------------------------------------------------------------------------

def synthetic_sampler(batch_ids: int = 4, num_pos: int = 2, seed: int = 11) -> IdentitySampler:
    """10 identities, 3 visible and 2 infrared images each (sample numbers apart)."""
    visible = tuple(np.arange(3 * c, 3 * c + 3) for c in range(10))
    infrared = tuple(np.arange(100 + 2 * c, 102 + 2 * c) for c in range(10))
    return IdentitySampler(visible, infrared, 30, 20, batch_ids=batch_ids, num_pos=num_pos,
                           seed=seed)


def plans_digest(views: Views | None) -> str:
    digest = hashlib.sha256()
    sampler = synthetic_sampler()
    for epoch, step in [(0, 0), (0, 3), (2, 1)]:
        p = plan_step(sampler, epoch, step, augment=True, height=64, width=32,
                      views=views).params
        for array in (p.top, p.left, p.flip, p.erase,
                      p.mix if p.mix is not None else np.zeros(0), np.asarray(p.fill)):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def test_agw_and_caj_plans_are_the_ones_recorded_before_deen():
    """Digests of AGW's and CAJ's parameters for a fixed seed, recorded from the code before
    DEEN's augmentation was added: gray and the erase area as a parameter changed nothing."""
    assert plans_digest(None) == plans_digest(Views.SINGLE) == "851988339978f80e"
    assert plans_digest(Views.CHANNEL) == "c207894b7fd54111"


def old_erase_box(rng, height: int, width: int) -> tuple[int, int, int, int]:
    """The erase box as drawn before DEEN (area 0.02-0.4 as module constants)."""
    if rng.random() >= 0.5:
        return (0, 0, 0, 0)
    for _ in range(100):
        area = rng.uniform(0.02, 0.4) * height * width
        aspect = rng.uniform(0.3, 1 / 0.3)
        h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if h < height and w < width:
            return (int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)),
                    h, w)
    return (0, 0, 0, 0)


@pytest.mark.parametrize("views", [None, Views.CHANNEL])
def test_agw_and_caj_plans_follow_the_formula_before_deen(views):
    """AGW's and CAJ's whole global parameters, step by step, from the earlier formula
    written out here: their streams, in their order; no gray; their fill."""
    sampler = synthetic_sampler()
    groups = 3 if views == Views.CHANNEL else 2
    count = groups * 8
    for epoch, step in [(0, 0), (1, 2), (3, 3)]:
        params = plan_step(sampler, epoch, step, augment=True, height=64, width=32,
                           views=views).params
        rng = step_rng(sampler.seed, epoch, step, AUGMENT_STREAM)
        top, left = rng.integers(0, 21, count), rng.integers(0, 21, count)
        flip = rng.random(count) < 0.5
        erase = [old_erase_box(rng, 64, 32) for _ in range(count)]
        np.testing.assert_array_equal(params.top, top)
        np.testing.assert_array_equal(params.left, left)
        np.testing.assert_array_equal(params.flip, flip)
        np.testing.assert_array_equal(params.erase, np.array(erase))
        assert params.gray is None
        if views == Views.CHANNEL:
            channel = step_rng(sampler.seed, epoch, step, CHANNEL_STREAM)
            mix = np.concatenate([identity_mix(8), draw_channel_exchange(channel, 8),
                                  draw_adaptive_gray(channel, 8)])
            np.testing.assert_array_equal(params.mix, mix)
            assert params.fill == (0.4914, 0.4822, 0.4465)
        else:
            assert params.mix is None and params.fill == ERASE_FILL


def deen_plans(dataset: str, steps: int = 40, erase_prob: float = 0.5):
    """DEEN's plans of ``steps`` epochs' first step (one step an epoch: 32 visible and 32
    infrared images)."""
    sampler = synthetic_sampler(batch_ids=8, num_pos=4)
    return [plan_step(sampler, epoch, 0, augment=True, height=64, width=32,
                      erase_prob=erase_prob, augmentation=DEEN.augmentation(dataset))
            for epoch in range(steps)]


def box_fractions(erase: np.ndarray, height: int = 64, width: int = 32) -> np.ndarray:
    """Per non-empty box (h, w): the fractions of the image its drawn area can have been,
    (h - ½)(w - ½) to (h + ½)(w + ½) (h and w are rounded from the area and aspect)."""
    h, w = erase[:, 2].astype(float), erase[:, 3].astype(float)
    drawn = h > 0
    return np.stack([(h - 0.5) * (w - 0.5), (h + 0.5) * (w + 0.5)], 1)[drawn] / (height * width)


def test_deen_plans_on_sysu_and_llcm_differ_as_stated():
    """Same seed: the same crops, flips and gray flags (their own stream) on both datasets;
    SYSU-MM01's boxes cover 0.2-0.8 of the image, LLCM's 0.02-0.4 (each box within the
    rounding of its bounds, and some outside the other dataset's); both filled (0.485, 0.456,
    0.406). LLCM's boxes are AGW's (the same area), and its crops and flips are AGW's."""
    sysu, llcm = deen_plans("sysu"), deen_plans("llcm")
    agw = [plan_step(synthetic_sampler(batch_ids=8, num_pos=4), p.epoch, 0, augment=True,
                     height=64, width=32).params for p in llcm]
    for a, b, c in zip(sysu, llcm, agw):
        for name in ("top", "left", "flip", "gray"):
            np.testing.assert_array_equal(getattr(a.params, name), getattr(b.params, name))
        np.testing.assert_array_equal(b.params.top, c.top)
        np.testing.assert_array_equal(b.params.erase, c.erase)
        assert a.params.fill == b.params.fill == FILL and c.fill == ERASE_FILL
    fractions = {}
    for name, plans, (low, high) in (("sysu", sysu, (0.2, 0.8)), ("llcm", llcm, (0.02, 0.4))):
        bounds = box_fractions(np.concatenate([p.params.erase for p in plans]))
        assert len(bounds) > 500
        assert (bounds[:, 1] >= low).all() and (bounds[:, 0] <= high).all()
        fractions[name] = bounds.mean(axis=1)
    assert (fractions["sysu"] > 0.45).sum() > 50 and (fractions["llcm"] < 0.15).sum() > 50
    assert fractions["sysu"].mean() > 0.4 > 0.25 > fractions["llcm"].mean()


def test_gray_draws_do_not_depend_on_the_erasing():
    """The gray flags come from their own stream: erasing off or on, the same flags."""
    on, off = deen_plans("sysu", 5), deen_plans("sysu", 5, erase_prob=0.0)
    for a, b in zip(on, off):
        np.testing.assert_array_equal(a.params.gray, b.params.gray)
        assert a.params.gray.any()


def test_without_augmentation_deen_has_no_gray():
    plan = plan_step(synthetic_sampler(), 0, 0, augment=False, height=64, width=32,
                     augmentation=DEEN.augmentation("sysu"))
    assert plan.params.gray is None and not plan.params.erase.any()


def test_every_rank_gets_its_share_of_the_gray_flags():
    """Two ranks together hold one process's flags, visible share then infrared share."""
    sampler = synthetic_sampler()
    deen = DEEN.augmentation("llcm")
    whole = plan_step(sampler, 0, 1, augment=True, height=64, width=32, augmentation=deen)
    parts = [plan_step(sampler, 0, 1, augment=True, height=64, width=32, rank=r,
                       world_size=2, augmentation=deen) for r in range(2)]
    visible = np.concatenate([p.params.gray[:4] for p in parts])
    infrared = np.concatenate([p.params.gray[4:] for p in parts])
    np.testing.assert_array_equal(np.concatenate([visible, infrared]), whole.params.gray)


# --- read back from pixels ---------------------------------------------------------------------

def colourful_store(count: int = 130, height: int = 64, width: int = 32) -> np.ndarray:
    """Random colour images: no pixel of them is gray by chance (R = G = B: 1 in 65,536)."""
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def augmented(plans, store: np.ndarray, name: str = "fused") -> list[np.ndarray]:
    augmenter = make_augmenter(name, threads=2)
    try:
        return [augmenter(store, p.params, p.samples).float().numpy() for p in plans]
    finally:
        augmenter.close()


def is_gray(image: np.ndarray) -> bool:
    """Un-normalised, R = G = B at every pixel (padding is black, so gray too)."""
    values = np.round((image * STD + MEAN) * 255)
    return bool((values[..., 0] == values[..., 1]).all()
                and (values[..., 1] == values[..., 2]).all())


@pytest.mark.parametrize("name", ["fused", "tensor"])
def test_about_half_the_images_of_each_modality_come_out_gray(name):
    """40 steps of 32 visible and 32 infrared images, no erasing: the gray images read back
    from the pixels are the plan's flags, and about half of each modality (chi-square, p =
    0.001)."""
    plans = deen_plans("sysu", erase_prob=0.0)
    outputs = augmented(plans, colourful_store(), name)
    counts = {"visible": np.zeros(2, int), "infrared": np.zeros(2, int)}
    for plan, out in zip(plans, outputs):
        read = np.array([is_gray(image) for image in out])
        np.testing.assert_array_equal(read, plan.params.gray)
        counts["visible"] += np.bincount(read[:32], minlength=2)
        counts["infrared"] += np.bincount(read[32:], minlength=2)
    for modality, count in counts.items():
        assert count.sum() == 40 * 32
        assert chi_square(count, [0.5, 0.5]) < CHI_SQUARE_1DOF, (modality, count)


def filled_pixels(image: np.ndarray, fill) -> np.ndarray:
    """H×W bool: the pixels whose three channels hold float16 of the fill (no pixel value
    normalises to the fill's G or B, so only erased pixels do)."""
    target = np.asarray(fill, np.float32).astype(np.float16).astype(np.float32)
    return (image == target).all(axis=-1)


@pytest.mark.parametrize("dataset", ["sysu", "llcm"])
def test_erase_boxes_read_back_from_pixels_have_the_datasets_area_and_fill(dataset):
    """The pixels holding DEEN's fill in all three channels are exactly each plan's box (so
    the fill is the authors'), and the boxes' areas lie within the dataset's bounds."""
    plans = deen_plans(dataset, steps=12, erase_prob=1.0)
    low, high = AREAS[dataset]
    outputs = augmented(plans, colourful_store())
    areas = []
    for plan, out in zip(plans, outputs):
        for image, (top, left, h, w) in zip(out, plan.params.erase):
            mask = filled_pixels(image, FILL)
            box = np.zeros(mask.shape, bool)
            box[top:top + h, left:left + w] = True
            np.testing.assert_array_equal(mask, box)
            if h:
                areas.append((mask.sum(), h, w))
    assert len(areas) > 300
    bounds = box_fractions(np.array([(0, 0, h, w) for _, h, w in areas]))
    assert (bounds[:, 1] >= low).all() and (bounds[:, 0] <= high).all()
    assert all(count == h * w for count, h, w in areas)


# --- through the loaders ---------------------------------------------------------------------

def loader_batches(shards, settings: dict, deen: Augmentation, epochs: int = 1):
    sampling = Sampling(batch_ids=4, num_pos=2, seed=3)
    with make_train_loader(settings.pop("kind", "dali"), shards, sampling, Backend(**settings),
                           augmentation=deen) as loader:
        batches = [b for _ in range(epochs) for b in loader]
        plans = [loader.plan(b["epoch"], b["step"]) for b in batches]
    return batches, plans


def _nhwc(batch: dict) -> np.ndarray:
    images = torch.cat([batch["visible"], batch["infrared"]]).permute(0, 2, 3, 1)
    return images.contiguous().numpy()


CPU_ROUTES = {"graph": {"cpu_augment": "dali"}, "decoded": {"cpu_augment": "fused"},
              "host cache": {"cache": "host"}}


@pytest.mark.dali
@pytest.mark.parametrize("settings", CPU_ROUTES.values(), ids=CPU_ROUTES.keys())
def test_every_cpu_route_serves_deens_augmentation_as_the_reference(shard_dir, settings):
    """One epoch of raw SYSU-MM01 shards with DEEN's augmentation: every CPU route of the
    DALI loader gives the reference loader's bits; the plans hold gray images and boxes."""
    shards = shard_dir("sysu", "raw", **SMALL)
    deen = DEEN.augmentation(load_manifest(shards).dataset)
    assert deen.erase_area == (0.2, 0.8)
    expected, plans = loader_batches(shards, {"kind": "reference"}, deen)
    got, _ = loader_batches(shards, dict(settings), deen)
    assert len(got) == len(expected) > 0
    gray = np.concatenate([p.params.gray for p in plans])
    assert 0 < gray.sum() < len(gray) and all(p.params.fill == FILL for p in plans)
    for a, b in zip(got, expected):
        assert (a["epoch"], a["step"]) == (b["epoch"], b["step"])
        assert_bitwise(_nhwc(a), _nhwc(b))


@pytest.mark.dali
def test_a_resumed_loader_draws_the_same_deen_pixels(shard_dir):
    """A loader resumed at a step from its state (and the method's augmentation, which the
    run makes again from its method and data) gives the batches of an uninterrupted one."""
    shards = shard_dir("llcm", "raw", **SMALL)
    deen = DEEN.augmentation(load_manifest(shards).dataset)
    whole, _ = loader_batches(shards, {}, deen)
    sampling = Sampling(batch_ids=4, num_pos=2, seed=3)
    with make_train_loader("dali", shards, sampling, Backend(), augmentation=deen) as first:
        iterator = iter(first)
        next(iterator)
        state = first.state_dict()
    with make_train_loader("dali", shards, sampling, Backend(), augmentation=deen) as again:
        again.load_state_dict(state)
        rest = list(again)
    assert len(rest) == len(whole) - 1
    for a, b in zip(rest, whole[1:]):
        assert_bitwise(_nhwc(a), _nhwc(b))


@pytest.mark.dali
def test_the_cuda_graph_with_gray_has_no_kernel_gap():
    """The GPU training graph with DEEN's gray (and CAJ's mix) as defined: every GPU operator
    has a kernel for its input type (checked without a GPU)."""
    from vireid.loader.dali_augment import PLAIN
    from vireid.loader.dali_graph import graph_nodes, kernel_gaps
    from vireid.loader.dali_pipes import train_pipeline
    from vireid.shards.encode import Encoding

    def never(info):
        raise StopIteration

    for encoding in Encoding:
        pipe = train_pipeline(never, batch_size=4, encoding=encoding, height=64, width=32,
                              device="cuda", device_id=0, num_threads=1, prefetch=2,
                              arguments=(*PLAIN, "mix", "gray"), fill=FILL)
        operators = [node.operator for node in graph_nodes(pipe)]
        assert operators.count("CoordTransform") == 2 and kernel_gaps(pipe) == []


def test_the_runner_gives_the_loader_the_methods_augmentation_for_the_data(shard_dir,
                                                                           tmp_path,
                                                                           monkeypatch):
    """``run_training`` hands the training loader the method's augmentation on the shards'
    dataset: DEEN's on SYSU-MM01 and LLCM, AGW's for AGW."""
    from vireid.train import runner
    from vireid.train.config import TrainConfig

    given = []

    class Stop(Exception):
        pass

    def spy(*args, **kwargs):
        given.append(kwargs.get("augmentation"))
        raise Stop

    monkeypatch.setattr(runner, "make_train_loader", spy)
    for dataset, method in (("sysu", "deen"), ("llcm", "deen"), ("sysu", "agw")):
        shards = shard_dir(dataset, "raw", **SMALL)
        config = TrainConfig.from_flat(shards=str(shards), out=str(tmp_path / dataset / method),
                                       method=method, device="cpu", loader="reference",
                                       pretrained="none", verify=False)
        with pytest.raises(Stop):
            runner.run_training(config)
    assert given == [DEEN.augmentation("sysu"), DEEN.augmentation("llcm"), Augmentation()]
    assert given[0].erase_area == (0.2, 0.8) and given[1].erase_area == (0.02, 0.4)
