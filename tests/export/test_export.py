"""``vireid-export`` to ONNX, then ``vireid-test --model``: for AGW and CAJ checkpoints trained
by vireid and a checkpoint of the original AGW code, the exported graphs give the
checkpoint's table on the shards (within one query's Rank-1 step per trial) and match PyTorch
under onnxruntime within rtol 1e-3, atol 1e-5; DEEN (resnet18, its MFA blocks and DEE not the
identity) exports its six parts within the same tolerance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.export.conftest import assert_same_table, evaluate
from vireid.export.graph import StemGraph
from vireid.export.runtime import ExportedModel, open_runner
from vireid.export.settings import ExportFormat
from vireid.records import Modality
from vireid.shards.tario import sha256_file
from vireid.train.checkpoint_eval import checkpoint_model
from vireid.train.imported import read_model_checkpoint

pytest.importorskip("onnx", reason="needs the export extra: pip install 'vireid[export]'")
ort = pytest.importorskip("onnxruntime",
                          reason="needs the export extra: pip install 'vireid[export]'")

WIDTHS = {"agw": 512, "caj": 512, "original": 2048}  # resnet18 / resnet50 feature widths


def scored(shards, source_option, source, tmp_path, name) -> tuple[list[dict], str]:
    path = tmp_path / f"{name}.json"
    result = evaluate("--shards", shards, source_option, source, "--json", path)
    assert result.exit_code == 0, result.output
    return json.loads(path.read_text()), result.output


@pytest.mark.parametrize("name", ["agw", "caj", "original"])
def test_the_export_gives_the_checkpoints_table(name, checkpoints, exported, tiny_shards,
                                               queries, tmp_path):
    out, result = exported(name, "--shards", str(tiny_shards), "--parity-images", "4")
    assert "wrote" in result.output and "parity: visible.onnx, infrared.onnx match PyTorch" \
        in result.output
    document = json.loads((out / "export.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "infrared.onnx",
                                                    "visible.onnx"]
    assert document["checkpoint"]["sha256"] == sha256_file(checkpoints(name))
    assert document["method"] == ("caj" if name == "caj" else "agw")
    assert [o["name"] for o in document["outputs"]] == ["pool", "fc"]
    assert all(o["shape"] == ["batch", WIDTHS[name]] for o in document["outputs"])
    assert document["flip"] == {**document["flip"], "in_graph": False,
                                "default": name == "caj", "rule": "mean"}
    assert document["input"]["image_size"] == {**document["input"]["image_size"],
                                               "height": 64, "width": 32}
    assert document["parity"]["max_abs_diff"] <= 1e-5
    model_rows, output = scored(tiny_shards, "--model", out, tmp_path, "model")
    assert f"exported model: {out} (onnx)" in output
    assert all(row["exported"] == "onnx" for row in model_rows)
    checkpoint_rows, _ = scored(tiny_shards, "--checkpoint", checkpoints(name), tmp_path,
                                "checkpoint")
    assert {row["feature"] for row in model_rows} == {"pool", "fc"}
    assert all(row["flip"] == (name == "caj") for row in model_rows)  # the method's default
    assert_same_table(model_rows, checkpoint_rows, queries)


def test_onnxruntime_matches_pytorch_on_every_batch_size(checkpoints, exported, tiny_shards):
    """The graph's batch axis is dynamic, and each file holds its own stem."""
    out, _ = exported("agw", "--shards", str(tiny_shards), "--parity-images", "4")
    state = read_model_checkpoint(checkpoints("agw"))
    model = checkpoint_model(state, checkpoints("agw"), torch.device("cpu"), False)
    images = torch.rand(5, 3, 64, 32, generator=torch.Generator().manual_seed(3))
    answers = {}
    for modality in Modality:
        session = ort.InferenceSession(str(out / f"{modality.value}.onnx"),
                                       providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].shape == ["batch", 3, 64, 32]
        with torch.no_grad():
            expected = StemGraph(model, modality)(images)
        for batch in (1, 2, 5):
            got = session.run(None, {"images": images[:batch].numpy()})
            for a, b in zip(got, expected, strict=True):
                np.testing.assert_allclose(a, b[:batch].numpy(), rtol=1e-3, atol=1e-5)
        answers[modality] = got[0]
    assert not np.allclose(answers[Modality.VISIBLE], answers[Modality.INFRARED])


def test_deen_exports_its_six_parts(exported):
    out, result = exported("deen", "--parity-images", "3")  # random images: no --shards
    assert "3 random images per modality" in result.output
    document = json.loads((out / "export.json").read_text())
    assert document["method"] == "deen"
    assert document["scoring"]["rows"] == ["all", "weighted"]
    assert document["flip"] == {**document["flip"], "default": True, "rule": "sum"}
    for output in document["outputs"]:
        assert output["shape"] == ["batch", 1536] and output["l2_normalised"] == "per branch"
        assert [p["columns"] for p in output["parts"]] == [[0, 512], [512, 1024], [1024, 1536]]
    assert document["parity"]["max_abs_diff"] <= 1e-5
    runners = {m: open_runner(out / f"{m.value}.onnx", ExportFormat.ONNX, torch.device("cpu"))
               for m in Modality}
    pool, fc = ExportedModel(runners)(infrared=torch.randn(2, 3, 64, 32))
    norms = pool.unflatten(1, (3, 512)).norm(dim=2)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)  # each part normalised
