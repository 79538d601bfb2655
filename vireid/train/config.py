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
    DecodeOn,
    Device,
    LoaderKind,
    Method,
    Recipe,
    SamplerOrder,
    Triplet,
)
from vireid.errors import VireidError
from vireid.fields import check_fields, flat_name, setting
from vireid.loader.settings import EVAL_BATCH_SIZE, Backend, DecoderOptions, Sampling

FLOAT32_MAX = 3.4e38  # (rounded down) the largest learning rate a float32 step can take


@dataclass(frozen=True)
class Optimisation:
    """SGD and the schedule (the original's values)."""

    epochs: int | None = setting(None, min=1)  # None: the method's default (AGW: 81)
    # BNNeck and classifier; the rest of the network uses 0.1 × lr
    lr: float = setting(0.1, above=0.0, max=FLOAT32_MAX)  # SGD steps in float32
    momentum: float = setting(0.9, min=0.0)
    weight_decay: float = setting(5e-4, min=0.0)
    warmup_epochs: int = setting(10, min=0)
    # the learning rate drops 10× at each (two increasing epochs)
    milestones: tuple[int, int] = setting((20, 50), min=0)

    def __post_init__(self):
        check_fields(self)
        if list(self.milestones) != sorted(set(self.milestones)):
            raise VireidError("milestones", f"must increase (got "
                              f"{' '.join(map(str, self.milestones))})")


@dataclass(frozen=True)
class ModelSettings:
    method: Method = Method.AGW
    arch: Arch = Arch.RESNET50
    pretrained: str = "torchvision"  # "torchvision", "none" or the PATH of a state dict
    # start from this checkpoint's weights (vireid's or the original's); a new run's only
    init: str | None = None
    triplet: Triplet | None = None  # the metric loss; None: the method's (caj: adp)

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class LoaderSettings:
    """Which loader, and how the DALI loader works (its device comes from the run)."""

    kind: LoaderKind = setting(LoaderKind.DALI, flat="loader")
    cpu_augment: CpuAugment = Backend.cpu_augment
    num_threads: int | None = setting(Backend.num_threads, min=1, max=1024)
    prefetch: int = setting(Backend.prefetch, min=1, max=64)
    cache: Cache = Backend.cache
    # a CUDA run's decoding (``DecoderOptions``: defaults from DALI's documentation, not yet
    # measured; ``python -m benchmarks.decoder`` sweeps them on a GPU)
    decode_on: DecodeOn = DecoderOptions.on
    hw_decoder_load: float = setting(DecoderOptions.hw_decoder_load, min=0.0, max=1.0)
    preallocate_width_hint: int = setting(DecoderOptions.preallocate_width_hint, min=0,
                                          max=65535)
    preallocate_height_hint: int = setting(DecoderOptions.preallocate_height_hint, min=0,
                                           max=65535)
    device_memory_padding: int = setting(DecoderOptions.device_memory_padding, min=0,
                                         max=2**31)
    host_memory_padding: int = setting(DecoderOptions.host_memory_padding, min=0, max=2**31)
    hybrid_huffman_threshold: int = setting(DecoderOptions.hybrid_huffman_threshold, min=0,
                                            max=2**31)

    def __post_init__(self):
        check_fields(self)
        if self.kind == LoaderKind.REFERENCE and self.cache != Cache.NONE:
            raise VireidError("cache", f"{self.cache}: the reference loader decodes every "
                              "step with PIL and keeps nothing; use the dali loader or cache "
                              "none")

    def backend(self, device: str, device_id: int, num_threads: int | None,
                local_processes: int = 1) -> Backend:
        return Backend(device=device, device_id=device_id, num_threads=num_threads,
                       prefetch=self.prefetch, cpu_augment=self.cpu_augment, cache=self.cache,
                       decoder=self.decoder(), local_processes=local_processes)

    def decoder(self) -> DecoderOptions:
        return DecoderOptions(
            on=self.decode_on, hw_decoder_load=self.hw_decoder_load,
            preallocate_width_hint=self.preallocate_width_hint,
            preallocate_height_hint=self.preallocate_height_hint,
            device_memory_padding=self.device_memory_padding,
            host_memory_padding=self.host_memory_padding,
            hybrid_huffman_threshold=self.hybrid_huffman_threshold)


