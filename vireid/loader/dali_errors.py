"""DALI's failures as one line each, blaming the shards only when a named image is damaged.

DALI reports an operator failure as several paragraphs: the operator, where the graph defined
it, and after ``encountered:`` the reason. It does not say which sample of the batch failed.
A decoder's failure is traced to its sample by decoding the batch's candidates on the CPU
(PIL): only an image that fails there too is blamed on the shards, with the tar, the key and
the command that checks them. Anything else (out of memory, an unsupported type, an nvJPEG
error on a valid image) is DALI's own reason in one line.

The failed pipeline is stopped first (``stop_pipeline``): its threads may still be decoding
the batches it prefetched, and must not run on while the batch is decoded again with PIL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vireid.errors import VireidError
from vireid.loader.source import decode_problem

OUT_OF_MEMORY = ("out of memory", "bad_alloc", "cudaErrorMemoryAllocation",
                 "CUDA_ERROR_OUT_OF_MEMORY", "Can't allocate")
_OPERATOR = re.compile(r"Error in (\w+) operator `([^`]+)`")


@dataclass(frozen=True)
class DaliFailure:
    operator: str | None  # e.g. "nvidia.dali.fn.decoders.image_slice" (None: not an operator)
    backend: str | None  # CPU, GPU or MIXED
    reason: str  # DALI's reason, one line

    @property
    def decoding(self) -> bool:
        """A decoder failed for a reason that the image's bytes can explain."""
        return bool(self.operator and ".decoders." in self.operator) and not any(
            word.lower() in self.reason.lower() for word in OUT_OF_MEMORY)

    def sentence(self) -> str:
        where = f" in {self.backend} operator {self.operator}" if self.operator else ""
        return f"DALI failed{where}: {self.reason}"


def parse_failure(error: BaseException) -> DaliFailure:
    """The operator and the reason of a DALI error message."""
    text = str(error)
    match = _OPERATOR.search(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "encountered:" in lines:
        lines = lines[lines.index("encountered:") + 1:]
    lines = [line for line in lines if not line.startswith(("Critical error",
                                                            "Current pipeline object"))]
    reason = (lines[0] if lines else text.strip() or type(error).__name__)[:300]
    return DaliFailure(match.group(2) if match else None,
                       match.group(1).upper() if match else None, reason)


def stop_pipeline(pipe) -> None:
    """Stop ``pipe``'s threads and free what it holds, now rather than when the garbage
    collector gets to it; ``None`` (no pipeline) is a no-op, and so is a second call.
    DALI 2.4 has no public call for this: ``_shutdown`` is what its own ``__del__`` and
    exit hook run."""
    shutdown = getattr(pipe, "_shutdown", None)
    if shutdown is not None:
        shutdown()


def explain(error: BaseException, source, suspects, where, pipe=None) -> VireidError:
    """DALI's ``error`` as a VireidError: a damaged image among ``suspects`` (global sample
    numbers) named with its shard, else DALI's reason at ``where``. ``pipe``, the pipeline
    that failed, is stopped before anything is decoded again."""
    stop_pipeline(pipe)
    failure = parse_failure(error)
    if failure.decoding and source.manifest.encoding.value != "raw":
        for sample in dict.fromkeys(int(s) for s in suspects):
            problem = decode_problem(source.read(sample).tobytes())
            if problem:
                return source.damaged(sample, problem)
    return VireidError(where, failure.sentence())
