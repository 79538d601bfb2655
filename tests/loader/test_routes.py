"""The route of a training batch (``vireid.loader.route``): the table in the package
docstring is the table in the code, every setting takes the route the table says, every
route a CPU run can take gives the reference loader's batches, and a combination the table
lacks is refused where the route is computed and by the settings check, in the same words.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import vireid.loader
from tests.loader.test_augmenters import assert_reference_pixels
from tests.loaders import train_loader
from vireid.choices import Cache, LoaderKind, Views
from vireid.errors import VireidError
from vireid.loader.route import ROUTES, AugmenterKind, Decoder, Pixels, Route, training_route
from vireid.loader.settings import Backend, DecoderOptions
from vireid.shards.encode import Encoding

SMALL = {"width": 32, "height": 64}
OPTIONS = {"batch_ids": 4, "num_pos": 2, "seed": 9}
DALI, REFERENCE = LoaderKind.DALI, LoaderKind.REFERENCE
CACHED, GRAPH, DECODED = Pixels.CACHED, Pixels.GRAPH, Pixels.DECODED
FUSED, TENSOR = AugmenterKind.FUSED, AugmenterKind.TENSOR

# (loader, backend settings, encoding) → the route, written out from the docstring's table
EXPECTED = [
    ("dali", {"device": "cuda"}, "jpeg",
     Route(DALI, GRAPH, AugmenterKind.GRAPH, "cuda", Decoder.NVJPEG, Cache.NONE)),
    ("dali", {"device": "cuda", "decoder": DecoderOptions(on="cpu")}, "png",
     Route(DALI, GRAPH, AugmenterKind.GRAPH, "cuda", Decoder.DALI_CPU, Cache.NONE)),
    ("dali", {"device": "cpu"}, "jpeg",
     Route(DALI, DECODED, FUSED, "cpu", Decoder.DALI_CPU, Cache.NONE)),
    ("dali", {"device": "cpu", "cpu_augment": "dali"}, "raw",
     Route(DALI, GRAPH, AugmenterKind.GRAPH, "cpu", Decoder.NONE, Cache.NONE)),
    ("dali", {"device": "cuda", "cache": "device", "cpu_augment": "dali"}, "jpeg",
     Route(DALI, CACHED, TENSOR, "cuda", Decoder.NVJPEG, Cache.DEVICE)),
    ("dali", {"device": "cuda", "cache": "host"}, "raw",
     Route(DALI, CACHED, TENSOR, "cuda", Decoder.NONE, Cache.HOST)),
    ("dali", {"device": "cpu", "cache": "device", "cpu_augment": "dali"}, "png",
     Route(DALI, CACHED, FUSED, "cpu", Decoder.DALI_CPU, Cache.HOST)),
    ("reference", {"device": "cuda"}, "jpeg",
     Route(REFERENCE, Pixels.PIL, AugmenterKind.REFERENCE, "cpu", Decoder.PIL, Cache.NONE)),
]


@pytest.mark.parametrize("loader, settings, encoding, route", EXPECTED)
def test_each_setting_takes_the_tables_route(loader, settings, encoding, route):
    assert training_route(loader, Backend(**settings), Encoding(encoding)) == route


def docstring_rows() -> list[list[str]]:
    """The rows of the package docstring's table, as cells (columns two spaces apart)."""
    lines = vireid.loader.__doc__.splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("=========  ")]
    return [re.split(r"\s{2,}", line.strip()) for line in lines[rules[1] + 1:rules[2]]]


def test_the_package_docstring_lists_every_route_and_only_those():
    rows = [row for row in docstring_rows() if not row[4].startswith("refused")]
    assert len(rows) == len(ROUTES)
    for rule, row in zip(ROUTES, rows):
        assert row[:4] == [rule.loader, rule.device or "any",
                           "/".join(c.value for c in rule.caches), rule.cpu_augment or "any"]
        assert row[5].split()[0] == rule.augmenter


# backend settings of every route a CPU run can take: the DALI graph, DALI decoding + the
# fused kernel, the host cache, and the device cache (the host on a CPU) asked for together
# with DALI's operators (the cache's route has no use for them)
CPU_ROUTES = {"graph": {"cpu_augment": "dali"}, "decoded": {"cpu_augment": "fused"},
              "host cache": {"cache": "host"},
              "device cache": {"cache": "device", "cpu_augment": "dali"}}


@pytest.fixture(scope="module")
def reference_batches():
    """The reference loader's batches over two epochs, per views (computed once)."""
    made: dict = {}

    def batches(shards, views):
        if views not in made:
            with train_loader("reference", shards, views=views, **OPTIONS) as loader:
                made[views] = [b for _ in range(2) for b in loader]
        return made[views]

    return batches


def _nhwc(batch: dict) -> np.ndarray:
    images = torch.cat([batch["visible"], batch["infrared"]]).permute(0, 2, 3, 1)
    return images.contiguous().numpy()


@pytest.mark.dali
@pytest.mark.parametrize("views", [v.value for v in Views])
@pytest.mark.parametrize("settings", CPU_ROUTES.values(), ids=CPU_ROUTES.keys())
def test_every_cpu_route_gives_the_reference_batches(shard_dir, reference_batches, settings,
                                                     views):
    """Two epochs (so across an epoch boundary), raw shards: the same bits (a gray channel
    mix: one float16 step, test_augmenters.py). The batches are kept without cloning: fresh
    tensors, never views of a buffer the loader reuses while they are held."""
    shards = shard_dir("sysu", "raw", **SMALL)
    expected = reference_batches(shards, views)
    with train_loader("dali", shards, views=views, **settings, **OPTIONS) as loader:
        got = [b for _ in range(2) for b in loader]
        plans = [loader.plan(b["epoch"], b["step"]) for b in got]
    assert len(got) == len(expected) == 2 * len(loader)
    for a, b, plan in zip(got, expected, plans):
        assert (a["epoch"], a["step"]) == (b["epoch"], b["step"])
        assert a["visible"].is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(a["labels_visible"], b["labels_visible"])
        assert_reference_pixels(_nhwc(a), _nhwc(b), plan.params)


def test_a_cache_for_the_reference_loader_is_refused_where_the_route_is_computed(shard_dir):
    """The route table has no cached route for the reference loader: refused in one line,
    with the ways out the table offers; the settings check asks the same table."""
    from vireid.train.config import LoaderSettings

    message = (r"^cache: host: the reference loader keeps no decoded cache \(it decodes "
               r"every step; cache none only\): use the dali loader or cache none$")
    with pytest.raises(VireidError, match=message):
        train_loader("reference", shard_dir("sysu", "raw", **SMALL), cache="host", **OPTIONS)
    with pytest.raises(VireidError, match=message):
        LoaderSettings(kind="reference", cache="host")
    LoaderSettings(kind="reference", cache="none")
    LoaderSettings(kind="dali", cache="device")
