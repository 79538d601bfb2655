"""Checkpoints of the original AGW code: read, detected, mapped onto vireid's model and checked
against an oracle of the original network (``original_oracle.embed_net``, random weights)."""

from __future__ import annotations

import collections
import copy
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from tests.model.original_oracle import embed_net, original_loss, randomise
from vireid.errors import VireidError
from vireid.model import load_original
from vireid.model.layers import GeM, NonLocal
from vireid.model.original import is_original, original_to_vireid, read_original
from vireid.train.methods import get_method

CLASSES = 395
LABELS = torch.tensor([0, 1, 0, 1])  # visible 0, 1 then infrared 0, 1


@pytest.fixture(scope="module")
def oracle():
    torch.manual_seed(0)
    net = embed_net(CLASSES)
    randomise(net, torch.Generator().manual_seed(0))
    return net.eval()


@pytest.fixture(scope="module")
def saved(oracle, tmp_path_factory) -> Path:
    """The oracle saved as the original's train.py does."""
    path = tmp_path_factory.mktemp("original") / "sysu_agw_p4_n8_lr_0.1_seed_0_best.t"
    torch.save({"net": oracle.state_dict(), "cmc": np.linspace(0.5, 1.0, 20, dtype=np.float32),
                "mAP": np.mean(np.array([0.4, 0.5])), "mINP": np.float64(0.3), "epoch": 78},
               path)
    return path


@pytest.fixture(scope="module")
def loaded(saved):
    return load_original(saved)


def images(seed: int, size=(64, 32)) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(2, 3, *size, generator=generator) for _ in range(2))


def one_line_error(call, *args) -> str:
    with pytest.raises(VireidError) as caught:
        call(*args)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_the_loaded_model_gives_the_originals_eval_features(oracle, loaded):
    visible, infrared = images(1)
    assert not loaded.training
    with torch.no_grad():
        for expected, got in ((oracle(visible, infrared, modal=1), loaded(visible=visible)),
                              (oracle(visible, infrared, modal=2), loaded(infrared=infrared))):
            for a, b in zip(expected, got):  # "pool" and "fc"
                torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    assert isinstance(loaded.pool, GeM) and len(loaded.head.classifier.weight) == CLASSES


def literal_nonlocal(self, x):
    """vireid's NonLocal with the original's order of operations: (θᵀφ/N)·g."""
    batch = x.size(0)
    g = self.g(x).flatten(2).transpose(1, 2)
    f = torch.matmul(self.theta(x).flatten(2).transpose(1, 2), self.phi(x).flatten(2))
    y = torch.matmul(f / f.size(-1), g).transpose(1, 2).reshape(batch, -1, *x.shape[2:])
    return self.out(y) + x


def train_outputs(oracle, saved, seed):
    original, model = copy.deepcopy(oracle).train(), load_original(saved).train()
    visible, infrared = images(seed)
    return original(visible, infrared), model(visible, infrared)


def test_training_forward_is_the_originals_with_its_order_of_operations(
        oracle, saved, monkeypatch):
    """With the original's arithmetic order in the non-local blocks, the training forward
    (batch statistics in every BatchNorm) equals the original's to float rounding."""
    monkeypatch.setattr(NonLocal, "forward", literal_nonlocal)
    (pooled, logits), (got_pooled, got_logits) = train_outputs(oracle, saved, 2)
    torch.testing.assert_close(got_pooled, pooled, rtol=0, atol=1e-6)
    torch.testing.assert_close(got_logits, logits, rtol=0, atol=1e-6)
    got = get_method("agw").losses(got_pooled, got_logits, LABELS)["total"]
    torch.testing.assert_close(got, original_loss(pooled, logits, LABELS), rtol=0, atol=1e-5)


def test_training_loss_equals_the_originals(oracle, saved):
    """vireid's non-local block evaluates θᵀ(φ·gᵀ)/N, the same maths re-associated; batch-of-4
    BatchNorm statistics magnify that rounding to ~1e-5 of the logits' scale, so the
    features are compared relative to their scale and the loss to 1e-5 of its value."""
    (pooled, logits), (got_pooled, got_logits) = train_outputs(oracle, saved, 3)
    for got, expected in ((got_pooled, pooled), (got_logits, logits)):
        assert (got - expected).abs().max() < 1e-4 * expected.abs().max()
    got = get_method("agw").losses(got_pooled, got_logits, LABELS)["total"]
    expected = original_loss(pooled, logits, LABELS)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_mapping_result(oracle):
    net = oracle.state_dict()
    state, classes, arch, method = original_to_vireid(net)
    assert (classes, arch, method) == (CLASSES, "resnet50", "agw")
    assert len(state) == 395  # of the original's 1025 entries: the unused copies are dropped
    assert state["backbone.trunk.2.6.out.1.weight"] is net["NL_3.1.W.1.weight"]
    assert state["backbone.trunk.2.5.conv1.weight"] is net["base_resnet.base.layer3.4.conv1.weight"]
    assert state["backbone.infrared_stem.1.bias"] is net["thermal_module.thermal.bn1.bias"]


