"""``vireid-train``: the two-stream AGW trainer on vireid shards."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vireid.choices import (
    Amp,
    Arch,
    Cache,
    CpuAugment,
    DecodeOn,
    Device,
    LoaderKind,
    Method,
    Recipe,
    SamplerOrder,
    Triplet,
    Views,
)
from vireid.cli.checks import increasing_epochs, positive, trial_choice
from vireid.cli.common import new_app, stderr, user_errors
from vireid.cli.tables import render_rows
from vireid.errors import VireidError
from vireid.fields import limits
from vireid.loader.settings import Sampling
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
        return (f"loss {stats['loss']:.3f} (id {stats['loss_id']:.3f} tri "
                f"{stats['loss_triplet']:.3f}) lr {stats['lr']:.4f} "
                f"{stats['images_per_s']:.0f} img/s")

    def note(self, line: str) -> None:
        stderr.print(line, markup=False, highlight=False)

    def evaluation(self, epoch: int, rows: list[dict]) -> None:
        stderr.print(render_rows(summary_rows(rows), title=f"evaluation after epoch {epoch + 1}"),
                     markup=False, highlight=False, soft_wrap=True)


@app.command()
def train(
    ctx: typer.Context,
    config_file: Path = typer.Option(None, "--config", help="Read settings from this JSON or "
                                     "TOML file (named as in a run's config.json, which works "
                                     "as it is); options given here override it."),
    shards: Path = typer.Option(None, help="Shard folder written by `vireid-shard build` "
                                "(required unless --config or --resume provides it)."),
    out: Path = typer.Option(..., help="Run folder: config, metrics.jsonl, tb/, checkpoints/. "
                             "A new run needs a new or empty folder; one run at a time."),
    trial: str = typer.Option(Sampling.trial, callback=trial_choice, help="RegDB trial to "
                              "train on (1-10, default 1; a RegDB model is scored on its own "
                              "trial), or 'all': one model per trial into OUT/trial-<N> "
                              "(resumable as a whole with --resume)."),
    epochs: int = typer.Option(Optimisation.epochs, **limits(Optimisation, "epochs"),
                               help="Epochs (default: the "
                               "method's; agw and base: 81, as the original; caj: 100)."),
    batch_ids: int = typer.Option(Sampling.batch_ids, **limits(Sampling, "batch_ids"),
                                  help="Identities per step, P "
                                  "(original --batch-size)."),
    num_pos: int = typer.Option(Sampling.num_pos, **limits(Sampling, "num_pos"),
                                help="Images per identity and "
                                "modality, K."),
    lr: float = typer.Option(Optimisation.lr, **limits(Optimisation, "lr"), callback=positive,
                             help="Base learning rate, > 0 "
                             "(BNNeck and classifier; the rest uses 0.1×)."),
    weight_decay: float = typer.Option(
        Optimisation.weight_decay, **limits(Optimisation, "weight_decay"),
        help="SGD weight decay (≥ 0)."),
    warmup_epochs: int = typer.Option(
        Optimisation.warmup_epochs, **limits(Optimisation, "warmup_epochs"),
        help="Linear warm-up epochs."),
    milestones: tuple[int, int] = typer.Option(Optimisation.milestones,
                                               callback=increasing_epochs,
                                               help="Epochs where the learning rate drops 10× "
                                               "(two increasing values)."),
    method: Method = typer.Option(ModelSettings.method, help="Training method: " +
                                  "; ".join(f"{m}: {get_method(m).summary}"
                                            for m in list_methods()) + "."),
    triplet: Triplet = typer.Option(ModelSettings.triplet, help="Metric loss on the pooled "
                                    "features: wrt (weighted regularised), hard (batch-hard, "
                                    "margin 0.3) or adp (CAJ's squared difference). Default: "
                                    "the method's (agw: wrt, base: hard, caj: adp; caj with "
                                    "wrt is the original's --square 0)."),
    arch: Arch = typer.Option(ModelSettings.arch, help="Backbone: resnet50 (original) or "
                              "resnet18."),
    pretrained: str = typer.Option(ModelSettings.pretrained, help="ImageNet weights: "
                                   "torchvision, a PATH to a ResNet state dict (must exist), "
                                   "or none."),
    recipe: Recipe = typer.Option(RunSettings.recipe, help="original: the original's training "
                                  "script where vireid's defaults differ (--sampler original, "
                                  "--amp off, evaluation after 0-based epochs 2, 4, … on "
                                  "gallery trial 0, without flip); options given "
                                  "explicitly still win. "
                                  "Every run keeps checkpoints/best.pt (best fc Rank-1 on the "
                                  "test set, as the original selects)."),
    init: Path = typer.Option(None, help="Start from the weights of this checkpoint: one "
                              "written by vireid-train, or by the original AGW code ('…_best.t', "
                              "recognised by its content); to fine-tune. Another class count "
                              "re-initialises the classifier (one line says so)."),
    amp: Amp = typer.Option(None, help="Mixed precision: auto (fp16 on CUDA, off on CPU; with "
                            "--resume: the precision the run was trained in), bf16, fp16 or "
                            "off (float32, as the original). Default: auto; off with --recipe "
                            "original."),
    channels_last: bool = typer.Option(RunSettings.channels_last, help="Channels-last model "
                                       "and inputs."),
    compile: bool = typer.Option(RunSettings.compile, "--compile", help="torch.compile the "
                                 "model."),
    deterministic: bool = typer.Option(RunSettings.deterministic, "--deterministic",
                                       help="Bitwise repeatable CUDA runs: deterministic "
                                       "kernels and no cuDNN autotuning (slower). Default: "
                                       "cuDNN picks the fastest kernels for the fixed input "
                                       "shapes."),
    seed: int = typer.Option(Sampling.seed, **limits(Sampling, "seed"),
                             help="Seed of initialisation, sampling "
                             "and augmentation (≥ 0)."),
    sampler: SamplerOrder = typer.Option(None, help="Identity order: epoch (every identity in "
                                         "every epoch; the default) or original (independent "
                                         "draws per step, as the original; the default with "
                                         "--recipe original)."),
    replace: bool = typer.Option(Sampling.replace, help="Draw an identity's K images with "
                                 "replacement (the original) or without (--no-replace: every "
                                 "identity needs K images per modality)."),
    erase_prob: float = typer.Option(Sampling.erase_prob, **limits(Sampling, "erase_prob"),
                                     help="Random "
                                     "erasing probability: 0.5 (the AGW recipe) or 0 (none, "
                                     "as the code behind the published SYSU and RegDB "
                                     "numbers)."),
    views: Views = typer.Option(Sampling.views, help="What one sampled (visible, infrared) "
                                "pair becomes in a step: single (one image each: agw, base) "
                                "or channel (CAJ: two visible views, the second "
                                "channel-exchanged, and the infrared one with adaptive gray). "
                                "Default: the method's."),
    eval_every: int = typer.Option(Evaluation.every, **limits(Evaluation, "every"),
                                   help="Evaluate every N epochs "
                                   "and at the end."),
    eval_flip: bool = typer.Option(Evaluation.flip, "--eval-flip/--no-eval-flip",
                                   help="Evaluate with features averaged over each image and "
                                   "its mirrored copy (default: the method's; caj: on, agw "
                                   "and base: off; off with --recipe original)."),
    eval_batch_size: int = typer.Option(Evaluation.batch_size, **limits(Evaluation, "batch_size"),
                                        help="Images per evaluation batch (1-4096)."),
    protocol: str = typer.Option(Evaluation.protocol, help="Protocol to evaluate (default: "
                                 "the dataset's; checked against the shards before "
                                 "training)."),
    loader: LoaderKind = typer.Option(LoaderSettings.kind, help="dali or reference (plain "
                                      "PyTorch)."),
    device: Device = typer.Option(RunSettings.device, help="auto (CUDA when a GPU is "
                                  "visible), cpu or cuda."),
    cpu_augment: CpuAugment = typer.Option(
        LoaderSettings.cpu_augment, help="Training augmentation on a CPU: fused (DALI "
        "decodes, one compiled pass pads, crops, flips, normalises and erases; ~2.5x faster) "
        "or dali (DALI's own operators: the GPU graph, run on the CPU). Same pixels either "
        "way."),
    cache: Cache = typer.Option(
        LoaderSettings.cache, help="Decoded training set in memory (DALI loader): none "
        "(decode every step's images), host (decode every image once into RAM, then gather "
        "and augment each step's rows; on a CPU the fused kernel reads it) or device (the "
        "same in GPU memory on CUDA; host on a CPU). Needs images × H × W × 3 bytes "
        "(SYSU ≈ 4 GB, LLCM ≈ 5.5 GB at 288×144), refused before decoding when it will not "
        "fit; the first pass decodes everything once (reported as one line)."),
    num_threads: int = typer.Option(LoaderSettings.num_threads,
                                    **limits(LoaderSettings, "num_threads"),
                                    help="DALI threads (default: cores + 1; under torchrun "
                                    "the cores divided among the processes)."),
    prefetch: int = typer.Option(LoaderSettings.prefetch, **limits(LoaderSettings, "prefetch"),
                                 help="Batches DALI "
                                 "prepares ahead of the training step (1-64)."),
    decode_on: DecodeOn = typer.Option(
        LoaderSettings.decode_on, help="Where a CUDA run decodes JPEG/PNG shards: mixed "
        "(nvJPEG: Huffman decoding on CPU threads or the GPU's hardware JPEG decoder, the rest "
        "on the GPU) or cpu (libjpeg-turbo on DALI's threads, then copied to the GPU, which "
        "augments). CPU runs always decode on the CPU. The decoder options below apply to "
        "mixed only; their defaults are DALI's documented ones (hints: the shards' size), not "
        "yet measured: `python -m benchmarks.decoder` sweeps them on a GPU."),
    hw_decoder_load: float = typer.Option(LoaderSettings.hw_decoder_load,
                                          **limits(LoaderSettings, "hw_decoder_load"),
                                          help="Share of the JPEGs sent to the hardware JPEG "
                                          "decoder of A100/H100-class GPUs (0-1; DALI's "
                                          "default)."),
    preallocate_width_hint: int = typer.Option(
        LoaderSettings.preallocate_width_hint, **limits(LoaderSettings, "preallocate_width_hint"),
        help="Image width the "
        "hardware decoder preallocates for (0: the shards' stored width)."),
    preallocate_height_hint: int = typer.Option(
        LoaderSettings.preallocate_height_hint, **limits(LoaderSettings, "preallocate_height_hint"),
        help="Image height the "
        "hardware decoder preallocates for (0: the shards' stored height)."),
    device_memory_padding: int = typer.Option(
        LoaderSettings.device_memory_padding, **limits(LoaderSettings, "device_memory_padding"),
        help="Bytes of GPU memory "
        "nvJPEG preallocates per DALI thread (0: allocate on demand; DALI's default 16 MiB)."),
    host_memory_padding: int = typer.Option(
        LoaderSettings.host_memory_padding, **limits(LoaderSettings, "host_memory_padding"),
        help="Bytes of each of the two "
        "pinned host buffers nvJPEG preallocates per DALI thread (0: on demand; DALI's "
        "default 8 MiB)."),
    hybrid_huffman_threshold: int = typer.Option(
        LoaderSettings.hybrid_huffman_threshold,
        **limits(LoaderSettings, "hybrid_huffman_threshold"),
        help="Images with more "
        "pixels than this use nvJPEG's hybrid Huffman decoder, smaller ones the host Huffman "
        "decoder (DALI's default 1,000,000: a 144×288 image has 41,472)."),
    max_steps: int = typer.Option(RunSettings.max_steps, **limits(RunSettings, "max_steps"),
                                  help="Cut every epoch after "
                                  "N steps (smoke runs)."),
    log_every: int = typer.Option(RunSettings.log_every, **limits(RunSettings, "log_every"),
                                  help="Report losses every N "
                                  "steps."),
    resume: bool = typer.Option(RunSettings.resume, help="Continue the run in --out from its "
                                "checkpoint."),
    verify: bool = typer.Option(RunSettings.verify, help="Check every shard's sha256 against "
                                "the manifest before training (~2 GB/s per core from the "
                                "page cache); --no-verify skips it."),
    sync_bn: bool = typer.Option(RunSettings.sync_bn, "--sync-bn", help="Synchronise "
                                 "BatchNorm statistics across processes (multi-process runs)."),
    nproc: int = typer.Option(1, min=1, help="Processes on this machine: launches torchrun "
                              "(one per GPU; gloo on CPU). Or start vireid-train under "
                              "torchrun yourself."),
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


# command-line options and their names in config.json, where they differ
FLAT_NAMES = {"protocol": "eval_protocol"}
NOT_SETTINGS = ("ctx", "config_file", "nproc")


def build_config(ctx: typer.Context, config_file: Path | None) -> TrainConfig:
    """Defaults < the --config file < the options given on the command line; a resumed run
    starts from its own config.json instead and refuses options that disagree with it. A
    setting refused by its group's checks names the file it came from."""
    from vireid.train.config_file import config_from, read_config_file, resumed_settings

    explicit = {FLAT_NAMES.get(name, name): _setting(name, value)
                for name, value in ctx.params.items()
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