@dataclass(frozen=True)
class Evaluation:
    every: int = setting(2, min=1, flat="eval_every")  # every N epochs (see original_schedule)
    # None: the dataset's default protocol
    protocol: str | None = setting(None, flat="eval_protocol")
    batch_size: int = setting(EVAL_BATCH_SIZE, min=1, max=4096, flat="eval_batch_size")
    # False: after epochs N, 2N, … counted from 1, and after the last. True, as the original's
    # training script: after 0-based epochs N, 2N, … (2, 4, …, 80), not after epoch 0.
    original_schedule: bool = setting(False, flat="eval_original_schedule")
    # score gallery trial 0 only, as the original's script
    first_trial_only: bool = setting(False, flat="eval_first_trial_only")
    # average with the mirrored image's features; None: the method's
    flip: bool | None = setting(None, flat="eval_flip")

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

    shards: str
    out: str
    device: Device = Device.AUTO
    amp: Amp = Amp.AUTO
    channels_last: bool = True
    compile: bool = False
    deterministic: bool = False  # deterministic CUDA kernels, no cuDNN autotuning
    sync_bn: bool = False
    log_every: int = setting(10, min=1)
    max_steps: int | None = setting(None, min=1)  # cut every epoch short (smoke runs, tests)
    resume: bool = False
    verify: bool = True  # the shards' sha256 against the manifest before training
    recipe: Recipe = Recipe.VIREID  # recorded; its settings are applied by ``with_recipe``

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class TrainConfig:
    run: RunSettings
    sampling: Sampling = field(default_factory=Sampling)
    optimisation: Optimisation = field(default_factory=Optimisation)
    model: ModelSettings = field(default_factory=ModelSettings)
    loader: LoaderSettings = field(default_factory=LoaderSettings)
    evaluation: Evaluation = field(default_factory=Evaluation)

    @property
    def epochs(self) -> int:
        """The schedule's length: ``optimisation.epochs``, else the method's default."""
        if self.optimisation.epochs is not None:
            return self.optimisation.epochs
        from vireid.train.methods import get_method

        return get_method(self.model.method).epochs

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
        known = {flat_name(f): (g, f.name) for g in GROUPS for f in fields(GROUPS[g])}
        for name, value in values.items():
            if name not in known:
                raise VireidError("configuration", f"unknown setting {name!r}")
            group, attribute = known[name]
            grouped[group][attribute] = value
        return cls(**{g: GROUPS[g](**v) for g, v in grouped.items() if v or g != "run"})

    @classmethod
    def with_recipe(cls, recipe: Recipe, **values) -> TrainConfig:
        """``from_flat`` after filling the settings ``recipe`` changes (``RECIPES``) that
        ``values`` leaves unset (None); settings given explicitly win."""
        recipe = Recipe.parse(recipe, "recipe")
        filled = {k: v for k, v in values.items() if v is not None}
        for name, value in RECIPES[recipe].items():
            filled.setdefault(name, value)
        return cls.from_flat(recipe=recipe, **filled)

    def compatible_keys(self) -> tuple[str, ...]:
        """Settings a resumed run must share with the run that wrote the checkpoint (the data
        itself is compared by its identity: dataset, manifest hash, view)."""
        return ("batch_ids", "num_pos", "method", "arch", "seed", "replace", "sampler", "lr",
                "momentum", "weight_decay", "warmup_epochs", "milestones", "max_steps",
                "erase_prob", "triplet", "views")


# What ``--recipe original`` changes (flat names): everything where vireid's defaults differ
# from the original's training script. Options given explicitly still win.
RECIPES = {
    Recipe.VIREID: {},
    Recipe.ORIGINAL: {"sampler": SamplerOrder.ORIGINAL, "amp": Amp.OFF,
                      "eval_original_schedule": True, "eval_first_trial_only": True,
                      "eval_flip": False},  # CAJ's training script scores without flip
}

GROUPS = {"run": RunSettings, "sampling": Sampling, "optimisation": Optimisation,
          "model": ModelSettings, "loader": LoaderSettings, "evaluation": Evaluation}

