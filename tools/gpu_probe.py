"""The first two steps of ``make gpu-check``: install the wheels brought in ``.gpuw*``
pieces, then probe the machine (each run by ``tools/gpu_check.py`` in its own process).

The probe writes what it found to a JSON file after each part, so a probe that hangs still
reports what came before: the GPU(s), driver, CUDA/cuDNN/NCCL as PyTorch sees them, library
versions (or why one does not import), whether ``torch.compile`` can build kernels (a C
compiler and Python.h), and whether JPEG really decodes on the GPU. Two signals, both needed:
after one ``mixed`` decode libnvjpeg is mapped into the process (/proc/self/maps; without it
DALI decodes on the CPU without saying so, and the GPU parity tests would pass for the wrong
reason), and nvImageCodec, restricted to its CUDA decoder, returns the image in device memory
(nvImageCodec maps libnvjpeg whenever it loads, so the mapping alone proves only that the
library is there). The hardware JPEG engine is tried alone too, and reported.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

VERSIONS = ("torch", "torchvision", "numpy", "PIL", "nvidia.dali", "nvidia.nvimgcodec",
            "webdataset", "pytest", "pytest_timeout")


def _first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"


def install(root: Path, site: Path) -> int:
    """The wheels of ``.gpuw*/part.*`` (pieces of one tar, in name order) into ``site``,
    without network or dependencies; then whether DALI and webdataset import from there."""
    parts = sorted(root.glob(".gpuw*/part.*"), key=lambda path: path.name)
    if not parts:
        print("install: no .gpuw*/part.* pieces here; nothing to install")
        return 0
    work = Path(tempfile.mkdtemp(prefix="vireid-wheels-"))
    try:
        with open(work / "w.tar", "wb") as archive:
            for part in parts:
                with open(part, "rb") as piece:
                    shutil.copyfileobj(piece, archive, 16 << 20)
        with tarfile.open(work / "w.tar") as archive:
            archive.extractall(work / "w", filter="data")
        wheels = sorted((work / "w").rglob("*.whl"))
        print(f"install: {len(parts)} pieces, {len(wheels)} wheels → {site}", flush=True)
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index",
                              "--no-deps", "--no-compile", "--upgrade", "--target", str(site),
                              *map(str, wheels)])
        if pip.returncode != 0:
            print("install: pip failed; unpacking the wheels directly", flush=True)
            for wheel in wheels:
                unpack(wheel, site)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(root)])}
    check = subprocess.run([sys.executable, "-c", "import nvidia.dali, webdataset; print("
                            "'install: nvidia.dali', nvidia.dali.__version__, 'and webdataset',"
                            " webdataset.__version__, 'import')"], env=env)
    return check.returncode


def unpack(wheel: Path, site: Path) -> None:
    """A wheel installed by hand: its files into ``site``, ``*.data/purelib|platlib`` too."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    for data in site.glob("*.data"):
        for kind in ("purelib", "platlib"):
            if (data / kind).is_dir():
                shutil.copytree(data / kind, site, dirs_exist_ok=True)
        shutil.rmtree(data)


def _gpu() -> dict:
    import torch

    count = torch.cuda.device_count()
    nccl = "unavailable"
    if torch.distributed.is_available() and torch.distributed.is_nccl_available():
        nccl = ".".join(map(str, torch.cuda.nccl.version()))
    return {"count": count, "names": [torch.cuda.get_device_name(i) for i in range(count)],
            "memory_gib": [round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)
                           for i in range(count)],
            "capability": [".".join(map(str, torch.cuda.get_device_capability(i)))
                           for i in range(count)],
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "nccl": nccl}


def _driver() -> dict:
    if shutil.which("nvidia-smi"):
        found = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                                "--format=csv,noheader"], capture_output=True, text=True,
                               timeout=20)
        if found.returncode == 0 and found.stdout.strip():
            return {"version": found.stdout.split()[0]}
    text = Path("/proc/driver/nvidia/version").read_text()
    return {"version": text.split("Kernel Module")[-1].split()[0], "line": text.splitlines()[0]}


