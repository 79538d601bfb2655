"""DALI outputs → PyTorch tensors, with the lifetime of every batch made explicit.

DALI's default (dynamic) executor hands out its own output memory and frees it in stream
order once nothing refers to it. A PyTorch view of that memory is only safe while every kernel
that reads it runs before the free, which today would hold only by accident (a host
synchronisation somewhere in the step). So:

- **CUDA:** the pipeline runs with PyTorch's current stream as its output stream (DALI makes
  the outputs ready on that stream and frees them in its order), and each batch is copied on
  that stream into memory from PyTorch's allocator. The trainer only ever sees tensors that
  PyTorch owns: removing a synchronisation, prefetching further or capturing CUDA graphs
  cannot let DALI overwrite a batch that a kernel still reads. The copy is one 16 MB
  device-to-device transfer per 64-image batch.
- **CPU:** there are no asynchronous readers; the tensor is a view whose reference keeps
  DALI's buffer alive (DLPack's deleter frees it when the last view dies), so a batch stays
  valid for as long as anyone holds it.
"""

from __future__ import annotations

import torch


def consumer_stream(device: str):
    """The stream DALI should make its outputs ready on: PyTorch's current one (CUDA only)."""
    return torch.cuda.current_stream() if device == "cuda" else None


def run_pipeline(pipe, device: str):
    """One ``pipe.run()``, its outputs bound to PyTorch's stream on CUDA."""
    stream = consumer_stream(device)
    return pipe.run(stream) if stream is not None else pipe.run()


def to_torch(output) -> torch.Tensor:
    """A dense DALI TensorList as a tensor PyTorch owns (CUDA) or a reference-held view (CPU)."""
    tensor = torch.from_dlpack(output.as_tensor())
    return tensor.clone() if tensor.is_cuda else tensor
