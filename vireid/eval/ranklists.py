"""Rank lists as pictures: a query and its top-10 gallery images, framed by correctness.

One PNG per query: the query first (grey frame), marked with its modality and camera, then the
ten nearest gallery images in rank order, each framed green when it shows the query's identity
and red otherwise, with its rank, camera and distance (−cosine of the fc feature, as scored;
DEEN: of its ``all`` feature, the one its authors rank by).
Pixels are the stored ones, each modality's own, as the shards hold them. Queries are chosen
deterministically (evenly spaced over the trial's queries) or by shard key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vireid.errors import VireidError
from vireid.files import replaced_atomically

TOP = 10
FRAME = 4  # pixels of coloured border around each image
CAPTION = 26  # pixels of text under each image (two lines)
GAP = 6
COLOURS = {"query": (128, 128, 128), True: (0, 160, 0), False: (200, 0, 0)}


@dataclass(frozen=True)
class Ranked:
    query: int  # global sample number
    gallery: tuple[int, ...]  # the top entries, best first
    distances: tuple[float, ...]


def plan_rank_lists(manifest, protocol, trials, count: int, keys: tuple[str, ...] = ()):
    """(trial, queries) of the sheets to draw: the first scored trial's, chosen before any
    feature is extracted, so an unknown key costs nothing."""
    trial = manifest.trial(protocol.name, (trials or [protocol.trials[0].trial])[0])
    return trial, choose_queries(trial, manifest, count, keys)


def write_rank_lists(source, protocol_name: str, trial, queries: list[int], features,
                     folder: Path, feature: str = "fc") -> list[Path]:
    """One sheet per query into ``folder``; a failure (a full disk, a file in the way) is one
    line saying how many were written, and leaves no partial file."""
    from vireid.loader.reference import read_image

    manifest = source.manifest
    ranked = rank(features, trial, queries, feature=feature)
    written = []
    for one in ranked:
        key = manifest.samples[one.query].key
        path = Path(folder) / f"{protocol_name}-trial{trial.trial}-{key}.png"
        try:
            written.append(draw(one, manifest, lambda s: np.asarray(
                read_image(source, s).convert("RGB")), path))
        except OSError as error:
            raise VireidError(path, f"cannot write: {error.strerror or error} "
                              f"({len(written)} of {len(ranked)} rank lists written)") from None
    return written


def choose_queries(trial, manifest, count: int, keys: tuple[str, ...] = ()) -> list[int]:
    """``keys`` (shard keys of the trial's queries) or ``count`` evenly spaced queries."""
    queries = list(trial.query)
    if keys:
        by_key = {manifest.samples[q].key: q for q in queries}
        missing = [k for k in keys if k not in by_key]
        if missing:
            raise VireidError("queries", f"{missing[0]!r} is not a query of this protocol's "
                              f"trial {trial.trial}")
        return [by_key[k] for k in keys]
    picks = np.linspace(0, len(queries) - 1, num=min(count, len(queries))).round()
    return [queries[int(i)] for i in dict.fromkeys(picks)]


def rank(features, trial, queries: list[int], top: int = TOP,
         feature: str = "fc") -> list[Ranked]:
    """The ``top`` gallery images of each query by −cosine of ``feature``."""
    gallery = np.asarray(trial.gallery)
    g = features.get(feature, gallery)
    ranked = []
    for query in queries:
        distances = -(g @ features.get(feature, [query])[0])
        order = np.argsort(distances, kind="stable")[:top]
        ranked.append(Ranked(query, tuple(int(i) for i in gallery[order]),
                             tuple(float(d) for d in distances[order])))
    return ranked


def draw(ranked: Ranked, manifest, read_pixels, path: Path) -> Path:
    """The sheet of one query; ``read_pixels(sample)`` gives its stored H×W×3 uint8 pixels."""
    from PIL import Image, ImageDraw

    height, width = manifest.height, manifest.width
    tile_w = width + 2 * FRAME + GAP
    sheet = Image.new("RGB", (tile_w * (1 + len(ranked.gallery)), height + 2 * FRAME + CAPTION),
                      "white")
    pen = ImageDraw.Draw(sheet)
    query = manifest.samples[ranked.query]
    modality = "IR" if query.modality.value == "infrared" else "VIS"
    tiles = [(ranked.query, "query", f"{modality} c{query.cam}\nquery")]
    for number, (sample, distance) in enumerate(zip(ranked.gallery, ranked.distances), 1):
        same = manifest.samples[sample].pid == query.pid
        tiles.append((sample, same,
                      f"#{number} c{manifest.samples[sample].cam}\n{distance:.3f}"))
    for position, (sample, kind, caption) in enumerate(tiles):
        x = position * tile_w
        pen.rectangle([x, 0, x + width + 2 * FRAME - 1, height + 2 * FRAME - 1],
                      fill=COLOURS[kind])
        sheet.paste(Image.fromarray(read_pixels(sample)), (x + FRAME, FRAME))
        pen.text((x + 1, height + 2 * FRAME + 1), caption, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as partial:
        sheet.save(partial, format="PNG")
    return path


def frame_colour(sheet, position: int, width: int) -> tuple[int, int, int]:
    """The frame colour of tile ``position`` of a sheet (what tests read back)."""
    return sheet.getpixel((position * (width + 2 * FRAME + GAP) + 1, 1))
