"""Shard building images/s vs the original's single-process preprocessing, in one run.

The original (``pre_process_sysu.py``) opens every training image with PIL, resizes it to
144×288 with Lanczos, stacks the arrays and saves one ``.npy`` per modality, in one process.
vireid builds JPEG shards with a process pool. Both read the same fake SYSU-MM01 tree.

    python -m benchmarks.shard_build --ids 200 --images-per-camera 5
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import emit, environment, repeat, timed
from vireid.datasets import read_dataset
from vireid.fake import make_fake
from vireid.files import available_cores
from vireid.shards.build import BuildOptions, build_shards
from vireid.shards.encode import Encoding


def original_preprocess(root: Path, paths: list[str], out: Path) -> None:
    """The original's loop: open, resize (Lanczos), to array, stack, np.save."""
    arrays = []
    for path in paths:
        image = Image.open(root / path)
        image = image.resize((144, 288), Image.Resampling.LANCZOS)
        arrays.append(np.array(image))
    np.save(out, np.array(arrays))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=200)
    parser.add_argument("--images-per-camera", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="vireid-bench-"))
    try:
        return _run(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(work: Path, args) -> list[dict]:
    tree = make_fake("sysu", work / "SYSU-MM01", ids=args.ids,
                     images_per_camera=args.images_per_camera, seed=0)
    raw = read_dataset("sysu", tree.root)
    paths = [r.path for r in raw.records]
    base = {**environment(), "benchmark": "shard_build", "images": len(paths)}
    original = repeat(lambda: timed(lambda: original_preprocess(tree.root, paths,
                                                                work / "train.npy")),
                      args.repeats)
    rows = [{**base, **original, "name": "original PIL loop → .npy", "threads": 1}]
    for encoding in (Encoding.JPEG, Encoding.RAW):
        options = BuildOptions(encoding=encoding, overwrite=True)
        measured = repeat(lambda o=options: timed(lambda: build_shards(raw, work / "out", o)),
                          args.repeats)
        rows.append({**base, **measured, "name": f"vireid-shard build ({encoding.value})",
                     "threads": available_cores()})
    for row in rows:
        row["images_per_s"] = row["images"] / row["seconds_median"]
        row["ratio_to_original"] = row["images_per_s"] / rows[0]["images_per_s"]
    emit(rows, args.results)
    return rows


if __name__ == "__main__":
    main()
