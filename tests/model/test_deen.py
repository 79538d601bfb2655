"""DEEN: vireid's network against a literal oracle of the authors' (``deen_oracle``, random
weights with non-zero MFA gains), their checkpoint format, fp16 safety, and the small
ResNet-18 variant that trains on a CPU."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.model.deen_oracle import CNL as OracleCNL
from tests.model.deen_oracle import PNL as OraclePNL
from tests.model.deen_oracle import DEE_module as OracleDEE
from tests.model.deen_oracle import embed_net, randomise, unread
from vireid.errors import VireidError
from vireid.model import DEEN
from vireid.model.deen import orthogonality
from vireid.model.deen_blocks import CNL, DEE, PNL
from vireid.model.original import read_original

CLASSES = 395
SIZE = (64, 32)  # feature maps 16×8, 8×4, 4×2: even H·W everywhere, as PNL needs
VARIANTS = {"full": "sysu", "regdb": "regdb"}  # vireid's variant → the authors' `dataset`
MODALS = {0: ("visible", "infrared"), 1: ("visible",), 2: ("infrared",)}
ATOL = 1e-5


def images(seed: int, batch: int = 2, size=SIZE, scale: float = 1.0):
    generator = torch.Generator().manual_seed(seed)
    return tuple(scale * torch.randn(batch, 3, *size, generator=generator) for _ in range(2))


def per_image(rows: torch.Tensor) -> torch.Tensor:
    """The authors' (3B, C) branch-major rows → vireid's evaluation layout (B, 3C)."""
    return rows.unflatten(0, (3, -1)).transpose(0, 1).flatten(1)


@contextlib.contextmanager
def frozen_statistics(*models):
    """Train mode without moving the BatchNorm running statistics (momentum 0)."""
    norms = [m for model in models for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tmp_path_factory):
    """(variant, oracle, vireid's DEEN loaded from the oracle saved as the authors' train.py
    saves its best model)."""
    variant = request.param
    with torch.device("meta"):
        oracle = embed_net(CLASSES, VARIANTS[variant])
        model = DEEN(CLASSES, "resnet50", variant, pretrained="none")
    oracle = oracle.to_empty(device="cpu")
    randomise(oracle, torch.Generator().manual_seed(0))
    path = tmp_path_factory.mktemp("deen") / f"{VARIANTS[variant]}_deen_p4_n6_lr_0.1_seed_0_best.t"
    torch.save({"net": oracle.state_dict(), "cmc": np.linspace(0.5, 1, 20, dtype=np.float32),
                "mAP": np.float64(0.7), "mINP": np.float64(0.5), "epoch": 120}, path)
    payload = read_original(path)
    model = model.to_empty(device="cpu")
    model.load_state_dict(payload["net"], strict=True)
    assert len(payload["net"]) == len(oracle.state_dict())  # the caller's dict is untouched
    return variant, oracle, model


def forward_both(oracle, model, modal, seed):
    visible, infrared = images(seed)
    given = {name: {"visible": visible, "infrared": infrared}[name] for name in MODALS[modal]}
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)  # the DEE's dropout draws the same mask in both
        expected = oracle(visible, infrared, modal)
        torch.manual_seed(seed)
        return expected, model(**given)


@pytest.mark.parametrize("modal", sorted(MODALS))
def test_evaluation_equals_the_oracle(pair, modal):
    _, oracle, model = pair
    (pool, fc), (got_pool, got_fc) = forward_both(oracle.eval(), model.eval(), modal, modal)
    assert got_pool.shape == (2 * len(MODALS[modal]), 3 * model.features)
    torch.testing.assert_close(got_pool, per_image(pool), rtol=0, atol=ATOL)
    torch.testing.assert_close(got_fc, per_image(fc), rtol=0, atol=ATOL)


@pytest.mark.parametrize("modal", sorted(MODALS))
def test_training_equals_the_oracle_dropout_included(pair, modal):
    _, oracle, model = pair
    with frozen_statistics(oracle, model):
        (pool, logits, ort), (got_pool, got_logits) = forward_both(
            oracle.train(), model.train(), modal, 10 + modal)
    assert got_pool.shape == (6 * len(MODALS[modal]), model.features)
    torch.testing.assert_close(got_pool, pool, rtol=0, atol=ATOL)
    torch.testing.assert_close(got_logits, logits, rtol=0, atol=ATOL)
    torch.testing.assert_close(orthogonality(got_pool), ort, rtol=1e-5, atol=ATOL)


def test_every_mfa_block_shows_in_the_compared_features(pair):
    """Zero W gains would make the MFA blocks vanish from the comparison: the gains are
    non-zero, and zeroing any one block's moves the evaluation features by over 100× the
    tolerance."""
    _, _, model = pair
    blocks = [m for m in model.modules() if isinstance(m, CNL | PNL)]
    assert len(blocks) == 2 * model.stages
    visible, _ = images(1, batch=1)
    with torch.no_grad():
        expected = model.eval()(visible=visible)[0]
        for block in blocks:
            gain = block.W[1].weight.clone()
            assert gain.abs().min() > 0.1
            block.W[1].weight.zero_()
            moved = (model(visible=visible)[0] - expected).abs().max()
            block.W[1].weight.copy_(gain)
            assert moved > 100 * ATOL


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_keys_and_shapes_are_the_authors(variant):
    """Every key vireid builds is the authors', with their shape; the rest of theirs are the
    copies their forward never reads, which loading drops."""
    with torch.device("meta"):
        theirs = embed_net(CLASSES, VARIANTS[variant]).state_dict()
        model = DEEN(CLASSES, "resnet50", variant, pretrained="none")
    own = {key: value.shape for key, value in model.state_dict().items()}
    unused = model.unused_copies()
    assert not own.keys() & unused.keys() and own.keys() | unused.keys() == theirs.keys()
    assert all(theirs[key].shape == shape for key, shape in {**own, **unused}.items())
    assert set(unused) == {key for key in theirs if unread(key, VARIANTS[variant])}


def test_parameter_counts():
    """The authors' SYSU network has 89,044,320 parameters (89.04 M, as measured on their
    modules); 47.0 M of them are unread copies, not built here."""
    def count(module):
        return sum(p.numel() for p in module.parameters())

    with torch.device("meta"):
        assert count(embed_net(395, "sysu")) == 89_044_320
        assert count(embed_net(206, "regdb")) == 75_065_440  # 75.07 M
        assert count(DEEN(395, "resnet50", "full", pretrained="none")) == 42_037_792
        assert count(DEEN(206, "resnet50", "regdb", pretrained="none")) == 13_094_176


def test_an_authors_checkpoint_loads_every_tensor(pair):
    """The fixture loaded the authors'-format file with strict=True: each tensor vireid builds
    holds the value saved under its key."""
    _, oracle, model = pair
    theirs = oracle.state_dict()
    assert all(torch.equal(value, theirs[key]) for key, value in model.state_dict().items())


def test_a_misshapen_unused_copy_is_reported(pair):
    _, oracle, model = pair
    net = {**oracle.state_dict(), "visible_module.visible.layer1.0.conv1.weight": torch.zeros(3)}
    with pytest.raises(RuntimeError, match="Unexpected.*visible_module.visible.layer1.0.conv1"):
        model.load_state_dict(net, strict=True)


@pytest.mark.parametrize("block", ["CNL", "PNL"])
def test_blocks_equal_the_oracles_in_channels_last(block):
    """MFA2's shapes (the stage halves the resolution); vireid's input in channels-last, which
    the authors' ``view`` could not take."""
    torch.manual_seed(0)
    oracle = {"CNL": lambda: OracleCNL(32, 16, flag=1), "PNL": lambda: OraclePNL(32, 16)}[block]()
    ours = {"CNL": lambda: CNL(32, 16, stride=2), "PNL": lambda: PNL(32, 16)}[block]()
    with torch.no_grad():
        oracle.W[1].weight.fill_(0.7)
    ours.load_state_dict(oracle.state_dict())
    high, low = torch.randn(2, 32, 4, 6), torch.randn(2, 16, 8, 12)
    expected = oracle(high, low)
    fmt = torch.channels_last
    got = ours(high.contiguous(memory_format=fmt), low.contiguous(memory_format=fmt))
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)


