"""DEEN's test rule (docs/methods.md, DEEN): flip features summed without normalising again, and
the ``all`` / ``weighted`` rows, which are the authors' distmat7 and distmat8 as one dot
product of a concatenated feature."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vireid.choices import FlipRule
from vireid.cli.tables import render_rows
from vireid.eval.features import COMBINED, Features, _extract
from vireid.records import Modality

PARTS = 3  # DEEN's branches: each image's pool (and fc) feature is 3 L2-normalised parts


class Edges(nn.Module):
    """Features read off the pixels: (left edge, right edge, centre) of the first row of the
    first channel, L2-normalised. Mirroring swaps the edges and keeps the centre, so the
    flip rules meet a known case."""

    def forward(self, visible=None, infrared=None):
        x = visible if visible is not None else infrared
        width = x.shape[3]
        row = x[:, 0, 0]
        centre = (row[:, width // 2 - 1] + row[:, width // 2]) / 2
        feature = F.normalize(torch.stack([row[:, 0], row[:, -1], centre], dim=1), dim=1)
        return feature, feature


def image(left: float, right: float, centre: float, width: int = 8) -> torch.Tensor:
    pixels = torch.zeros(3, 4, width)
    pixels[0, 0, 0], pixels[0, 0, -1] = left, right
    pixels[0, 0, width // 2 - 1: width // 2 + 1] = centre
    return pixels


def extract(model, images, rule):
    into = ([], [], [])
    batches = [{"images": images, "samples": list(range(len(images)))}]
    with torch.no_grad():
        _extract(model.eval(), batches, torch.device("cpu"), None, True, Modality.VISIBLE,
                 into, True, rule)
    return np.concatenate(into[1])


def test_the_sum_rule_ranks_where_the_normalised_mean_would_not():
    """A query of pure centre; gallery 1 has opposite edges (its flip sum is short but points
    at the query), gallery 2 equal edges (long, less aligned). DEEN's sum ranks gallery 2
    first; vireid's normalise((a + b) / 2) would rank gallery 1 first."""
    images = torch.stack([image(0, 0, 1), image(1, -1, 0.5), image(0.5, 0.5, 1)])
    model = Edges()
    summed = extract(model, images, FlipRule.SUM)
    with torch.no_grad():
        plain, mirrored = model(images)[0], model(images.flip(3))[0]
    np.testing.assert_allclose(summed, (plain + mirrored).numpy(), rtol=0, atol=1e-7)
    assert not np.allclose(np.linalg.norm(summed[1:], axis=1), 1.0)  # not normalised again
    query, gallery = summed[0], summed[1:]
    assert np.argmax(gallery @ query) == 1
    mean = extract(model, images, FlipRule.MEAN)
    assert np.argmax(mean[1:] @ mean[0]) == 0


def test_the_default_rule_is_still_the_normalised_mean():
    images = torch.stack([image(0, 0, 1), image(1, -1, 0.5)])
    into = ([], [], [])
    with torch.no_grad():
        _extract(Edges().eval(), [{"images": images, "samples": [0, 1]}], torch.device("cpu"),
                 None, True, Modality.VISIBLE, into, True)
    np.testing.assert_allclose(np.linalg.norm(np.concatenate(into[1]), axis=1), 1.0, atol=1e-6)


def per_branch(rows: int, channels: int, seed: int) -> np.ndarray:
    """(rows, 3·channels): three L2-normalised parts per row, as DEEN's evaluation gives."""
    x = np.random.default_rng(seed).standard_normal((rows, PARTS, channels)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=2, keepdims=True)).reshape(rows, -1)


def authors_distmats(query: Features, gallery: Features, channels: int):
    """The authors' test.py: one similarity matrix per part (3 pool, 3 BN), then
    distmat7 = their sum and distmat8 = 0.1·(pool ones) + 0.9·(BN ones)."""
    def parts(features):
        return [features.pool[:, k * channels:(k + 1) * channels] for k in range(PARTS)] + \
            [features.fc[:, k * channels:(k + 1) * channels] for k in range(PARTS)]

    q, g = parts(query), parts(gallery)
    distmat = [np.matmul(q[k], g[k].T) for k in range(2 * PARTS)]
    distmat7 = sum(distmat)
    distmat8 = 0.1 * sum(distmat[:PARTS]) + 0.9 * sum(distmat[PARTS:])
    return distmat7, distmat8


def test_all_and_weighted_are_distmat7_and_distmat8():
    channels = 16
    query = Features(np.arange(5), per_branch(5, channels, 0), per_branch(5, channels, 1))
    gallery = Features(np.arange(9), per_branch(9, channels, 2) * 2,  # flip sums: norm 2
                       per_branch(9, channels, 3) * 2)
    distmat7, distmat8 = authors_distmats(query, gallery, channels)
    every = np.arange(5), np.arange(9)
    got7 = query.get("all", every[0]) @ gallery.get("all", every[1]).T
    got8 = query.get("weighted", every[0]) @ gallery.get("weighted", every[1]).T
    np.testing.assert_allclose(got7, distmat7, rtol=0, atol=2e-6)
    np.testing.assert_allclose(got8, distmat8, rtol=0, atol=2e-6)
    assert np.array_equal(np.argsort(-got7, axis=1), np.argsort(-distmat7, axis=1))
    assert query.get("all", [3]).shape == (1, 6 * channels)
    assert COMBINED == {"all": (1.0, 1.0), "weighted": (0.1, 0.9)}


@pytest.mark.parametrize("kind", ["pool", "fc"])
def test_pool_and_fc_rows_are_unchanged(kind):
    features = Features(np.arange(3), per_branch(3, 4, 0), per_branch(3, 4, 1))
    np.testing.assert_array_equal(features.get(kind, [2, 0]), getattr(features, kind)[[2, 0]])


def test_rows_are_labelled_in_tables_and_json(shard_dir):
    from vireid.eval.protocols import samples_to_extract, score_rows
    from vireid.shards.manifest import load_manifest

    manifest = load_manifest(shard_dir("sysu", "jpeg", width=32, height=64))
    protocol = manifest.protocol(manifest.default_protocol)
    wanted = np.concatenate(list(samples_to_extract(manifest, protocol).values()))
    wanted.sort()
    features = Features(wanted, per_branch(len(wanted), 8, 0), per_branch(len(wanted), 8, 1))
    rows = score_rows(manifest, protocol, features, None, ("all", "weighted"), flip=True)
    trials = len(protocol.trials)
    assert [r["feature"] for r in rows] == ["all"] * (trials + 1) + ["weighted"] * (trials + 1)
    assert all(r["flip"] for r in rows)
    table = render_rows(rows)
    assert any(line.startswith("sysu-all (flip)") and " all " in line
               for line in table.splitlines())
    assert any(" weighted " in line and line.split()[-7] == "mean" for line in table.splitlines())
