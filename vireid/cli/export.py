"""``vireid-export``: a trained model out to ONNX (or TorchScript), one graph per modality,
checked against PyTorch before it is kept."""

from __future__ import annotations

from pathlib import Path

import typer

from vireid.cli.common import megabytes, new_app, sigterm_as_interrupt, stderr, user_errors
from vireid.cli.options import PanelCommand, with_settings
from vireid.export.settings import ExportSettings

app = new_app("Export a vireid or original AGW/CAJ/DEEN checkpoint to ONNX or TorchScript.")


def export(
    checkpoint: Path = typer.Option(..., help="Checkpoint written by vireid-train "
                                    "(RUN/checkpoints/last.pt or best.pt, any method) or by "
                                    "the original AGW, CAJ or DEEN code ('…_best.t', "
                                    "recognised by its content).", rich_help_panel="Input"),
    shards: Path = typer.Option(None, help="Shard folder: the parity check runs real test "
                                "images from it (random images without), and a checkpoint "
                                "that does not record its image size takes the shards'.",
                                rich_help_panel="Input"),
    out: Path = typer.Option(..., help="Folder to write: visible.onnx and infrared.onnx (or "
                             ".pt) and export.json. Must be new or empty (see --overwrite); "
                             "never the checkpoint, inside the shards, or around either. "
                             "Written under a temporary name beside it and renamed once the "
                             "parity check passed: a failure keeps nothing.",
                             rich_help_panel="Output"),
    **given,
) -> None:
    """Write one graph per modality (float32 RGB images in [0, 1], N×3×H×W with a dynamic
    batch axis, normalised inside the graph; outputs pool and fc as vireid-test scores them)
    and export.json, after running each file with onnxruntime (or torch.jit.load) on the same
    images as PyTorch (rtol 1e-3, atol 1e-5). Flip averaging is left to the caller:
    export.json says how. Score the result with `vireid-test --model OUT`.
    """
    from vireid.export.pipeline import export_checkpoint

    with user_errors(), sigterm_as_interrupt():
        settings = ExportSettings(**given)
        document = export_checkpoint(checkpoint, out, settings, shards=shards,
                                     progress=_say)
        sizes = ", ".join(f"{name} ({megabytes((out / name).stat().st_size)})"
                          for name in document["files"].values())
        typer.echo(f"wrote {out}: {sizes}, export.json")


def _say(line: str) -> None:
    """A progress line on stderr."""
    stderr.print(line, markup=False, highlight=False, soft_wrap=True)


with_settings(export, {"Export": ExportSettings})
app.command(cls=PanelCommand)(export)


def main() -> None:
    """The ``vireid-export`` console script."""
    app()
