"""Every option with a fixed set of values, as a string-valued Enum.

The CLI offers exactly these values (typer lists them in ``--help`` and refuses others while
parsing); the library compares and stores them like the strings they are, so config files and
checkpoints hold plain words.
"""

from __future__ import annotations

from enum import Enum

from vireid.errors import VireidError


class Choice(str, Enum):
    """A str Enum whose ``str()`` is its value (as in f-strings and JSON)."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)

    @classmethod
    def parse(cls, value, what: str):
        """``value`` as a member, or a one-line error naming ``what`` and the choices."""
        try:
            return cls(value)
        except ValueError:
            raise VireidError(what, f"unknown choice {value!r} ({', '.join(cls.values())})") \
                from None


class Device(Choice):
    AUTO = "auto"  # CUDA when a GPU is visible, else the CPU
    CPU = "cpu"
    CUDA = "cuda"


class Amp(Choice):
    AUTO = "auto"  # fp16 on CUDA, off on a CPU
    BF16 = "bf16"
    FP16 = "fp16"
    OFF = "off"  # float32, as the original


class LoaderKind(Choice):
    DALI = "dali"
    REFERENCE = "reference"  # plain PyTorch (PIL + torchvision), no DALI needed


class CpuAugment(Choice):
    FUSED = "fused"  # DALI decodes, one compiled pass augments
    DALI = "dali"  # DALI's own operators (the GPU graph, on the CPU)


class SamplerOrder(Choice):
    EPOCH = "epoch"  # every identity in every epoch
    ORIGINAL = "original"  # independent draws per step


class Method(Choice):
    AGW = "agw"
    BASE = "base"
    CAJ = "caj"
    DEEN = "deen"


class Triplet(Choice):
    """The metric loss on the pooled features (default: the method's)."""

    WRT = "wrt"  # weighted regularised triplet (agw; CAJ's square = 0)
    HARD = "hard"  # batch-hard, margin 0.3 (base)
    ADP = "adp"  # CAJ's squared difference, clamped at 88 (caj)


class Views(Choice):
    """What one sampled (visible, infrared) pair becomes in a training batch."""

    SINGLE = "single"  # one visible and one infrared image (AGW, base)
    # CAJ: two independently augmented visible views, the second channel-exchanged, and the
    # infrared image with adaptive gray; erasing with the recipe's fill values
    CHANNEL = "channel"


class DecodeOn(Choice):
    """Where a CUDA run decodes its JPEG/PNG bytes (a CPU run always decodes on the CPU)."""

    MIXED = "mixed"  # nvJPEG: Huffman on CPU threads (or the hardware decoder), rest on the GPU
    CPU = "cpu"  # libjpeg-turbo on DALI's CPU threads, then copied to the GPU to be augmented


class Cache(Choice):
    """Where a training run keeps its decoded images (decoded once, then gathered per step)."""

    NONE = "none"  # decode every step's images again
    HOST = "host"  # one uint8 array in host memory
    DEVICE = "device"  # one uint8 tensor on the training device (the GPU's memory on CUDA)


class Arch(Choice):
    RESNET50 = "resnet50"
    RESNET18 = "resnet18"


class Recipe(Choice):
    VIREID = "vireid"  # vireid's defaults (see the README's table of deliberate differences)
    ORIGINAL = "original"  # the original's: its sampler, float32, its evaluation schedule


class Feature(Choice):
    """Which test features a model is scored on (``vireid-test --feature``)."""

    POOL = "pool"
    FC = "fc"
    BOTH = "both"  # the method's two rows: pool and fc (agw, base, caj); all and weighted (deen)
    ALL = "all"  # pool and fc parts concatenated (DEEN's distmat7: the six similarities summed)
    WEIGHTED = "weighted"  # 0.1 × the pool similarities + 0.9 × the fc ones (DEEN's distmat8)


class FlipRule(Choice):
    """How test features of an image and its mirror are combined (with flip averaging)."""

    MEAN = "mean"  # normalise((a + b) / 2) of the two L2-normalised outputs (CAJ's testa.py)
    SUM = "sum"  # a + b, not normalised again (DEEN's test.py)
