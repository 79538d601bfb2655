"""The loaders' settings: what each training step draws, and where batches are made.

Each default is written here once; the trainer's configuration and the CLI read them from
these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vireid.choices import Cache, CpuAugment, DecodeOn, SamplerOrder, Views
from vireid.fields import CHECK, FREE, check_fields, setting
from vireid.loader.augment import ERASE_P


@dataclass(frozen=True)
class Sampling:
    """What each step draws: P identities × K images per modality from a training view."""

    batch_ids: int = setting(8, min=1, resume=CHECK,
                             help="Identities per step, P (original --batch-size).")
    num_pos: int = setting(4, min=1, resume=CHECK, help="Images per identity and modality, K.")
    seed: int = setting(0, min=0, max=2**32 - 1, resume=CHECK,  # numpy's and torch's range
                        help="Seed of initialisation, sampling and augmentation.")
    replace: bool = setting(
        True, resume=CHECK,
        help="Draw an identity's K images with replacement (the original) or without "
        "(--no-replace: every identity needs K images per modality).")
    order: SamplerOrder = setting(
        SamplerOrder.EPOCH, flat="sampler", resume=CHECK,
        help="Identity order: epoch (every identity in every epoch) or original (independent "
        "draws per step, as the original; the default with --recipe original).")
    trial: int | None = setting(
        None, min=1, resume=FREE,
        help="The training view of a dataset trained per trial (RegDB: 1-10, default 1).")
    erase_prob: float = setting(
        ERASE_P, min=0.0, max=1.0, resume=CHECK,
        help="Random erasing probability: 0.5 (the AGW recipe) or 0 (none, as the code behind "
        "the published SYSU and RegDB numbers).")
    views: Views | None = setting(
        None, resume=CHECK,
        help="What one sampled (visible, infrared) pair becomes in a step: single (one image "
        "each: agw, base) or channel (CAJ: two visible views, the second channel-exchanged, "
        "and the infrared one with adaptive gray). Default: the method's.")

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

    on: DecodeOn = setting(
        DecodeOn.MIXED, flat="decode_on", resume=FREE,
        help="Where a CUDA run decodes JPEG/PNG shards: mixed (nvJPEG: Huffman decoding on CPU "
        "threads or the GPU's hardware JPEG decoder, the rest on the GPU) or cpu "
        "(libjpeg-turbo on DALI's threads, then copied to the GPU, which augments). CPU runs "
        "always decode on the CPU. The options below apply to mixed only; their defaults are "
        "DALI's documented ones (hints: the shards' size): `python -m benchmarks.decoder` "
        "sweeps them on a GPU.")
    hw_decoder_load: float = setting(
        0.65, min=0.0, max=1.0, resume=FREE,
        help="Share of the JPEGs sent to the hardware JPEG decoder of A100/H100-class GPUs "
        "(DALI's default).")
    preallocate_width_hint: int = setting(
        0, min=0, max=65535, resume=FREE,
        help="Image width the hardware decoder preallocates for (0: the shards' stored "
        "width).")
    preallocate_height_hint: int = setting(
        0, min=0, max=65535, resume=FREE,
        help="Image height the hardware decoder preallocates for (0: the shards' stored "
        "height).")
    device_memory_padding: int = setting(
        16 * 2**20, min=0, max=2**31, resume=FREE,
        help="Bytes of GPU memory nvJPEG preallocates per DALI thread (0: allocate on "
        "demand; DALI's default 16 MiB).")
    host_memory_padding: int = setting(
        8 * 2**20, min=0, max=2**31, resume=FREE,
        help="Bytes of each of the two pinned host buffers nvJPEG preallocates per DALI "
        "thread (0: on demand; DALI's default 8 MiB).")
    hybrid_huffman_threshold: int = setting(
        1_000_000, min=0, max=2**31, resume=FREE,
        help="Images with more pixels than this use nvJPEG's hybrid Huffman decoder, smaller "
        "ones the host Huffman decoder (DALI's default 1,000,000: a 144×288 image has "
        "41,472).")

    def __post_init__(self):
        check_fields(self)

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