def test_dee_equals_the_oracles():
    """On a map large enough for every dilation's taps (the network test's 4×2 is not):
    evaluation in channels-last, and training with the dropout on all three parts."""
    torch.manual_seed(0)
    oracle, ours = OracleDEE(16), DEE(16)
    ours.load_state_dict(oracle.state_dict())
    x = torch.randn(2, 16, 8, 6)
    expected = oracle.eval()(x)
    got = ours.eval()(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        expected = oracle.train()(x)
        torch.manual_seed(1)
        got = ours.train()(x)
    assert (expected[:2] == 0).sum() > 0  # the original part is dropped from too
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)


def test_the_pnl_reshape_is_what_the_comparison_checks(monkeypatch):
    """Reading PNL's projections per pixel, (B, C/2, N), instead of the authors' (B, C, N/2)
    gives other outputs: a port without the quirk fails the oracle tests."""
    torch.manual_seed(0)
    oracle, ours = OraclePNL(32, 16), PNL(32, 16)
    with torch.no_grad():
        oracle.W[1].weight.fill_(0.7)
    ours.load_state_dict(oracle.state_dict())
    high, low = torch.randn(2, 32, 4, 6), torch.randn(2, 16, 8, 12)
    monkeypatch.setattr("vireid.model.deen_blocks._paired", lambda x, channels: x.flatten(2))
    assert (ours(high, low) - oracle(high, low)).abs().max() > 1e-2
    monkeypatch.undo()
    with pytest.raises(ValueError, match="even number of positions"):
        ours(torch.randn(1, 32, 3, 3), torch.randn(1, 16, 3, 3))