def test_without_non_local_blocks_it_is_the_base_method(oracle):
    net = {k: v for k, v in oracle.state_dict().items() if not k.startswith("NL_")}
    state, classes, _, method = original_to_vireid(net)
    assert (classes, method) == (395, "base")
    base = get_method("base").build_model(395, "resnet50", pretrained="none")
    base.load_state_dict(state)  # strict: every key fits


@pytest.mark.parametrize("key", ["NL_3.2.W.1.running_var", "classifier.weight",
                                 "visible_module.visible.layer4.2.bn3.weight",
                                 "base_resnet.base.bn1.num_batches_tracked"])
def test_a_missing_key_is_named(oracle, key):
    net = dict(oracle.state_dict())
    del net[key]
    assert key in one_line_error(original_to_vireid, net)


@pytest.mark.parametrize("key", ["NL_4.0.g.0.weight", "visible_module.visible.fc.weight",
                                 "module.classifier.weight"])
def test_an_unexpected_key_is_named(oracle, key):
    net = {**oracle.state_dict(), key: torch.zeros(3)}
    assert f"unexpected key '{key}'" in one_line_error(original_to_vireid, net)


def test_a_misshapen_key_is_named(oracle):
    net = {**oracle.state_dict(), "base_resnet.base.layer3.0.conv2.weight": torch.zeros(3, 3)}
    message = one_line_error(original_to_vireid, net)
    assert "base_resnet.base.layer3.0.conv2.weight" in message and "(3, 3)" in message


def test_numpy_metrics_are_read_as_saved(saved):
    payload = read_original(saved)
    assert payload["cmc"].dtype == np.float32 and payload["cmc"][-1] == 1.0
    assert isinstance(payload["mAP"], np.float64) and payload["epoch"] == 78
    with pytest.raises(pickle.UnpicklingError):  # the allowlist does not outlive the call
        torch.load(saved, weights_only=True)


def test_a_file_written_under_numpy_1_is_read(tmp_path):
    """numpy 1.x pickles name numpy.core.multiarray; the legacy (pre-zip) torch format lets
    the test write those names itself."""
    path = tmp_path / "old.t"
    torch.save({"cmc": np.ones(3, np.float64), "mAP": np.float32(0.25)}, path,
               _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    assert b"numpy._core.multiarray" in data
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    payload = read_original(path)
    assert payload["cmc"].tolist() == [1.0, 1.0, 1.0] and payload["mAP"] == np.float32(0.25)


def _touch(path: str) -> None:
    Path(path).touch()


class Evil:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return _touch, (self.marker,)


class Net(collections.OrderedDict):
    pass


def test_code_in_a_pickle_is_refused_and_not_run(tmp_path):
    path, marker = tmp_path / "evil_best.t", tmp_path / "ran"
    torch.save({"net": {}, "cmc": Evil(marker)}, path)
    message = one_line_error(read_original, path)
    assert message.startswith(str(path)) and "could run code" in message and "_touch" in message
    assert not marker.exists()
    torch.load(path, weights_only=False)  # what the refusal prevented
    assert marker.exists()


@pytest.mark.parametrize("value", [Net(a=torch.zeros(1)), _touch, np.arange(3)],
                         ids=["dict-subclass", "function", "int64-array"])
def test_anything_but_tensors_numbers_and_numpy_floats_is_refused(tmp_path, value):
    path = tmp_path / "other.t"
    torch.save({"net": value}, path)
    assert "could run code" in one_line_error(read_original, path)


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint\n", b"PK\x03\x04broken"])
def test_a_file_that_is_no_checkpoint_is_one_line(tmp_path, content):
    path = tmp_path / "notes.t"
    path.write_bytes(content)
    assert "not a torch checkpoint" in one_line_error(read_original, path)
    assert "not found" in one_line_error(read_original, tmp_path / "missing.t")


def test_the_format_is_told_by_content(saved, loaded, tmp_path):
    assert is_original(read_original(saved))
    vireid = {"format": "vireid.checkpoint/1", "model": loaded.state_dict(), "epoch": 3}
    resnet = torchvision.models.resnet50(weights=None).state_dict()
    assert not is_original(vireid)
    assert not is_original(resnet) and not is_original({"net": resnet})
    path = tmp_path / "last.pt"  # a vireid checkpoint, named like the original's or not
    torch.save({"format": "vireid.checkpoint/1", "model": {"w": torch.zeros(1)}}, path)
    assert "not a checkpoint of the original AGW code" in one_line_error(load_original, path)
