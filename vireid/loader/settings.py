"""The loaders' settings: what each training step draws, and where batches are made.

Each default is written here once; the trainer's configuration and the CLI read them from
these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vireid.choices import Cache, CpuAugment, DecodeOn, SamplerOrder, Views
from vireid.errors import VireidError
from vireid.fields import check_fields, setting
from vireid.loader.augment import ERASE_P


@dataclass(frozen=True)
class Sampling:
    """What each step draws: P identities × K images per modality from a training view."""

    batch_ids: int = setting(8, min=1)  # P (the original's --batch-size)
    num_pos: int = setting(4, min=1)  # K
    seed: int = setting(0, min=0, max=2**32 - 1)  # numpy's and torch's seed range
    replace: bool = True  # K images drawn with replacement, as the original
    order: SamplerOrder = setting(SamplerOrder.EPOCH, flat="sampler")
    # the training view of datasets trained per trial (RegDB)
    trial: int | None = setting(None, min=1)
    # random erasing probability (0: none, as the code behind the published SYSU and RegDB
    # AGW numbers; 0.5: the AGW recipe vireid follows)
    erase_prob: float = setting(ERASE_P, min=0.0, max=1.0)
    views: Views | None = None  # None: Views.SINGLE (a training run: its method's views)

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class DecoderOptions:
    """How a CUDA run decodes: where (``on``), and the options of DALI's ``mixed`` (nvJPEG)
    decoder, which the CPU decoder does not get (it would accept and ignore them).

    The defaults come from DALI's documentation and reasoning about 144×288 JPEGs (~41,000
    pixels, ~15 KB), NOT from measurement: ``python -m benchmarks.decoder`` sweeps them on a
    GPU. Kept at DALI's defaults: ``hw_decoder_load`` (DALI: "should be found empirically"),
    both paddings (every image has the stored size, so nvJPEG's buffers grow at most once,
    in the first batch, whatever the padding: it only sets what is preallocated per thread)
    and ``hybrid_huffman_threshold`` (1 M pixels: all our images use the host Huffman
    decoder; DALI notes the hybrid one "still largely uses the CPU"). Changed: the hardware
    decoder's preallocation hints follow the shards' stored size (DALI's 0 preallocates
    nothing).
    """

    on: DecodeOn = DecodeOn.MIXED
    hw_decoder_load: float = 0.65  # share of JPEGs for the hardware decoder (A100/H100 class)
    preallocate_width_hint: int = 0  # 0: the shards' stored width
    preallocate_height_hint: int = 0  # 0: the shards' stored height
    device_memory_padding: int = 16 * 2**20  # bytes of device buffer per thread (DALI's)
    host_memory_padding: int = 8 * 2**20  # bytes of 2 pinned host buffers per thread (DALI's)
    hybrid_huffman_threshold: int = 1_000_000  # pixels above which Huffman is hybrid (DALI's)

    def __post_init__(self):
        object.__setattr__(self, "on", DecodeOn.parse(self.on, "decode on"))
        if not 0.0 <= self.hw_decoder_load <= 1.0:
            raise VireidError("hw_decoder_load", f"{self.hw_decoder_load} is not in [0, 1]")
        for name in ("preallocate_width_hint", "preallocate_height_hint",
                     "device_memory_padding", "host_memory_padding",
                     "hybrid_huffman_threshold"):
            if getattr(self, name) < 0:
                raise VireidError(name, f"{getattr(self, name)} is negative")

    def mixed_arguments(self, stored: tuple[int, int] | None = None) -> dict:
        """The ``mixed`` decoder's keyword arguments; hints of 0 become ``stored`` (height,
        width) when given."""
        height, width = stored or (0, 0)
        return {"hw_decoder_load": self.hw_decoder_load,
                "preallocate_width_hint": self.preallocate_width_hint or width,
                "preallocate_height_hint": self.preallocate_height_hint or height,
                "device_memory_padding": self.device_memory_padding,
                "host_memory_padding": self.host_memory_padding,
                "hybrid_huffman_threshold": self.hybrid_huffman_threshold}


@dataclass(frozen=True)
class Backend:
    """Where and how batches are decoded and augmented (the DALI loader; the reference
    loader always works in Python on the CPU and has no such settings)."""

    device: str = "cpu"  # "cpu" or "cuda" (resolved: never "auto" here)
    device_id: int = 0
    num_threads: int | None = None  # None: cores + 1 for training, cores for evaluation
    prefetch: int = 2  # batches DALI prepares ahead
    cpu_augment: CpuAugment = CpuAugment.FUSED
    cache: Cache = Cache.NONE  # decode every training image once and keep it (see cache.py)
    decoder: DecoderOptions = field(default_factory=DecoderOptions)  # CUDA runs' decoding
    # processes of the run on this machine (torchrun): each holds its own host cache, so the
    # memory check counts them all
    local_processes: int = 1


EVAL_BATCH_SIZE = 64  # images per evaluation forward pass (the original's test batch)
