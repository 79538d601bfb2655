"""The DALI graphs: the training graph (decoding + ``dali_augment.augment_nodes``), the
decode-only graph of the DALI-decoded route, and the evaluation graph, for CPU or GPU.

Which one a training loader runs, and on which device, is its route (``route.py``); the
decoder's place follows ``route.decoding_on``: nvJPEG (``mixed``) on a CUDA run unless it
decodes on the CPU; a CPU graph has CPU operators and ``device_id=None``.
"""

from __future__ import annotations

from collections.abc import Callable

from vireid.constants import IMAGENET_MEAN, IMAGENET_STD
from vireid.errors import VireidError
from vireid.loader.dali_augment import PLAIN, augment_nodes
from vireid.loader.dali_graph import check_gpu_kernels
from vireid.loader.route import Decoder, decoding_on
from vireid.loader.settings import DecoderOptions
from vireid.shards.encode import Encoding

NOT_INSTALLED = ("nvidia", "nvidia.dali")  # a missing module that means DALI is absent


def import_dali():
    """Import DALI lazily, failing early in one line: "not installed" (with the fix) only when
    nvidia.dali itself is missing; any other failure (a missing dependency, a library that
    cannot be loaded, no address space left under ``ulimit -v``) as DALI's own first line."""
    try:
        from nvidia import dali
        from nvidia.dali import fn, types
    except ModuleNotFoundError as error:
        if error.name in NOT_INSTALLED:
            raise VireidError("nvidia-dali", "not installed: pip install 'vireid[cuda130]' (or "
                              "[cuda120]), or use the reference loader (--loader reference)"
                              ) from None
        raise _unimportable(error) from None
    except Exception as error:  # ImportError, OSError, MemoryError, ... from DALI's import
        raise _unimportable(error) from None
    return dali, fn, types


def _unimportable(error: BaseException) -> VireidError:
    first = (str(error).strip().splitlines() or [""])[0]
    return VireidError("nvidia-dali", f"installed but cannot be imported: "
                       f"{type(error).__name__}: {first}")


def _scaled(values) -> list[float]:
    return [255.0 * v for v in values]


def _pipeline(batch_size: int, num_threads: int, device: str, device_id: int, prefetch: int):
    dali, _, _ = import_dali()
    return dali.Pipeline(batch_size=batch_size, num_threads=num_threads,
                         device_id=device_id if device == "cuda" else None,
                         prefetch_queue_depth=prefetch)


def _decoder(device: str, decoder: DecoderOptions | None = None,
             stored: tuple[int, int] | None = None) -> dict:
    """Decoder placement and options: ``mixed`` (nvJPEG) with ``decoder``'s options on a
    CUDA run unless it decodes on the CPU; the CPU decoder gets none of them (it accepts and
    ignores them). ``stored`` (height, width) fills the preallocation hints left at 0.
    ``jpeg_fancy_upsampling``: nvJPEG upsamples 4:2:0 chroma like libjpeg-turbo and PIL (its
    default differs at chroma edges), so GPU and CPU batches hold the same pixels within the
    stated JPEG tolerance."""
    decoder = decoder or DecoderOptions()
    if decoding_on(device, decoder.on) is Decoder.DALI_CPU:
        return {"device": "cpu", "jpeg_fancy_upsampling": True}
    return {"device": "mixed", "jpeg_fancy_upsampling": True,
            **decoder.mixed_arguments(stored)}


def _on_device(images, device: str):
    """Decoded images where the run augments: CPU-decoded ones are copied to the GPU."""
    return images.gpu() if device == "cuda" and images.device == "cpu" else images


def _decode(data, encoding: Encoding, device: str, fn, types,
            decoder: DecoderOptions | None = None, stored: tuple[int, int] | None = None):
    if encoding is Encoding.RAW:
        return data.gpu() if device == "cuda" else data
    return _on_device(fn.decoders.image(data, output_type=types.RGB,
                                        **_decoder(device, decoder, stored)), device)


def train_pipeline(source: Callable, *, batch_size: int, encoding: Encoding, height: int,
                   width: int, device: str, device_id: int, num_threads: int, prefetch: int,
                   arguments: tuple[str, ...] = PLAIN, fill=(0.0, 0.0, 0.0),
                   decoder: DecoderOptions | None = None):
    """The DALI graph route: external_source → decode the crop's in-image region (raw
    shards: the callback slices it) → ``dali_augment.augment_nodes`` → float16 HWC. The
    callback gives ``dali_augment.graph_inputs``: region start and shape (encoded shards
    only), then the ``arguments`` by name, in that order; ``fill`` is the erase fill."""
    _, fn, types = import_dali()
    pipe = _pipeline(batch_size, num_threads, device, device_id, prefetch)
    count = len(arguments)
    with pipe:
        if encoding is Encoding.RAW:
            region, *passed = fn.external_source(
                source=source, num_outputs=1 + count, batch=True, batch_info=True,
                layout=["HWC"] + [None] * count, dtype=[types.UINT8] + [None] * count)
            images = region.gpu() if device == "cuda" else region
        else:
            data, anchor, shape, *passed = fn.external_source(
                source=source, num_outputs=3 + count, batch=True, batch_info=True)
            images = fn.decoders.image_slice(
                data, anchor, shape, axis_names="HW", normalized_anchor=False,
                normalized_shape=False, output_type=types.RGB,
                **_decoder(device, decoder, (height, width)))
            images = _on_device(images, device)
        pipe.set_outputs(augment_nodes(images, dict(zip(arguments, passed)), height=height,
                                       width=width, fill=fill, fn=fn, types=types))
    check_gpu_kernels(pipe)
    return pipe


def decode_pipeline(source: Callable, *, batch_size: int, encoding: Encoding,
                    num_threads: int, prefetch: int):
    """CPU graph of the DALI-decoded route: external_source → decode (raw: nothing to
    decode) → uint8 HWC images, with each image's sample number and step (epoch, step)
    passed through alongside, by which the loader finds the step's plan and augments."""
    _, fn, types = import_dali()
    pipe = _pipeline(batch_size, num_threads, "cpu", 0, prefetch)
    with pipe:
        data, *passed = fn.external_source(
            source=source, num_outputs=3, batch=True, batch_info=True,
            layout=["HWC" if encoding is Encoding.RAW else None, None, None])
        images = _decode(data, encoding, "cpu", fn, types)
        pipe.set_outputs(images, *passed)
    return pipe


def eval_pipeline(source: Callable, *, batch_size: int, encoding: Encoding,
                  stored: tuple[int, int], size: tuple[int, int], device: str, device_id: int,
                  num_threads: int, decoder: DecoderOptions | None = None):
    """external_source (stored bytes, up to ``batch_size`` per call) → decode → resize if
    asked → normalise to float16 HWC."""
    _, fn, types = import_dali()
    pipe = _pipeline(batch_size, num_threads, device, device_id, 2)
    with pipe:
        raw = encoding is Encoding.RAW
        data = fn.external_source(source=source, batch=True, batch_info=True,
                                  layout="HWC" if raw else None,
                                  dtype=types.UINT8)
        images = _decode(data, encoding, device, fn, types, decoder, tuple(stored))
        if tuple(stored) != tuple(size):
            images = fn.resize(images, size=list(size), antialias=True)
        images = fn.crop_mirror_normalize(
            images, mean=_scaled(IMAGENET_MEAN), std=_scaled(IMAGENET_STD),
            dtype=types.FLOAT16, output_layout="HWC")
        pipe.set_outputs(images)
    check_gpu_kernels(pipe)
    return pipe
