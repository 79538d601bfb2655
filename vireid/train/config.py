"""A training run's configuration: small frozen groups that hold the defaults.

The CLI reads its defaults from these classes and builds one ``TrainConfig``; the library
receives plain values and choices (``vireid.choices``), never argv. ``to_dict()`` gives the
flat form written to ``RUN/config.json`` and stored in checkpoints; ``from_flat()`` reads it
back (names as the command-line options, e.g. ``eval_every`` for ``evaluation.every``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum

from vireid.choices import (
    Amp,
    Arch,
    Cache,
    CpuAugment,
    Device,
    LoaderKind,
    Method,
    Recipe,
    SamplerOrder,
    Triplet,
)
from vireid.errors import VireidError
from vireid.fields import CHECK, FREE, KEEP, check_fields, flat_fields, flat_name, setting
from vireid.loader.settings import EVAL_BATCH_SIZE, Backend, DecoderOptions, Sampling

FLOAT32_MAX = 3.4e38  # (rounded down) the largest learning rate a float32 step can take


@dataclass(frozen=True)
class Optimisation:
    """SGD and the schedule (the original's values)."""

    epochs: int | None = setting(
        None, min=1, resume=FREE,
        help="Epochs (default: the method's; agw and base: 81, as the original; caj: 100; "
        "deen: 151).")
    lr: float = setting(
        0.1, above=0.0, max=FLOAT32_MAX, resume=CHECK,
        help="Base learning rate, > 0 (BNNeck and classifier; the rest uses 0.1×).")
    momentum: float = setting(0.9, min=0.0, resume=CHECK, help="SGD momentum.")
    weight_decay: float = setting(5e-4, min=0.0, resume=CHECK, help="SGD weight decay.")
    warmup_epochs: int = setting(10, min=0, resume=CHECK, help="Linear warm-up epochs.")
    milestones: tuple[int, int] = setting(
        (20, 50), min=0, resume=CHECK, rule=lambda epochs: None if list(epochs) == sorted(
            set(epochs)) else f"must increase (got {' '.join(map(str, epochs))})",
        help="Epochs where the learning rate drops 10× (two increasing values; deen's default: "
        "20 80).")

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class ModelSettings:
    method: Method = setting(Method.AGW, resume=CHECK, help="Training method.")
    arch: Arch = setting(Arch.RESNET50, resume=CHECK,
                         help="Backbone: resnet50 (original) or resnet18.")
    pretrained: str = setting(
        "torchvision", metavar="WEIGHTS",
        help="ImageNet weights: torchvision, a PATH to a ResNet state dict (must exist), or "
        "none.")
    init: str | None = setting(
        None, metavar="PATH",
        help="Start from the weights of this checkpoint: one written by vireid-train, or by "
        "the original AGW code ('…_best.t', recognised by its content); to fine-tune. Another "
        "class count re-initialises the classifier (one line says so). A new run's only: a "
        "resumed run continues from its own checkpoint.")
    triplet: Triplet | None = setting(
        None, resume=CHECK,
        help="Metric loss on the pooled features: wrt (weighted regularised), hard "
        "(batch-hard, margin 0.3) or adp (CAJ's squared difference). Default: the method's "
        "(agw: wrt, base: hard, caj: adp; caj with wrt is the original's --square 0; deen's "
        "losses are its own).")

    def __post_init__(self):
        check_fields(self)
        from vireid.train.methods import get_method

        get_method(self.method, self.triplet)  # a method with its own losses refuses another


@dataclass(frozen=True)
class LoaderSettings:
    """Which loader, and how the DALI loader works (its device comes from the run; how a
    CUDA run decodes is ``DecoderOptions``)."""

    kind: LoaderKind = setting(LoaderKind.DALI, flat="loader", resume=FREE,
                               help="dali or reference (plain PyTorch).")
    cpu_augment: CpuAugment = setting(
        Backend.cpu_augment, resume=FREE,
        help="Training augmentation on a CPU: fused (DALI decodes, one compiled pass pads, "
        "crops, flips, normalises and erases; ~2.5x faster) or dali (DALI's own operators: "
        "the GPU graph, run on the CPU). Same pixels either way.")
    num_threads: int | None = setting(
        Backend.num_threads, min=1, max=1024, resume=FREE,
        help="DALI threads (default: cores + 1; under torchrun the cores divided among the "
        "processes).")
    prefetch: int = setting(Backend.prefetch, min=1, max=64, resume=FREE,
                            help="Batches DALI prepares ahead of the training step.")
    cache: Cache = setting(
        Backend.cache, resume=FREE,
        help="Decoded training set in memory (DALI loader): none (decode every step's "
        "images), host (decode every image once into RAM, then gather and augment each "
        "step's rows; on a CPU the fused kernel reads it) or device (the same in GPU memory "
        "on CUDA; host on a CPU). Needs images × H × W × 3 bytes (SYSU ≈ 4 GB, LLCM ≈ 5.5 GB "
        "at 288×144), refused before decoding when it will not fit; the first pass decodes "
        "everything once (reported as one line).")

    def __post_init__(self):
        check_fields(self)
        from vireid.loader.route import check_cache

        check_cache(self.kind, self.cache)  # the loader's route table, as it builds


@dataclass(frozen=True)
class Evaluation:
    every: int = setting(2, min=1, flat="eval_every",
                         help="Evaluate every N epochs and at the end (deen with --recipe "
                         "original: 1, after every epoch as the authors).")
    protocol: str | None = setting(
        None, flat="eval_protocol", flag="--protocol",
        help="Protocol to evaluate: sysu-all, sysu-indoor, regdb-v2t, regdb-t2v, llcm-ir2vis "
        "or llcm-vis2ir (default: the dataset's; checked against the shards before any "
        "work).")
    batch_size: int = setting(EVAL_BATCH_SIZE, min=1, max=4096, flat="eval_batch_size",
                              resume=FREE, help="Images per evaluation batch.")
    original_schedule: bool = setting(
        False, flat="eval_original_schedule",
        help="Evaluate as the original's training script: after 0-based epochs N, 2N, … "
        "(2, 4, …, 80), not after epoch 0 (default: after epochs N, 2N, … counted from 1, and "
        "after the last; on with --recipe original).")
    first_trial_only: bool = setting(
        False, flat="eval_first_trial_only",
        help="Score gallery trial 0 only, as the original's script (on with --recipe "
        "original).")
    flip: bool | None = setting(
        None, flat="eval_flip",
        help="Evaluate with features averaged over each image and its mirrored copy "
        "(default: the method's; caj: on, agw and base: off; off with --recipe original).")

    def __post_init__(self):
        check_fields(self)

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether to evaluate after 0-based ``epoch`` of ``epochs``."""
        if self.original_schedule:
            return epoch > 0 and epoch % self.every == 0
        return (epoch + 1) % self.every == 0 or epoch + 1 == epochs


@dataclass(frozen=True)
class RunSettings:
    """Where the run reads and writes, and how it computes."""

    shards: str = setting(
        resume=FREE, metavar="PATH",
        help="Shard folder written by `vireid-shard build` (required unless --config or "
        "--resume provides it). A resumed run compares the data (dataset, manifest, view), "
        "not the path.")
    out: str = setting(
        resume=FREE, metavar="PATH",
        help="Run folder: config, metrics.jsonl, tb/, checkpoints/. A new run needs a new or "
        "empty folder; one run at a time.")
    device: Device = setting(Device.AUTO, resume=FREE,
                             help="auto (CUDA when a GPU is visible), cpu or cuda.")
    amp: Amp = setting(
        Amp.AUTO,
        help="Mixed precision: auto (fp16 on CUDA, off on CPU; with --resume: the precision "
        "the run was trained in), bf16, fp16 or off (float32, as the original). Off with "
        "--recipe original.")
    channels_last: bool = setting(True, help="Channels-last model and inputs.")
    compile: bool = setting(False, flag="--compile", help="torch.compile the model.")
    deterministic: bool = setting(
        False, flag="--deterministic",
        help="Bitwise repeatable CUDA runs: deterministic kernels and no cuDNN autotuning "
        "(slower). Default: cuDNN picks the fastest kernels for the fixed input shapes.")
    sync_bn: bool = setting(
        False, flag="--sync-bn",
        help="Synchronise BatchNorm statistics across processes (multi-process runs).")
    log_every: int = setting(10, min=1, resume=FREE, help="Report losses every N steps.")
    max_steps: int | None = setting(None, min=1, resume=CHECK,
                                    help="Cut every epoch after N steps (smoke runs).")
    resume: bool = setting(False, resume=FREE,
                           help="Continue the run in --out from its checkpoint.")
    verify: bool = setting(
        True, resume=FREE,
        help="Check every shard's sha256 against the manifest before any work (~2 GB/s per "
        "core from the page cache); --no-verify skips it.")
    recipe: Recipe = setting(
        Recipe.VIREID,
        help="original: the original's training script where vireid's defaults differ "
        "(--sampler original, --amp off, evaluation after 0-based epochs 2, 4, … (deen: "
        "after every epoch) on gallery trial 0, without flip); options given explicitly "
        "still win. Every run keeps checkpoints/best.pt (best fc Rank-1 on the test set, as "
        "the original selects; deen: the all row's).")

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class TrainConfig:
    """A training run's settings, in groups (``GROUPS``)."""

    run: RunSettings
    sampling: Sampling = field(default_factory=Sampling)
    optimisation: Optimisation = field(default_factory=Optimisation)
    model: ModelSettings = field(default_factory=ModelSettings)
    loader: LoaderSettings = field(default_factory=LoaderSettings)
    decoder: DecoderOptions = field(default_factory=DecoderOptions)
    evaluation: Evaluation = field(default_factory=Evaluation)

    def __post_init__(self):
        from vireid.train.methods import get_method

        method = get_method(self.model.method)
        if not method.other_views and self.sampling.views not in (None, method.views):
            raise VireidError("views", f"{self.sampling.views}: {method.name} trains on "
                              f"{method.views} views only")

    @property
    def epochs(self) -> int:
        """The schedule's length: ``optimisation.epochs``, else the method's default."""
        if self.optimisation.epochs is not None:
            return self.optimisation.epochs
        from vireid.train.methods import get_method

        return get_method(self.model.method).epochs

    def backend(self, device: str, device_id: int, num_threads: int | None,
                local_processes: int = 1) -> Backend:
        """Where and how the DALI loader makes this run's batches."""
        loader = self.loader
        return Backend(device=device, device_id=device_id, num_threads=num_threads,
                       prefetch=loader.prefetch, cpu_augment=loader.cpu_augment,
                       cache=loader.cache, decoder=self.decoder,
                       local_processes=local_processes)

    def to_dict(self) -> dict:
        """The flat form, plain values only (choices as their words): JSON and
        ``weights_only`` loads read it."""
        values = {}
        for group in GROUPS:
            settings = getattr(self, group)
            for item in fields(settings):
                value = getattr(settings, item.name)
                values[flat_name(item)] = value.value if isinstance(value, Enum) else value
        values["milestones"] = list(self.optimisation.milestones)
        values["epochs"] = self.epochs
        return values

    @classmethod
    def from_flat(cls, **values) -> TrainConfig:
        """Build from flat names; an unknown name is an error, missing ones keep defaults."""
        grouped: dict[str, dict] = {group: {} for group in GROUPS}
        known = flat_fields(GROUPS)
        for name, value in values.items():
            if name not in known:
                raise VireidError("configuration", f"unknown setting {name!r}")
            group, item = known[name]
            grouped[group][item.name] = value
        return cls(**{g: GROUPS[g](**v) for g, v in grouped.items() if v or g != "run"})

    @classmethod
    def with_recipe(cls, recipe: Recipe, **values) -> TrainConfig:
        """``from_flat`` after filling the settings that ``values`` leaves unset (None): first
        the method's (``MethodSpec.defaults``, e.g. DEEN's P, K and milestones), then the
        recipe's (``RECIPES``); settings given explicitly win."""
        from vireid.train.methods import get_method

        recipe = Recipe.parse(recipe, "recipe")
        filled = {k: v for k, v in values.items() if v is not None}
        method = get_method(filled.get("method", ModelSettings.method))
        for name, value in {**RECIPES[recipe], **method.defaults(recipe)}.items():
            filled.setdefault(name, value)
        return cls.from_flat(recipe=recipe, **filled)


def resume_rule(name: str) -> str:
    """What a resumed run may do with flat setting ``name`` (``vireid.fields``: KEEP, FREE
    or CHECK)."""
    return flat_fields(GROUPS)[name][1].metadata.get("resume", KEEP)


def checked_on_resume() -> tuple[str, ...]:
    """Settings a resumed run must share with the run that wrote the checkpoint (the data
    itself is compared by its identity: dataset, manifest hash, view)."""
    return tuple(name for name, (_, item) in flat_fields(GROUPS).items()
                 if item.metadata.get("resume") == CHECK)


# What ``--recipe original`` changes (flat names): everything where vireid's defaults differ
# from the original's training script. Options given explicitly still win.
RECIPES = {
    Recipe.VIREID: {},
    Recipe.ORIGINAL: {"sampler": SamplerOrder.ORIGINAL, "amp": Amp.OFF,
                      "eval_original_schedule": True, "eval_first_trial_only": True,
                      "eval_flip": False},  # CAJ's training script scores without flip
}

# the settings groups by their name in ``TrainConfig``, in the order of ``--help``'s panels
GROUPS = {"run": RunSettings, "sampling": Sampling, "model": ModelSettings,
          "optimisation": Optimisation, "loader": LoaderSettings, "decoder": DecoderOptions,
          "evaluation": Evaluation}

