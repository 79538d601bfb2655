"""The parity check every export passes before it is kept: the exported file, run by its
runtime, against the PyTorch graph it came from, on the same images.

Images: with shards, the first test images of each modality of the default protocol, decoded
by PIL and resized to the graph's size (real pixels, as a deployment would feed them); without,
uniform random pixels from a fixed seed. Each file runs the whole batch and its first image
alone (the batch axis is dynamic). Every output element must satisfy
|exported − PyTorch| ≤ ATOL + RTOL·|PyTorch| (``numpy.allclose``'s rule), and be finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vireid.errors import VireidError
from vireid.export.graph import OUTPUTS, StemGraph
from vireid.export.runtime import Runner
from vireid.export.settings import ATOL, RTOL
from vireid.records import Modality

SEED = 0


@dataclass(frozen=True)
class Parity:
    """One file's check: its worst absolute difference, and its worst difference as a share
    of the tolerance (≤ 1 passes)."""

    file: str
    images: int
    max_abs_diff: float
    worst_share_of_tolerance: float
    widths: dict[str, int]  # output name → its number of columns

    def row(self) -> dict:
        """The file's entry in export.json."""
        return {"file": self.file, "images": self.images, "max_abs_diff": self.max_abs_diff,
                "worst_share_of_tolerance": self.worst_share_of_tolerance}


def parity_images(shards, size: tuple[int, int], count: int) -> dict[Modality, torch.Tensor]:
    """``count`` float32 [0, 1] images per modality: test images of ``shards``, or random."""
    if shards is None:
        generator = torch.Generator().manual_seed(SEED)
        return {m: torch.rand(count, 3, *size, generator=generator) for m in Modality}
    return _test_images(shards, size, count)


def _test_images(shards, size: tuple[int, int], count: int) -> dict[Modality, torch.Tensor]:
    """The first ``count`` test images of each modality of the default protocol, [0, 1]."""
    import torchvision.transforms.functional as TF

    from vireid.eval.protocols import samples_to_extract
    from vireid.loader.reference import read_image
    from vireid.loader.source import ShardBytes

    images = {}
    with ShardBytes(shards) as source:
        manifest = source.manifest
        wanted = samples_to_extract(manifest, manifest.protocol(manifest.default_protocol))
        for modality in Modality:
            chosen = wanted.get(modality, np.empty(0, np.int64))[:count]
            if len(chosen) == 0:
                raise VireidError(shards, f"holds no {modality.value} test image to check the "
                                  "export with")
            pictures = [read_image(source, int(sample)) for sample in chosen]
            images[modality] = torch.stack([
                TF.to_tensor(p if (p.height, p.width) == tuple(size) else
                             TF.resize(p, list(size))) for p in pictures])
    return images


@torch.no_grad()
def check_parity(graph: StemGraph, runner: Runner, images: torch.Tensor, path: Path) -> Parity:
    """Compare the exported file (``runner``) with ``graph`` on ``images`` and on the first
    image alone; a difference beyond the tolerance, or a non-finite output, is refused."""
    expected = graph(images)
    worst_abs, worst_share = 0.0, 0.0
    for batch, reference in ((images, expected), (images[:1], [e[:1] for e in expected])):
        for name, got, want in zip(OUTPUTS, runner(batch), reference, strict=True):
            got, want = got.float().cpu().numpy(), want.float().cpu().numpy()
            _check_outputs(name, got, want, path)
            difference = np.abs(got.astype(np.float64) - want)
            share = difference / (ATOL + RTOL * np.abs(want.astype(np.float64)))
            worst_abs = max(worst_abs, float(difference.max()))
            if float(share.max()) > 1.0:
                raise VireidError(path, f"output {name} differs from PyTorch by up to "
                                  f"{float(difference.max()):.3g} (rtol {RTOL:g}, atol "
                                  f"{ATOL:g}) on {len(batch)} image(s): nothing was kept")
            worst_share = max(worst_share, float(share.max()))
    widths = {name: int(output.shape[1]) for name, output in zip(OUTPUTS, expected, strict=True)}
    return Parity(path.name, len(images), worst_abs, worst_share, widths)


def _check_outputs(name: str, got: np.ndarray, want: np.ndarray, path: Path) -> None:
    """Both outputs finite and of one shape, or one line saying which is not."""
    if not np.isfinite(want).all():
        raise VireidError(path, f"PyTorch's own {name} output is not finite (NaN or inf) on "
                          "the parity images: a diverged model? nothing was kept")
    if got.shape != want.shape:
        raise VireidError(path, f"output {name} is {got.shape}, PyTorch's {want.shape}: the "
                          "export is wrong, nothing was kept")
    if not np.isfinite(got).all():
        raise VireidError(path, f"output {name} is not finite (NaN or inf) where PyTorch's is: "
                          "the export is wrong, nothing was kept")