def test_fp16_autocast_with_large_inputs_stays_finite(monkeypatch):
    """Inputs ×10 through a freshly initialised network in eval mode: affinity products far past
    fp16's 65,504 (recorded, so the test is not vacuous), features finite and close to fp32's."""
    torch.manual_seed(0)
    model = DEEN(CLASSES, "resnet50", "full", pretrained="none").eval()
    visible, infrared = images(3, scale=10.0)
    peak, bmm = [0.0], torch.bmm

    def recording_bmm(a, b):
        out = bmm(a, b)
        peak[0] = max(peak[0], out.detach().abs().max().item())
        return out

    with torch.no_grad():
        expected = model(visible, infrared)
        monkeypatch.setattr(torch, "bmm", recording_bmm)
        with torch.autocast("cpu", dtype=torch.float16):
            got = model(visible, infrared)
    assert peak[0] > 10 * torch.finfo(torch.float16).max
    for a, b in zip(got, expected):
        assert a.isfinite().all()
        torch.testing.assert_close(a.float(), b, rtol=0, atol=2e-3)


@pytest.mark.gpu
def test_cuda_fp16_autocast_with_large_inputs_stays_finite():
    torch.manual_seed(0)
    model = DEEN(CLASSES, "resnet50", "full", pretrained="none").eval()
    visible, infrared = images(3, size=(384, 144), scale=10.0)
    with torch.no_grad():
        expected = model(visible, infrared)
        model = model.cuda().to(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.float16):
            got = model(visible.cuda(), infrared.cuda())
    for a, b in zip(got, expected):
        assert a.isfinite().all()
        torch.testing.assert_close(a.float().cpu(), b, rtol=0, atol=5e-3)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_small_variant_trains(variant):
    """ResNet-18 widths (64/128/256/512): forward and backward, every parameter but the frozen
    BN bias gets a gradient (DistributedDataParallel needs no unused parameters)."""
    torch.manual_seed(0)
    model = DEEN(7, "resnet18", variant, pretrained="none")
    width = {"full": 256, "regdb": 128}[variant]
    assert (model.DEE.FC11.in_channels, model.features) == (width, 2 * width)
    assert (model.MFA1.CNL.theta.in_channels, model.MFA2.CNL.theta.out_channels) == (64, 64)
    visible, infrared = images(4)
    labels = torch.tensor([0, 1, 2, 3]).repeat(3)  # [vis | ir] per branch
    pooled, logits = model(visible, infrared)
    assert pooled.shape == (12, 2 * width) and logits.shape == (12, 7)
    (F.cross_entropy(logits, labels) + 0.01 * orthogonality(pooled)).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == [] and not model.bottleneck.bias.requires_grad
    model.eval()
    with torch.no_grad():
        pool, fc = model(visible, infrared)
        alone, _ = model(visible=visible)
    assert pool.shape == fc.shape == (4, 6 * width)
    norms = pool.unflatten(1, (3, -1)).norm(dim=2)
    torch.testing.assert_close(norms, torch.ones(4, 3))
    torch.testing.assert_close(pool[:2], alone, rtol=0, atol=1e-5)  # eval: batches do not mix


def test_channels_last_gives_the_same_features():
    torch.manual_seed(0)
    model = DEEN(7, "resnet18", "full", pretrained="none").eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, CNL | PNL):
                module.W[1].weight.fill_(0.5)
        visible, infrared = images(5)
        expected = model(visible, infrared)
        model = model.to(memory_format=torch.channels_last)
        got = model(*(x.contiguous(memory_format=torch.channels_last) for x in (visible, infrared)))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_initialisation_and_parameter_groups():
    torch.manual_seed(0)
    model = DEEN(7, "resnet18", "full", pretrained="none").eval()
    high, low = torch.randn(2, 64, 16, 8), torch.randn(2, 64, 16, 8)
    with torch.no_grad():
        assert torch.equal(model.MFA1(high, low), high)  # zero-gain W: a new block is the identity
    fan_in = model.DEE.FC12.weight[0].numel()
    assert abs(model.DEE.FC12.weight.std().item() * fan_in ** 0.5 / 2 ** 0.5 - 1) < 0.1
    assert abs(model.classifier.weight.std().item() / 1e-3 - 1) < 0.1
    groups = {g["name"]: g for g in model.param_groups(0.1)}
    assert {n: g["lr"] for n, g in groups.items()} == pytest.approx(
        {"backbone": 0.01, "bottleneck": 0.1, "classifier": 0.1})
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable) and len(set(grouped)) == len(grouped)
    backbone = {id(p) for p in groups["backbone"]["params"]}
    assert {id(p) for p in [*model.DEE.parameters(), *model.MFA3.parameters()]} <= backbone


def test_bad_choices_are_one_line_errors():
    with pytest.raises(VireidError, match="variant"):
        DEEN(7, "resnet18", "sysu", pretrained="none")
    with pytest.raises(VireidError, match="arch"):
        DEEN(7, "resnet34", "full", pretrained="none")
