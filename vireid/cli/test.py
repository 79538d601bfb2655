"""``vireid-test``: the original evaluation protocols for a saved model, vectorised."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from vireid.cli.common import new_app, user_errors
from vireid.cli.tables import render_rows

app = new_app("Evaluate a vireid checkpoint on the original protocols (all trials).")


@app.command()
def test(
    shards: Path = typer.Option(..., help="Shard folder written by `vireid-shard build`."),
    checkpoint: Path = typer.Option(..., help="Checkpoint written by vireid-train "
                                    "(RUN_DIR/checkpoints/last.pt)."),
    protocol: str = typer.Option(None, help="sysu-all, sysu-indoor, regdb-v2t, regdb-t2v, "
                                 "llcm-ir2vis or llcm-vis2ir (default: the dataset's)."),
    trial: int = typer.Option(None, help="Only this trial (RegDB: default the checkpoint's)."),
    feature: str = typer.Option("both", help="pool (L2-normalised GeM feature), fc "
                                "(L2-normalised BNNeck feature) or both."),
    loader: str = typer.Option("dali", help="dali or reference (plain PyTorch)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    amp: str = typer.Option("auto", help="auto, bf16, fp16 or off."),
    batch_size: int = typer.Option(64, min=1, help="Images per forward pass."),
    json_out: Path = typer.Option(None, "--json", help="Also write every row to this JSON file."),
) -> None:
    """Print a table per trial and the average; features are extracted once for all trials."""
    from vireid.errors import VireidError
    from vireid.train.evaluation import FEATURES, test_checkpoint

    with user_errors():
        if feature not in (*FEATURES, "both"):
            raise VireidError("--feature", f"{feature!r} is not pool, fc or both")
        kinds = FEATURES if feature == "both" else (feature,)
        rows = test_checkpoint(shards, checkpoint, protocol_name=protocol, trial=trial,
                               kinds=kinds, loader=loader, device=device, amp=amp,
                               batch_size=batch_size)
    typer.echo(render_rows(rows))
    if json_out:
        json_out.write_text(json.dumps(rows, indent=2) + "\n")


def main() -> None:
    app()