def _versions() -> dict:
    found = {}
    for name in VERSIONS:
        try:
            module = importlib.import_module(name)
            found[name] = getattr(module, "__version__", None) or _distribution_version(name)
        except Exception as error:  # noqa: BLE001 (any import failure is a finding)
            found[name] = f"not importable ({_first_line(error)})"
    return found


def _distribution_version(module: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(module.replace("_", "-"))
    except metadata.PackageNotFoundError:
        return "?"


def _compiler() -> dict:
    from vireid.train.device import compiler_missing

    return {"missing": compiler_missing(), "cc": shutil.which("cc") or shutil.which("gcc")}


def _jpeg() -> bytes:
    """A 64×32 JPEG of smooth colour ramps (4:2:0, quality 90)."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:64, 0:32]
    pixels = np.stack([y * 4, x * 8, (x + y) * 3], axis=-1).astype(np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, format="JPEG", quality=90)
    return encoded.getvalue()


def _decode() -> dict:
    """One JPEG through DALI's ``mixed`` and CPU decoders: which codec libraries are mapped
    afterwards, and how far apart the two decodes are."""
    import numpy as np
    from nvidia.dali import fn, pipeline_def, types

    data = np.frombuffer(_jpeg(), np.uint8)

    @pipeline_def(batch_size=2, num_threads=2, device_id=0)
    def pipe():
        jpegs = fn.external_source(source=lambda: [data, data], batch=True)
        return (fn.decoders.image(jpegs, device="mixed", output_type=types.RGB,
                                  jpeg_fancy_upsampling=True),
                fn.decoders.image(jpegs, device="cpu", output_type=types.RGB,
                                  jpeg_fancy_upsampling=True))

    built = pipe()
    built.build()
    gpu, cpu = built.run()
    difference = np.abs(np.asarray(gpu.as_cpu().at(0), np.int16) - np.asarray(cpu.at(0)))
    maps = Path("/proc/self/maps").read_text().splitlines()
    libraries = sorted({os.path.basename(line.split()[-1]) for line in maps
                        if "nvjpeg" in line or "nvimgcodec" in line})
    return {"libnvjpeg_mapped": any(name.startswith("libnvjpeg.so") for name in libraries),
            "libraries": libraries, "max_difference": int(difference.max()),
            "mean_difference": round(float(difference.mean()), 3)}


def _backends() -> dict:
    """nvImageCodec (DALI's decoding library) asked to decode a JPEG with only its CUDA
    decoder, then only the hardware JPEG engine: "decoded" (into device memory), "not
    decoded" (no such decoder here), or the error."""
    from nvidia import nvimgcodec

    encoded = _jpeg()
    found = {}
    for kind in ("GPU_ONLY", "HW_GPU_ONLY"):
        try:
            decoder = nvimgcodec.Decoder(device_id=0, backends=[
                nvimgcodec.Backend(getattr(nvimgcodec.BackendKind, kind))])
            image = decoder.decode(nvimgcodec.CodeStream(encoded))
            device = image is not None and "DEVICE" in str(image.buffer_kind)
            found[kind] = "decoded" if device else "not decoded"
        except Exception as error:  # noqa: BLE001 (what failed is the finding)
            found[kind] = _first_line(error)
    return found


PARTS = {"gpu": _gpu, "driver": _driver, "versions": _versions, "compiler": _compiler,
         "decode": _decode, "codec": _backends}


def probe(out: Path) -> int:
    """Every part of the probe into ``out`` (JSON, rewritten after each); 0 unless the GPU
    itself could not be read."""
    facts: dict = {}
    for name, part in PARTS.items():
        try:
            facts[name] = part()
        except Exception as error:  # noqa: BLE001 (what failed is the finding)
            facts[name] = {"error": _first_line(error)}
        out.write_text(json.dumps(facts, indent=1))
        print(f"probe: {name}: {json.dumps(facts[name])}", flush=True)
    decode = facts["decode"]
    decode["gpu_decoded"] = bool(decode.get("libnvjpeg_mapped")) and \
        facts["codec"].get("GPU_ONLY") == "decoded"  # both signals, or not proven
    out.write_text(json.dumps(facts, indent=1))
    print(f"probe: JPEG decoded on the GPU: {'yes' if decode['gpu_decoded'] else 'NOT PROVEN'}")
    return 1 if "error" in facts["gpu"] else 0
