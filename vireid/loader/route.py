"""The route of a training batch: computed once per loader, from the loader kind, its
``Backend`` and the shards' encoding, by looking the settings up in ``ROUTES``.

``ROUTES`` is the table of the package docstring as data: a combination it does not list
is refused here, in one line (a decoded cache for the reference loader), and the settings
check (``vireid.train.config.LoaderSettings``) asks the same table through
``check_cache``. Nothing downstream re-derives the route from the settings: the loader,
the decoded cache and the pipelines read the ``Route``.
"""

from __future__ import annotations

from dataclasses import dataclass

from vireid.choices import Cache, Choice, CpuAugment, DecodeOn, LoaderKind
from vireid.errors import VireidError
from vireid.loader.settings import Backend
from vireid.shards.encode import Encoding


class Pixels(Choice):
    """How a step gets the pixels it augments."""

    GRAPH = "graph"  # one DALI graph decodes and augments (dali_pipes.train_pipeline)
    DECODED = "decoded"  # DALI decodes each step's images (dali_pipes.decode_pipeline)
    CACHED = "cached"  # gathered from the decoded cache (cache.py, first pass dali_decode.py)
    PIL = "pil"  # PIL decodes each image (reference.py)


class AugmenterKind(Choice):
    """The members of the augmenter family (``vireid.loader.augmenters``)."""

    GRAPH = "graph"  # DALI's operators (dali_augment.py), CPU or GPU
    FUSED = "fused"  # the numba kernel (fused.py), CPU
    TENSOR = "tensor"  # batched torch operations (tensor_augment.py), CPU or GPU
    REFERENCE = "reference"  # PIL + torchvision (reference.py): the oracle


class Decoder(Choice):
    """Who turns a stored JPEG or PNG into pixels (raw shards need nobody)."""

    NONE = "none"  # raw shards: the stored bytes are the pixels
    DALI_CPU = "dali-cpu"  # DALI's CPU decoder (libjpeg-turbo, ...)
    NVJPEG = "nvjpeg"  # DALI's ``mixed`` decoder on a GPU
    PIL = "pil"


@dataclass(frozen=True)
class Route:
    """Which code makes a training batch, where, and where the decoded cache lives."""

    loader: LoaderKind
    pixels: Pixels
    augmenter: AugmenterKind
    device: str  # where batches are made: "cpu" or "cuda"
    decoder: Decoder
    cache: Cache  # where the decoded cache lives: NONE, HOST or DEVICE (never DEVICE on a CPU)

    def __str__(self) -> str:
        cache = "" if self.cache is Cache.NONE else f", {self.cache} cache"
        return (f"{self.loader}: {self.pixels} pixels ({self.decoder} decoding{cache}), "
                f"{self.augmenter} augmenter on {self.device}")


@dataclass(frozen=True)
class RouteRule:
    """One row of the table: the settings it matches (None: any) and the route they take."""

    loader: LoaderKind
    device: str | None
    caches: tuple[Cache, ...]
    cpu_augment: CpuAugment | None
    pixels: Pixels
    augmenter: AugmenterKind
    cache_in: Cache = Cache.NONE
    makes_on: str | None = None  # batches made here whatever the run's device (None: that)
    decoder: Decoder | None = None  # who decodes JPEG/PNG (None: DALI, ``decoding_on``)

    def matches(self, loader: LoaderKind, device: str | None, cache: Cache,
                cpu_augment: CpuAugment | None) -> bool:
        return (loader is self.loader and cache in self.caches
                and (device is None or self.device in (None, device))
                and (cpu_augment is None or self.cpu_augment in (None, cpu_augment)))


DALI, REFERENCE = LoaderKind.DALI, LoaderKind.REFERENCE
NONE, HOST, DEVICE = Cache.NONE, Cache.HOST, Cache.DEVICE
# the package docstring's table: (loader, device, caches, cpu_augment) → route
ROUTES: tuple[RouteRule, ...] = (
    RouteRule(DALI, "cuda", (NONE,), None, Pixels.GRAPH, AugmenterKind.GRAPH),
    RouteRule(DALI, "cpu", (NONE,), CpuAugment.FUSED, Pixels.DECODED, AugmenterKind.FUSED),
    RouteRule(DALI, "cpu", (NONE,), CpuAugment.DALI, Pixels.GRAPH, AugmenterKind.GRAPH),
    RouteRule(DALI, "cuda", (DEVICE,), None, Pixels.CACHED, AugmenterKind.TENSOR, DEVICE),
    RouteRule(DALI, "cuda", (HOST,), None, Pixels.CACHED, AugmenterKind.TENSOR, HOST),
    RouteRule(DALI, "cpu", (HOST, DEVICE), None, Pixels.CACHED, AugmenterKind.FUSED, HOST),
    RouteRule(REFERENCE, None, (NONE,), None, Pixels.PIL, AugmenterKind.REFERENCE,
              makes_on="cpu", decoder=Decoder.PIL),
)


def _rule(loader: LoaderKind, device: str | None, cache: Cache,
          cpu_augment: CpuAugment | None) -> RouteRule:
    for rule in ROUTES:
        if rule.matches(loader, device, cache, cpu_augment):
            return rule
    raise _no_route(loader, device, cache, cpu_augment)


def _no_route(loader: LoaderKind, device: str | None, cache: Cache,
              cpu_augment: CpuAugment | None) -> VireidError:
    """The refusal of settings no row of ``ROUTES`` takes, with the ways out it offers: a
    cache setting the loader has no route for, else the whole combination."""
    mine = [str(c) for c in Cache if any(r.loader is loader and c in r.caches for r in ROUTES)]
    if str(cache) in mine:
        return VireidError("loader", f"{loader} on {device} with cache {cache} and "
                           f"cpu_augment {cpu_augment}: no route (vireid/loader/route.py)")
    others = [f"the {k} loader" for k in LoaderKind
              if any(r.loader is k and cache in r.caches for r in ROUTES)]
    ways = " or ".join(others + [f"cache {c}" for c in mine])
    return VireidError("cache", f"{cache}: the {loader} loader keeps no decoded cache (it "
                       f"decodes every step; cache {', '.join(mine)} only): use {ways}")


def check_cache(loader, cache) -> None:
    """Refuse a ``cache`` setting no route of ``loader`` takes, on any device (the settings
    check, before the device is known; the same table as ``training_route``)."""
    _rule(LoaderKind.parse(loader, "loader"), None, Cache.parse(cache, "cache"), None)


def decoding_on(device: str, on: DecodeOn | str = DecodeOn.MIXED) -> Decoder:
    """Where DALI decodes JPEG/PNG: nvJPEG on a CUDA run unless it decodes on the CPU."""
    return Decoder.NVJPEG if device == "cuda" and DecodeOn(on) is DecodeOn.MIXED \
        else Decoder.DALI_CPU


def training_route(loader, backend: Backend, encoding: Encoding) -> Route:
    """The one route of a training loader: ``backend``'s words are parsed here, once."""
    loader = LoaderKind.parse(loader, "loader")
    cache = Cache.parse(backend.cache, "cache")
    cpu_augment = CpuAugment.parse(backend.cpu_augment, "CPU augmentation")
    rule = _rule(loader, backend.device, cache, cpu_augment)
    device = rule.makes_on or backend.device
    decoder = Decoder.NONE if Encoding(encoding) is Encoding.RAW else \
        rule.decoder or decoding_on(device, backend.decoder.on)
    return Route(loader, rule.pixels, rule.augmenter, device, decoder, rule.cache_in)
