"""The AGW network: shapes, exact parameter counts, initialisation, layers, weights."""

from __future__ import annotations

import pytest
import torch

from vireid.errors import VireidError
from vireid.model import build_model, list_models
from vireid.model.layers import GeM, NonLocal
from vireid.train.methods import get_method, list_methods


def count(model, trainable_only=False):
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return build_model(7, arch="resnet18", pretrained="none")


def test_parameter_counts_equal_the_originals_forward_pass():
    agw = get_method("agw").build_model(395, "resnet50", pretrained="none")
    assert count(agw) == 24_359_311
    assert count(agw, trainable_only=True) == 24_357_263
    assert count(get_method("base").build_model(395, "resnet50", pretrained="none")) == \
        24_330_624


@pytest.mark.parametrize("arch", list_models())
def test_shapes_in_train_and_eval(arch):
    model = build_model(5, arch=arch, pretrained="none")
    features = {"resnet50": 2048, "resnet18": 512}[arch]
    visible, infrared = torch.randn(2, 3, 64, 32), torch.randn(3, 3, 64, 32)
    pooled, logits = model(visible, infrared)
    assert pooled.shape == (5, features) and logits.shape == (5, 5)
    model.eval()
    with torch.no_grad():
        pool, fc = model(infrared=infrared)
        assert pool.shape == fc.shape == (3, features)
        assert torch.allclose(pool.norm(dim=1), torch.ones(3), atol=1e-5)
        assert torch.allclose(fc.norm(dim=1), torch.ones(3), atol=1e-5)
        alone, _ = model(visible=visible)
        both, _ = model(visible, infrared)
    assert torch.allclose(both[:2], alone, atol=1e-5)  # eval: batches do not mix


def test_modalities_use_their_own_stems(small):
    small.eval()
    image = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        small.backbone.infrared_stem[0].weight.add_(0.5)
        as_visible, _ = small(visible=image)
        as_infrared, _ = small(infrared=image)
        small.backbone.infrared_stem[0].weight.sub_(0.5)
    assert not torch.allclose(as_visible, as_infrared)


def test_every_trainable_parameter_gets_a_gradient(small):
    small.train()
    pooled, logits = small(torch.randn(4, 3, 64, 32), torch.randn(4, 3, 64, 32))
    (pooled.sum() + logits.sum()).backward()
    missing = [n for n, p in small.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert not small.head.bottleneck.bias.requires_grad
    small.zero_grad(set_to_none=True)


def test_head_initialisation():
    torch.manual_seed(1)
    head = build_model(395, "resnet50", pretrained="none").head
    assert abs(head.bottleneck.weight.mean().item() - 1.0) < 0.005
    assert abs(head.bottleneck.weight.std().item() - 0.01) < 0.002
    assert torch.all(head.bottleneck.bias == 0)
    assert abs(head.classifier.weight.std().item() - 0.001) < 0.0001
    assert head.classifier.bias is None


def test_non_local_is_identity_at_init_and_equals_the_naive_product():
    torch.manual_seed(2)
    block = NonLocal(16).eval()
    x = torch.randn(2, 16, 6, 5)
    assert torch.allclose(block(x), x)
    torch.nn.init.normal_(block.out[1].weight)
    torch.nn.init.normal_(block.out[1].bias)
    theta = block.theta(x).flatten(2).transpose(1, 2)
    phi = block.phi(x).flatten(2)
    g = block.g(x).flatten(2).transpose(1, 2)
    f = theta @ phi / 30  # the original's (H·W)×(H·W) matrix
    y = (f @ g).transpose(1, 2).reshape(2, 1, 6, 5)
    assert torch.allclose(block(x), x + block.out(y), atol=1e-5)


def test_gem_formula_and_float16_safety():
    x = torch.rand(2, 4, 3, 3) * 5
    expected = (x.pow(3).mean(dim=(2, 3)) + 1e-12).pow(1 / 3)
    assert torch.allclose(GeM()(x), expected)
    big = torch.full((1, 2, 4, 4), 100.0, dtype=torch.float16)  # 100³ overflows float16
    with torch.autocast("cpu", dtype=torch.float16):
        pooled = GeM()(big)
    assert pooled.dtype == torch.float32 and torch.allclose(pooled, torch.full((1, 2), 100.0))


def test_param_groups_follow_the_original(small):
    groups = small.param_groups(0.1)
    assert [g["lr"] for g in groups] == [pytest.approx(0.01), 0.1, 0.1]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in small.parameters() if p.requires_grad}
    head = {id(p) for p in small.head.parameters()}
    assert not head & {id(p) for p in groups[0]["params"]}
    non_local = {id(p) for n, p in small.named_parameters() if ".theta." in n}
    assert non_local and non_local <= {id(p) for p in groups[0]["params"]}


def test_channels_last_bf16_forward_is_finite(small):
    model = small.to(memory_format=torch.channels_last).train()
    x = torch.randn(4, 3, 64, 32).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled, logits = model(x, x)
    assert pooled.dtype == torch.float32
    assert torch.isfinite(pooled).all() and torch.isfinite(logits.float()).all()


def test_missing_imagenet_weights_stop_before_training(monkeypatch, tmp_path, capsys):
    """Offline and no cached weights: one line naming the file to pass, not a warning and
    81 epochs from random weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache; no network here
    with pytest.raises(VireidError, match=r"^pretrained: ImageNet weights for resnet18 cannot "
                                          r"be had .*give a local file instead: torchvision's "
                                          r"resnet18 IMAGENET1K_V1 state dict \(resnet18-"):
        build_model(3, "resnet18", pretrained="torchvision")
    assert capsys.readouterr().err == ""


def test_a_mistyped_weights_path_is_refused(tmp_path):
    """Training 81 epochs from random weights because of a typo is never what was meant."""
    with pytest.raises(VireidError, match=r"absent.pth: pretrained weights not found"):
        build_model(3, "resnet18", pretrained=str(tmp_path / "absent.pth"))


def test_local_weights_load_into_both_stems_and_bad_ones_are_refused(tmp_path):
    import torchvision

    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    model = build_model(3, "resnet18", pretrained=str(path))
    for stem in (model.backbone.visible_stem, model.backbone.infrared_stem):
        assert torch.equal(stem[0].weight, source.conv1.weight)
    assert torch.equal(model.backbone.trunk[3][1].conv2.weight, source.layer4[1].conv2.weight)
    with pytest.raises(VireidError, match="r18.pth.*do not fit"):
        build_model(3, "resnet50", pretrained=str(path))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(VireidError, match="garbage.pth"):
        build_model(3, "resnet18", pretrained=str(garbage))


def test_unknown_arch_and_method():
    with pytest.raises(VireidError, match="architecture"):
        build_model(3, arch="vit")
    with pytest.raises(VireidError,
                       match=r"^method: unknown choice 'sift' \(agw, base, caj, deen\)$"):
        get_method("sift")
    with pytest.raises(VireidError, match="pooling"):
        build_model(3, pooling="max")


def test_methods_come_from_the_registry():
    assert list_methods() == ["agw", "base", "caj", "deen"]
    agw, base = get_method("agw"), get_method("base")
    assert (agw.non_local, agw.pooling, agw.epochs) == (True, "gem", 81)
    assert (base.non_local, base.pooling) == (False, "avg")
