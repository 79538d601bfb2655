"""``vireid-test``: the original evaluation protocols for a saved model, vectorised."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from vireid.choices import Feature
from vireid.cli.common import new_app, user_errors
from vireid.cli.options import PanelCommand, with_settings
from vireid.cli.tables import render_rows
from vireid.errors import VireidError
from vireid.eval.rerank import Rerank
from vireid.files import replaced_atomically
from vireid.train.checkpoint_eval import DERIVED, EvaluationSettings

app = new_app("Evaluate a vireid checkpoint (or a vireid-export folder) on the original "
              "protocols (all trials).")


def test(
    shards: Path = typer.Option(..., help="Shard folder written by `vireid-shard build`.",
                                rich_help_panel="Input"),
    checkpoint: Path = typer.Option(None, help="Checkpoint written by vireid-train "
                                    "(RUN_DIR/checkpoints/last.pt or best.pt) or by the "
                                    "original AGW or DEEN code ('…_best.t', recognised by "
                                    "its content), or the folder "
                                    "of a `vireid-train --trial all` job: each RegDB trial "
                                    "scored with its own model, both directions, and the "
                                    "mean over the trials. Exactly one of --checkpoint, "
                                    "--model and --features.", rich_help_panel="Input"),
    model: Path = typer.Option(None, "--model", help="Folder written by vireid-export "
                               "(visible/infrared graphs and export.json): scored as its "
                               "checkpoint is, the forward pass run by onnxruntime (or "
                               "torch.jit.load); the table's first line and every JSON row "
                               "('exported') name the export. Float32 only; no rank lists.",
                               rich_help_panel="Input"),
    features: Path = typer.Option(None, "--features", help="Evaluate the features saved by "
                                  "--save-features instead of a model (the shards still give "
                                  "the trials and must hold the same test images).",
                                  rich_help_panel="Input"),
    feature: Feature = typer.Option(Feature.BOTH, help="pool (L2-normalised GeM feature), fc "
                                    "(L2-normalised BNNeck feature), all (both concatenated: "
                                    "DEEN's distmat7), weighted (0.1 pool + 0.9 fc "
                                    "similarities: DEEN's distmat8) or both: the method's "
                                    "two rows (pool and fc; deen: all and weighted).",
                                    rich_help_panel="Evaluation"),
    rerank: bool = typer.Option(False, "--rerank", help="k-reciprocal re-ranking (Zhong et "
                                "al., CVPR 2017) of every trial; off by default, and every "
                                "row says so.", rich_help_panel="Re-ranking"),
    rerank_k1: int = typer.Option(Rerank.k1, "--rerank-k1", min=1, help="Re-ranking k1.",
                                  rich_help_panel="Re-ranking"),
    rerank_k2: int = typer.Option(Rerank.k2, "--rerank-k2", min=1, help="Re-ranking k2 (local "
                                  "query expansion).", rich_help_panel="Re-ranking"),
    rerank_lambda: float = typer.Option(Rerank.lam, "--rerank-lambda", min=0.0, max=1.0,
                                        help="Re-ranking λ: weight of the original distance.",
                                        rich_help_panel="Re-ranking"),
    json_out: Path = typer.Option(None, "--json", help="Also write every row to this JSON "
                                  "file (its folder is checked before the evaluation).",
                                  rich_help_panel="Evaluation"),
    out: Path = typer.Option(None, "--out", help="Folder of the rank lists (default: "
                             "RUN/rank-lists beside the checkpoint).",
                             rich_help_panel="Evaluation"),
    **given,
) -> None:
    """Print a table per trial and the average; features are extracted once for all trials.

    Test images are resized to the size the model was trained at when the shards hold
    another size (with a warning), as the original's test transform does.
    """
    from vireid.train.checkpoint_eval import check_before_work, rank_list_folder

    with user_errors():
        save_features = given["save_features"]
        check_sources(checkpoint, features, save_features, model)
        lists = bool(given["rank_lists"] or given["queries"])
        if lists and (features or model or checkpoint.is_dir()):
            raise VireidError("--rank-lists", "needs one checkpoint file (the pictures come "
                              "from its ranking)")
        if out and not lists:
            raise VireidError(out, "--out names the rank lists' folder: give --rank-lists N "
                              "or --queries")
        folder = rank_list_folder(checkpoint, out) if lists else None
        check_before_work(shards, checkpoint=checkpoint, features=features,
                          files={"--json": json_out, "--save-features": save_features},
                          folders={"--out": folder}, device=given["device"], model=model)
        kinds = None if feature is Feature.BOTH else (feature.value,)  # None: the method's
        reranking = Rerank(rerank_k1, rerank_k2, rerank_lambda) if rerank else None
        settings = EvaluationSettings(**given, kinds=kinds, rerank=reranking,
                                      lists_out=str(out) if out else None)
        if model:
            run_export(shards, model, settings, json_out)
        else:
            run(shards, checkpoint or features, settings, json_out,
                from_features=bool(features))
        if folder:
            typer.echo(f"rank lists: {folder}")


with_settings(test, {"Evaluation": EvaluationSettings}, skip=DERIVED)
app.command(cls=PanelCommand)(test)


def run(shards: Path, source: Path, settings: EvaluationSettings, json_out: Path | None,
        from_features: bool) -> None:
    """Evaluate and report: the table and the JSON rows come before any rank list is drawn."""
    from vireid.train.checkpoint_eval import evaluate_checkpoint, evaluate_saved
    from vireid.train.trial_eval import MissingTrials, coverage_note, evaluate_trial_runs

    def report(rows: list[dict]) -> None:
        typer.echo(render_rows(rows, coverage_note(rows)))
        if json_out:
            write_json(json_out, rows)

    if from_features:
        report(evaluate_saved(shards, source, settings))
    elif source.is_dir():
        try:
            report(evaluate_trial_runs(shards, source, settings, on_checkpoint=announce))
        except MissingTrials as error:
            raise VireidError(error.where, f"{error.problem} with --allow-missing-trials") \
                from None
    else:
        evaluate_checkpoint(shards, source, settings, on_checkpoint=announce, on_rows=report)


def run_export(shards: Path, model: Path, settings: EvaluationSettings,
               json_out: Path | None) -> None:
    """Score an export folder; the line above its table names the export."""
    from vireid.export.evaluate import evaluate_export

    def report(rows: list[dict]) -> None:
        title = f"exported model: {model} ({rows[0]['exported']})" if rows else ""
        typer.echo(render_rows(rows, title))
        if json_out:
            write_json(json_out, rows)

    evaluate_export(shards, model, settings, on_checkpoint=announce, on_rows=report)


def announce(line: str) -> None:
    from vireid.cli.common import stderr

    stderr.print(line, markup=False, highlight=False, soft_wrap=True)


def check_sources(checkpoint: Path | None, features: Path | None,
                  save_features: Path | None, model: Path | None = None) -> None:
    """Exactly one of --checkpoint / --model / --features; saving needs one model to extract
    with."""
    from vireid.errors import VireidError

    if sum(source is not None for source in (checkpoint, features, model)) != 1:
        raise VireidError("vireid-test", "give exactly one of --checkpoint (a model) and "
                          "--features (features saved by --save-features), or --model (a "
                          "vireid-export folder) alone")
    if save_features and (features or (checkpoint and checkpoint.is_dir())):
        raise VireidError(save_features, "--save-features needs one checkpoint file to "
                          "extract with (not --features, nor a folder of trial runs)")


def write_json(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` whole or not at all (temporary file, then rename)."""
    from vireid.errors import VireidError

    try:
        with replaced_atomically(path) as partial:
            partial.write_text(json.dumps(rows, indent=2) + "\n")
    except OSError as error:
        raise VireidError(path, f"cannot write: {error.strerror or error}") from None


def main() -> None:
    app()
