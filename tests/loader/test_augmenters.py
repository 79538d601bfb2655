"""The augmenter family (``vireid.loader.augmenters``): every member, on every device it runs
on, against the reference (PIL + torchvision, the original's transforms) on the same images
and parameters, bit for bit.

The one exception: CAJ's gray channel mix of normalised values, which each member computes
from its own float32 normalisation (equal once rounded to float16), may round one float16
step apart. DEEN's gray (PIL's integer luma on the uint8 pixels) is exact in every member.
The members that share the fused kernel's float32 formula (``AugmentParams``:
``x·scale + bias``, then ``(M[c,0]·x0 + M[c,1]·x1) + M[c,2]·x2``) are also held to that
formula exactly, for any matrix. A new view kind adds a case to ``CASES``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.loader.test_fused import CORNERS, ERASE_BOXES, assert_bitwise, grid
from vireid.constants import IMAGENET_MEAN, IMAGENET_STD
from vireid.loader.augment import (
    CAJ_ERASE_FILL,
    GRAY_WEIGHTS,
    PAD,
    AugmentParams,
    draw_adaptive_gray,
    draw_channel_exchange,
    draw_params,
    identity_params,
)
from vireid.loader.augmenters import AUGMENTERS, list_augmenters, make_augmenter
from vireid.train.methods import get_method

DEEN_SYSU = get_method("deen").augmentation("sysu")  # gray 0.5, area 0.2-0.8, ImageNet fill

ORACLE = "reference"
FORMULA = ("fused", "tensor")  # the members computing in the kernel's float32 formula


def members(names=None) -> list:
    """(member, device) of the family, but the oracle: DALI and GPU marks where needed."""
    params = []
    for name in names or [n for n in list_augmenters() if n != ORACLE]:
        entry = AUGMENTERS[name]
        for device in entry.devices:
            marks = ([pytest.mark.dali] if entry.dali else []) + \
                ([pytest.mark.gpu] if device == "cuda" else [])
            params.append(pytest.param(name, device, id=f"{name}-{device}", marks=marks))
    return params


def pil_luma(pixels: np.ndarray) -> np.ndarray:
    """PIL's convert('L') of uint8 …×3 pixels, its integer formula (checked against PIL on
    every colour in test_deen_augment.py)."""
    wide = pixels.astype(np.int64)
    return ((19595 * wide[..., 0] + 38470 * wide[..., 1] + 7471 * wide[..., 2] + 32768)
            >> 16).astype(np.uint8)


def numpy_oracle(images: np.ndarray, params: AugmentParams) -> np.ndarray:
    """AugmentParams' docstring, one image at a time in numpy float32: pad → crop → flip →
    (gray: PIL's luma in all channels) → x·scale then + bias → erase box = fill →
    (M[c,0]·x0 + M[c,1]·x1) + M[c,2]·x2 → float16."""
    mean, std = np.float32(IMAGENET_MEAN), np.float32(IMAGENET_STD)
    scale = (np.float32(1) / (np.float32(255) * std)).astype(np.float32)
    bias = (-mean / std).astype(np.float32)
    count, height, width, _ = images.shape
    result = np.empty(images.shape, np.float16)
    for n in range(count):
        padded = np.pad(images[n], ((PAD, PAD), (PAD, PAD), (0, 0)))
        crop = padded[params.top[n]:params.top[n] + height, params.left[n]:params.left[n] + width]
        if params.flip[n]:
            crop = crop[:, ::-1]
        if params.gray is not None and params.gray[n]:
            crop = np.repeat(pil_luma(crop)[..., None], 3, axis=-1)
        x = crop.astype(np.float32) * scale
        x = x + bias
        top, left, h, w = params.erase[n]
        x[top:top + h, left:left + w] = np.float32(params.fill)
        if params.mix is not None:
            m = params.mix[n]
            x = np.stack([(m[c, 0] * x[..., 0] + m[c, 1] * x[..., 1]) + m[c, 2] * x[..., 2]
                          for c in range(3)], axis=-1)
        result[n] = x.astype(np.float16)
    return result


def mixed_params(rng, count: int, height: int, width: int, arbitrary: bool = True):
    """Erase boxes with CAJ's fill and CAJ's channel matrices (many grays); ``arbitrary``:
    the first matrix any 3×3 (the formula's members take any, the reference CAJ's only)."""
    p = draw_params(rng, count, height, width, erase_prob=0.8)
    half = count // 2
    mix = np.concatenate([draw_channel_exchange(rng, half),
                          draw_adaptive_gray(rng, count - half, probability=0.9)])
    if arbitrary:
        mix[0] = rng.normal(size=(3, 3)).astype(np.float32)
    return AugmentParams(p.top, p.left, p.flip, p.erase, mix, CAJ_ERASE_FILL)


def _random(rng, count: int, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def _drawn():
    rng = np.random.default_rng(1)
    return _random(rng, 24, 64, 32), draw_params(rng, 24, 64, 32)


def _every_value():
    """All 3×256 pixel values (another order per channel) under identity parameters."""
    values = np.arange(256, dtype=np.uint8)
    pixels = np.stack([values, values[::-1], np.random.default_rng(0).permutation(values)], 1)
    return pixels.reshape(1, 16, 16, 3), identity_params(1)


def _channel_views():
    rng = np.random.default_rng(2)
    return _random(rng, 48, 37, 23), mixed_params(rng, 48, 37, 23, arbitrary=False)


def _fill_without_mixing():
    rng = np.random.default_rng(3)
    p = draw_params(rng, 16, 37, 23, erase_prob=1.0)
    return _random(rng, 16, 37, 23), AugmentParams(p.top, p.left, p.flip, p.erase,
                                                   fill=CAJ_ERASE_FILL)


def deen_params(rng, count: int, height: int, width: int, gray=None) -> AugmentParams:
    """DEEN's augmentation on SYSU-MM01: its erase area and fill, gray flags mixed."""
    p = draw_params(rng, count, height, width, erase_prob=0.8,
                    erase_area=DEEN_SYSU.erase_area)
    gray = np.arange(count) % 3 != 0 if gray is None else gray
    return AugmentParams(p.top, p.left, p.flip, p.erase, fill=DEEN_SYSU.fill, gray=gray)


def _deen():
    rng = np.random.default_rng(6)
    return _random(rng, 36, 37, 23), deen_params(rng, 36, 37, 23)


def _gray_every_colour_edge():
    """Gray (and not) on every colour made of the values 0, 1, 2, 127, 128, 129, 253, 254,
    255, every crop corner, both flips; DEEN's erasing."""
    values = np.array([0, 1, 2, 127, 128, 129, 253, 254, 255], np.uint8)
    colours = np.stack(np.meshgrid(values, values, values, indexing="ij"), -1).reshape(27, 27, 3)
    images = np.repeat(colours[None], 18, axis=0)
    rng = np.random.default_rng(7)
    params = deen_params(rng, 18, 27, 27, gray=np.arange(18) % 2 == 0)
    top, left = np.array(CORNERS * 2, np.int32).T
    return images, AugmentParams(top, left, np.arange(18) >= 9, params.erase, None,
                                 params.fill, params.gray)


def _gray_without_fill():
    """Gray flags with AGW's zero fill: the fused kernel's one-pass float16 path."""
    rng = np.random.default_rng(8)
    p = draw_params(rng, 16, 37, 23, erase_prob=0.8)
    return _random(rng, 16, 37, 23), AugmentParams(p.top, p.left, p.flip, p.erase,
                                                   gray=np.arange(16) % 2 == 1)


CASES = {
    "drawn": _drawn,
    "every value": _every_value,
    # every crop corner (border crops), both flips, every erase box, 0/255/random pixels
    "borders": lambda: grid(CORNERS, (False, True), list(ERASE_BOXES.values())),
    "narrower than the padding": lambda: grid([(0, 0), (20, 20), (10, 0), (10, 20)],
                                              (False, True), [(0, 0, 0, 0)], height=9,
                                              width=7),
    "channel views": _channel_views,
    "erase fill without mixing": _fill_without_mixing,
    "deen": _deen,
    "deen gray on colour edges": _gray_every_colour_edge,
    "gray without fill": _gray_without_fill,
}


def is_gray(mix: np.ndarray) -> bool:
    return np.array_equal(mix, np.tile(np.asarray(GRAY_WEIGHTS, np.float32), (3, 1)))


def assert_reference_pixels(got: np.ndarray, expected: np.ndarray, params: AugmentParams):
    """Bit for bit, but gray mixes: within one float16 step (near zero: a few subnormal
    steps, under 1e-6)."""
    gray = np.array([params.mix is not None and is_gray(params.mix[n])
                     for n in range(len(params))])
    assert_bitwise(got[~gray], expected[~gray])
    step = np.spacing(np.abs(expected[gray])).astype(np.float32) + 1e-6
    assert (np.abs(got[gray].astype(np.float32) - expected[gray]) <= step).all()


def _run(name: str, device: str, images, params, rows=None) -> np.ndarray:
    augmenter = make_augmenter(name, device=device, threads=2)
    try:
        out = augmenter(images, params, rows)
        assert out.dtype == torch.float16 and out.device.type == device
        return out.cpu().contiguous().numpy().copy()
    finally:
        augmenter.close()


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("name, device", members())
def test_every_member_gives_the_reference_pixels(name, device, case):
    images, params = case()
    expected = _run(ORACLE, "cpu", images, params)
    got = _run(name, device, images, params)
    assert got.shape == images.shape
    assert_reference_pixels(got, expected, params)


def test_the_channel_case_has_grays_and_exchanges():
    _, params = _channel_views()
    grays = sum(is_gray(m) for m in params.mix)
    assert 3 <= grays < len(params.mix) and (params.erase[:, 2] > 0).sum() > 10


@pytest.mark.parametrize("case", [_deen, _gray_every_colour_edge, _gray_without_fill])
def test_the_gray_cases_have_gray_and_colour_images_and_boxes(case):
    """Each gray case holds both kinds of image and erase boxes, and its gray images differ
    from the same images without gray (so a member ignoring the flag fails)."""
    images, params = case()
    assert 0 < params.gray.sum() < len(params) and (params.erase[:, 2] > 0).sum() >= 4
    plain = AugmentParams(params.top, params.left, params.flip, params.erase, None,
                          params.fill)
    grayed, colour = numpy_oracle(images, params), numpy_oracle(images, plain)
    differs = (grayed != colour).reshape(len(params), -1).any(axis=1)
    np.testing.assert_array_equal(differs, params.gray)


@pytest.mark.parametrize("name, device", members(FORMULA))
def test_the_formula_members_are_exact_for_any_matrix(name, device):
    rng = np.random.default_rng(4)
    images = _random(rng, 48, 37, 23)
    mixed = mixed_params(rng, 48, 37, 23)
    gray_and_mix = AugmentParams(mixed.top, mixed.left, mixed.flip, mixed.erase, mixed.mix,
                                 DEEN_SYSU.fill, rng.random(48) < 0.5)
    for params in (mixed, draw_params(rng, 48, 37, 23), deen_params(rng, 48, 37, 23),
                   gray_and_mix):
        assert_bitwise(_run(name, device, images, params), numpy_oracle(images, params))


@pytest.mark.parametrize("name, device", members() + members([ORACLE]))
def test_rows_gather_the_batch_from_a_store(name, device):
    """``augmenter(store, params, rows)`` is ``augmenter(store[rows], params)``, the store
    on the host or (CUDA) on the device."""
    rng = np.random.default_rng(5)
    store = _random(rng, 30, 37, 23)
    rows = rng.integers(0, 30, 12)
    for params in (draw_params(rng, 12, 37, 23), deen_params(rng, 12, 37, 23)):
        expected = _run(name, device, store[rows], params)
        stores = [torch.from_numpy(store)] + ([torch.from_numpy(store).cuda()]
                                              if device == "cuda" else [])
        for where in stores:
            assert_bitwise(_run(name, device, where, params, rows), expected)


def test_a_member_refuses_a_device_it_does_not_run_on():
    with pytest.raises(ValueError, match="the fused augmenter runs on cpu, not cuda"):
        make_augmenter("fused", device="cuda")
