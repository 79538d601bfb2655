"""``vireid-export --format torchscript``: visible.pt and infrared.pt, loaded by torch.jit.load
alone, give the checkpoint's table through ``vireid-test --model`` (no onnx packages
needed)."""

from __future__ import annotations

import json

import torch

from tests.export.conftest import assert_same_table, evaluate
from vireid.export.runtime import open_runner
from vireid.export.settings import ExportFormat


def test_torchscript_export_gives_the_checkpoints_table(checkpoints, torchscript_export,
                                                       tiny_shards, queries, tmp_path):
    out, result = torchscript_export
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "infrared.pt",
                                                    "visible.pt"]
    document = json.loads((out / "export.json").read_text())
    assert (document["runtime"], document["opset"]) == ("torchscript", None)
    assert document["parity"]["max_abs_diff"] <= 1e-5
    graph = open_runner(out / "visible.pt", ExportFormat.TORCHSCRIPT, torch.device("cpu"))
    pool, fc = graph(torch.rand(3, 3, 64, 32))  # torch.jit.load, any batch size
    assert pool.shape == fc.shape == (3, 512)
    paths = {name: tmp_path / f"{name}.json" for name in ("model", "checkpoint")}
    for name, option, source in (("model", "--model", out),
                                 ("checkpoint", "--checkpoint", checkpoints("agw"))):
        ran = evaluate("--shards", tiny_shards, option, source, "--json", paths[name])
        assert ran.exit_code == 0, ran.output
    rows = {name: json.loads(path.read_text()) for name, path in paths.items()}
    assert all(row["exported"] == "torchscript" for row in rows["model"])
    assert_same_table(rows["model"], rows["checkpoint"], queries)
