"""The augmenter family (``vireid.loader.augmenters``): every member, on every device it runs
on, against the reference (PIL + torchvision, the original's transforms) on the same images
and parameters, bit for bit.

The one exception: a gray channel mix of normalised values, which each member computes from
its own float32 normalisation (equal once rounded to float16), may round one float16 step
apart. The members that share the fused kernel's float32 formula (``AugmentParams``:
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


def numpy_oracle(images: np.ndarray, params: AugmentParams) -> np.ndarray:
    """AugmentParams' docstring, one image at a time in numpy float32: pad → crop → flip →
    x·scale then + bias → erase box = fill → (M[c,0]·x0 + M[c,1]·x1) + M[c,2]·x2 → float16."""
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


@pytest.mark.parametrize("name, device", members(FORMULA))
def test_the_formula_members_are_exact_for_any_matrix(name, device):
    rng = np.random.default_rng(4)
    images = _random(rng, 48, 37, 23)
    for params in (mixed_params(rng, 48, 37, 23), draw_params(rng, 48, 37, 23)):
        assert_bitwise(_run(name, device, images, params), numpy_oracle(images, params))


@pytest.mark.parametrize("name, device", members() + members([ORACLE]))
def test_rows_gather_the_batch_from_a_store(name, device):
    """``augmenter(store, params, rows)`` is ``augmenter(store[rows], params)``, the store
    on the host or (CUDA) on the device."""
    rng = np.random.default_rng(5)
    store = _random(rng, 30, 37, 23)
    rows = rng.integers(0, 30, 12)
    params = draw_params(rng, 12, 37, 23)
    expected = _run(name, device, store[rows], params)
    stores = [torch.from_numpy(store)] + ([torch.from_numpy(store).cuda()]
                                          if device == "cuda" else [])
    for where in stores:
        assert_bitwise(_run(name, device, where, params, rows), expected)


def test_a_member_refuses_a_device_it_does_not_run_on():
    with pytest.raises(ValueError, match="the fused augmenter runs on cpu, not cuda"):
        make_augmenter("fused", device="cuda")
