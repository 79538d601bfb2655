"""``vireid-train``: the two-stream AGW trainer on vireid shards."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vireid.cli.checks import trial_choice
from vireid.cli.common import new_app, stderr, user_errors
from vireid.cli.options import PanelCommand, with_settings
from vireid.cli.tables import render_rows
from vireid.errors import VireidError
from vireid.loader.settings import DecoderOptions, Sampling
from vireid.train.config import (
    Evaluation,
    LoaderSettings,
    ModelSettings,
    Optimisation,
    RunSettings,
    TrainConfig,
)
from vireid.train.distributed import check_split
from vireid.train.evaluation import summary_rows
from vireid.train.methods import get_method, list_methods
from vireid.train.reporting import Reporter

app = new_app("Train AGW (two-stream ResNet, non-local, GeM, WRT loss) on vireid shards.")


class ProgressReporter(Reporter):
    """One progress bar per epoch on stderr: loss parts, learning rate, images/s."""

    def __init__(self):
        self.progress = None
        self.task = None

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=stderr)
        self.progress.start()
        self.task = self.progress.add_task(f"epoch {epoch + 1}/{epochs}", total=steps,
                                           stats="")

    def log(self, stats: dict) -> None:
        self.progress.update(self.task, completed=min(stats["step"] + 1, stats["steps"]),
                             stats=self._text(stats))

    def epoch_end(self, epoch: int, stats: dict) -> None:
        self.progress.update(self.task, completed=self.progress.tasks[-1].total,
                             stats=self._text(stats))
        self.progress.stop()

    @staticmethod
    def _text(stats: dict) -> str:
        more = "".join(f" {name} {stats[f'loss_{name}']:.3f}" for name in ("cpm", "ort")
                       if f"loss_{name}" in stats)  # DEEN's terms
        return (f"loss {stats['loss']:.3f} (id {stats['loss_id']:.3f} tri "
                f"{stats['loss_triplet']:.3f}{more}) lr {stats['lr']:.4f} "
                f"{stats['images_per_s']:.0f} img/s")

    def note(self, line: str) -> None:
        stderr.print(line, markup=False, highlight=False)

    def evaluation(self, epoch: int, rows: list[dict]) -> None:
        stderr.print(render_rows(summary_rows(rows), title=f"evaluation after epoch {epoch + 1}"),
                     markup=False, highlight=False, soft_wrap=True)


# --help's panels: one per settings group of ``TrainConfig``
PANELS = {"Run": RunSettings, "Data and sampling": Sampling, "Model": ModelSettings,
          "Optimisation": Optimisation, "Loader": LoaderSettings,
          "GPU decoding": DecoderOptions, "Evaluation": Evaluation}


def train(
    ctx: typer.Context,
    config_file: Path = typer.Option(None, "--config", metavar="FILE", help="Read settings "
                                     "from this JSON or TOML file (named as in a run's "
                                     "config.json, which works as it is); options given here "
                                     "override it.", rich_help_panel="Run"),
    trial: str = typer.Option(None, callback=trial_choice, help="RegDB trial to train on "
                              "(1-10, default 1; a RegDB model is scored on its own trial), "
                              "or 'all': one model per trial into OUT/trial-<N> (resumable as "
                              "a whole with --resume).", rich_help_panel="Data and sampling"),
    nproc: int = typer.Option(1, min=1, help="Processes on this machine: launches torchrun "
                              "(one per GPU; gloo on CPU). Or start vireid-train under "
                              "torchrun yourself.", rich_help_panel="Run"),
    **settings,
) -> None:
    """Train and evaluate; `--resume` continues an interrupted run exactly (with the settings
    of its config.json: an option that disagrees with them is refused)."""
    from vireid.train.runner import run_training

    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        with user_errors():  # what can be refused is refused before any process starts
            check_split(build_config(ctx, config_file).sampling.batch_ids, nproc)
        launch_torchrun(nproc, sys.argv[1:])
        return
    with user_errors():
        config = build_config(ctx, config_file)
        if trial == "all":
            train_all(config)
            return
        rows = run_training(config, ProgressReporter()).evaluations
    if rows:  # rank 0
        typer.echo(render_rows(summary_rows(rows), title="final"))
    report = Path(config.run.out) / "report.png"
    if report.is_file():
        typer.echo(f"report: {report} (redrawn after each evaluation)")


with_settings(train, PANELS, skip={"trial"}, required={"out"}, more_help={
    "method": "; ".join(f"{m}: {get_method(m).summary}" for m in list_methods()) + "."})
app.command(cls=PanelCommand)(train)

NOT_SETTINGS = ("ctx", "config_file", "nproc")


def build_config(ctx: typer.Context, config_file: Path | None) -> TrainConfig:
    """Defaults < the --config file < the options given on the command line; a resumed run
    starts from its own config.json instead and refuses options that disagree with it. A
    setting refused by its group's checks names the file it came from."""
    from vireid.train.config_file import config_from, read_config_file, resumed_settings

    explicit = {name: _setting(name, value) for name, value in ctx.params.items()
                if name not in NOT_SETTINGS and _given(ctx, name)}
    from_file = read_config_file(config_file) if config_file else {}
    for run_only in ("out", "resume"):  # where and whether: this command's, never a file's
        from_file.pop(run_only, None)
    origins = dict.fromkeys(from_file, config_file)
    values = {**from_file, **explicit}
    if values.get("resume"):
        saved, values = resumed_settings(ctx.params["out"], values,
                                         job=ctx.params.get("trial") == "all")
        origins.update(dict.fromkeys(saved, Path(ctx.params["out"]) / "config.json"))
    for name in explicit:
        origins.pop(name, None)
    if not values.get("shards"):
        raise VireidError("--shards", "missing (give it, or a --config file that has it)")
    return config_from(values, origins)


def _given(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT") or \
        name == "out"


def _setting(name: str, value):
    """An option's value as config.json holds it."""
    if name == "trial" and value == "all":
        return None
    if isinstance(value, Path):
        return str(value)
    return list(value) if isinstance(value, tuple) else value


def train_all(config) -> None:
    """Every trial of a per-trial dataset (RegDB), each into OUT/trial-<N>."""
    from vireid.train.runner import run_training
    from vireid.train.trials import train_every_trial

    def say(line: str) -> None:
        stderr.print(line, markup=False, highlight=False)

    results = train_every_trial(config, lambda one: run_training(one, ProgressReporter()), say)
    for trial, result in results.items():
        if result.evaluations:
            typer.echo(render_rows(summary_rows(result.evaluations), title=f"trial {trial}"))
    typer.echo(f"every trial trained in {config.run.out}; score them all with "
               f"`vireid-test --shards {config.run.shards} --checkpoint {config.run.out}`")


def launch_torchrun(nproc: int, arguments: list[str]) -> None:
    """Re-launch this command on ``nproc`` local processes with PyTorch's torchrun."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    rest, skip = [], False
    for argument in arguments:
        if skip:
            skip = False
        elif argument == "--nproc":
            skip = True
        elif not argument.startswith("--nproc="):
            rest.append(argument)
    args = parse_args(["--standalone", f"--nproc_per_node={nproc}", "-m", "vireid.cli.train",
                       *rest])
    # a failed process has said why in one line; torchrun's own report of it (a traceback
    # and a summary per process) would bury that line
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as error:
        _, failure = error.get_first_failure()
        code = failure.exitcode
        if code < 0:
            stderr.print(f"error: a training process was killed by signal {-code}",
                         markup=False, highlight=False)
        raise typer.Exit(code if code > 0 else 1) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
