"""Checkpoints written by the original AGW and DEEN code (``…_best.t``), read into vireid's
models.

The original saves ``{'net': model.state_dict(), 'cmc': numpy array, 'mAP': numpy float,
'mINP': numpy float, 'epoch': int}``. Its ``net`` names the modules as the original does;
``original_to_vireid`` renames them (a ``.`` ends each prefix):

    visible_module.visible.{conv1,bn1}   → backbone.visible_stem.{0,1}
    thermal_module.thermal.{conv1,bn1}   → backbone.infrared_stem.{0,1}
    base_resnet.base.layerN.B            → backbone.trunk.(N-1).(B + non-local blocks before B)
    NL_N.J.{g.0,theta,phi,W.0,W.1}       → backbone.trunk.(N-1).(position).{g,theta,phi,out.0,out.1}
    bottleneck, classifier               → head.bottleneck, head.classifier

e.g. ``NL_3.1.W.1.weight`` → ``backbone.trunk.2.6.out.1.weight`` (layer3's non-local blocks
follow blocks 3, 4, 5, so block 4 sits at 5 and the second non-local block at 6). Unused copies
are checked and dropped: the whole ResNet-50 inside each stem module (its layer1..layer4) and
the trunk module's own conv1/bn1 (the original's resnet.py has no fc).

What the weights tell: the class count (classifier rows) and whether non-local blocks exist.
What they cannot: the pooling (GeM p = 3 has no weights; the original saves no flags), so it
follows the original's train.py pairing, ``--method agw`` = non-local + GeM, ``base`` = neither
(a run with one flag changed by hand would load with the wrong pooling); and the architecture,
which is always resnet50 (the original's modules build it; other weights fail on a key).

DEEN's authors (ZYK100/LLCM ``DEEN/``) save the same dictionary, with their network's keys,
which are vireid's ``DEEN``'s (its load hook drops the unused copies, checking their shapes).
It is told apart by DEE's weights (``DEE.FC11.weight``); its variant by MFA3's
(``MFA3.CNL.g.weight``: the SYSU/LLCM network; without: RegDB's), its class count by the
classifier's rows (``original_deen``).
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from vireid.errors import VireidError
from vireid.model.agw import AGW
from vireid.model.deen import DEEN
from vireid.model.layers import NonLocal

log = logging.getLogger(__name__)
ARCH = "resnet50"
METHODS = {"agw": (True, "gem"), "base": (False, "avg")}  # the original's --method → flags
MARKERS = ("visible_module.visible.conv1.weight", "thermal_module.thermal.conv1.weight",
           "base_resnet.base.layer1.0.conv1.weight", "classifier.weight")
STEMS = {"backbone.visible_stem.0.": "visible_module.visible.conv1.",
         "backbone.visible_stem.1.": "visible_module.visible.bn1.",
         "backbone.infrared_stem.0.": "thermal_module.thermal.conv1.",
         "backbone.infrared_stem.1.": "thermal_module.thermal.bn1.", "head.": ""}
NONLOCAL_PARTS = {"g": "g.0", "out": "W"}  # theta, phi keep their names
DEEN_MARKER = "DEE.FC11.weight"  # DEE's first dilated convolution: DEEN's alone
DEEN_FULL_MARKER = "MFA3.CNL.g.weight"  # MFA3: the SYSU/LLCM network; RegDB's has none
# What the weights-only unpickler says when it refuses a global, a class or a function.
_REFUSED = re.compile(r"GLOBAL ([\w.]+)|allowlisted.*?but got <class '([\w.]+)'>"
                      r"|unrecognized function (\S+)", re.S)


def numpy_globals() -> list:
    """Exactly what unpickling the original's numpy values needs: the float32/float64 'cmc'
    array (``_reconstruct``, ``ndarray``, ``dtype`` and the two dtype classes) and numpy
    float scalars (``scalar``). Files written under numpy 1.x name ``numpy.core.multiarray``,
    under 2.x ``numpy._core.multiarray``: both names are allowed, for the same objects."""
    try:
        from numpy._core import multiarray  # numpy 2 (and 1.26's forward-compatible alias)
    except ImportError:  # pragma: no cover - numpy < 1.26
        from numpy.core import multiarray
    named = [(getattr(multiarray, name), f"{module}.{name}") for name in ("_reconstruct", "scalar")
             for module in ("numpy.core.multiarray", "numpy._core.multiarray")]
    dtypes = [type(np.dtype(np.float32)), type(np.dtype(np.float64))]  # BUILD needs the classes
    return [*named, (np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype"), *dtypes]


def read_original(path) -> dict:
    """The file's payload, unpickled with ``weights_only=True`` plus ``numpy_globals()``:
    anything else that would need unpickling (a class, a function) is refused, unexecuted."""
    path = Path(path)
    if not path.is_file():
        raise VireidError(path, "checkpoint not found")
    try:
        with torch.serialization.safe_globals(numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise VireidError(path, _unpickling_problem(error)) from None
    except Exception as error:  # noqa: BLE001 - torch raises many types for bad files
        raise VireidError(path, f"not a torch checkpoint ({type(error).__name__})") from None


def _unpickling_problem(error: Exception) -> str:
    match = _REFUSED.search(str(error))
    if match is None:
        return "not a torch checkpoint (UnpicklingError)"
    name = next(group for group in match.groups() if group)
    return f"refused: it holds {name} (not a tensor, number or numpy float), and loading it " \
           "could run code"


def is_original(payload) -> bool:
    """Whether ``payload`` is the original's checkpoint, told by content: a ``net`` state dict
    with the original's module names (the file name says nothing)."""
    net = payload.get("net") if isinstance(payload, Mapping) else None
    return isinstance(net, Mapping) and all(isinstance(net.get(k), torch.Tensor)
                                            for k in MARKERS)


def is_original_deen(payload) -> bool:
    """Whether ``payload`` is a checkpoint of the DEEN authors' code (the original's format
    with DEE's weights)."""
    return is_original(payload) and isinstance(payload["net"].get(DEEN_MARKER), torch.Tensor)


def original_deen(net: Mapping, where="net") -> tuple[dict, int, str, dict]:
    """(state dict, classes, arch, model options) of the DEEN authors' ``net``: their keys
    as they are (every value must be a tensor; the network's strict load checks the keys
    and shapes), ``{"variant": "full" | "regdb"}`` from MFA3's presence."""
    classifier = net.get("classifier.weight")
    if not isinstance(classifier, torch.Tensor) or classifier.dim() != 2:
        raise VireidError(where, "missing key 'classifier.weight' (or it is not a matrix)")
    for key, value in net.items():
        if not isinstance(value, torch.Tensor):
            raise VireidError(where, f"key {key!r} is {type(value).__name__}, not a tensor")
    variant = "full" if DEEN_FULL_MARKER in net else "regdb"
    return dict(net), classifier.shape[0], ARCH, {"variant": variant}


def original_to_vireid(net: dict, where="net") -> tuple[dict, int, str, str]:
    """(vireid state dict, classes, arch, method) of the original's ``net``; a missing, an
    unexpected or a misshapen key is a VireidError naming it."""
    classifier = net.get("classifier.weight")
    if not isinstance(classifier, torch.Tensor) or classifier.dim() != 2:
        raise VireidError(where, "missing key 'classifier.weight' (or it is not a matrix)")
    classes = classifier.shape[0]
    method = "agw" if any(key.startswith("NL_") for key in net) else "base"
    layout = original_layout(_template(classes, method))
    _check_keys(net, layout, where)
    state = {vireid: net[key] for key, (vireid, _) in layout.items() if vireid is not None}
    return state, classes, ARCH, method


def _template(classes: int, method: str):
    """vireid's model for ``method`` on the meta device: shapes, no memory, no initialisation."""
    from vireid.model import build_model  # the package re-exports this module

    non_local, pooling = METHODS[method]
    with torch.device("meta"):
        return build_model(classes, ARCH, non_local=non_local, pooling=pooling,
                           pretrained="none")


def original_layout(model) -> dict[str, tuple[str | None, torch.Size]]:
    """Every key of the original's state dict → (vireid key, or None for an unused copy;
    shape)."""
    prefixes = _trunk_prefixes(model.backbone.trunk)
    layout = {}
    for key, tensor in model.state_dict().items():
        original = _original_name(key, prefixes)
        layout[original] = (key, tensor.shape)
        for copy in _unused_copies(original):
            layout[copy] = (None, tensor.shape)
    return layout


def _trunk_prefixes(trunk) -> dict[str, str]:
    """vireid's trunk positions "stage.index" → the original's module of that position."""
    prefixes = {}
    for stage, layer in enumerate(trunk):
        counts = {True: 0, False: 0}  # non-local blocks, residual blocks so far
        for index, module in enumerate(layer):
            is_nl = isinstance(module, NonLocal)
            name = f"NL_{stage + 1}" if is_nl else f"base_resnet.base.layer{stage + 1}"
            prefixes[f"{stage}.{index}"] = f"{name}.{counts[is_nl]}"
            counts[is_nl] += 1
    return prefixes


def _original_name(key: str, prefixes: dict[str, str]) -> str:
    for vireid, original in STEMS.items():
        if key.startswith(vireid):
            return original + key.removeprefix(vireid)
    stage, index, rest = key.removeprefix("backbone.trunk.").split(".", 2)
    prefix = prefixes[f"{stage}.{index}"]
    part, _, name = rest.partition(".")
    if prefix.startswith("NL_") and part in NONLOCAL_PARTS:
        rest = f"{NONLOCAL_PARTS[part]}.{name}"
    return f"{prefix}.{rest}"


def _unused_copies(original: str) -> list[str]:
    """The original keeps a whole ResNet-50 in each stem module and a stem in its trunk."""
    if original.startswith("base_resnet.base.layer"):
        rest = original.removeprefix("base_resnet.base.")
        return [f"visible_module.visible.{rest}", f"thermal_module.thermal.{rest}"]
    if original.startswith("visible_module.visible."):
        return ["base_resnet.base." + original.removeprefix("visible_module.visible.")]
    return []


def _check_keys(net: Mapping, layout: dict, where) -> None:
    for key in layout:
        if key not in net:
            raise VireidError(where, f"missing key {key!r} (an incomplete or another model's "
                              "checkpoint)")
    for key, value in net.items():
        if key not in layout:
            raise VireidError(where, f"unexpected key {key!r} (not in the original AGW format)")
        shape = tuple(layout[key][1])
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise VireidError(where, f"key {key!r} is {found}, the original's is {shape}")


def load_original(path) -> AGW | DEEN:
    """vireid's model (eval mode) with the weights of an original AGW or DEEN checkpoint."""
    payload = read_original(path)
    if not is_original(payload):
        raise VireidError(path, "not a checkpoint of the original AGW code (no 'net' state "
                          "dict with its module names)")
    if is_original_deen(payload):
        return _load_deen(payload["net"], path)
    state, classes, arch, method = original_to_vireid(payload["net"], where=path)
    model = _template(classes, method).to_empty(device="cpu")
    model.load_state_dict(state)
    log.info("%s: original AGW checkpoint, %s %s, %d classes, epoch %s", path, arch, method,
             classes, payload.get("epoch"))
    return model.eval()


def _load_deen(net: Mapping, path) -> DEEN:
    state, classes, arch, options = original_deen(net, where=path)
    with torch.device("meta"):
        model = DEEN(classes, arch, pretrained="none", **options)
    model = model.to_empty(device="cpu")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()[:160]
        raise VireidError(path, f"weights do not fit DEEN's {options['variant']} network "
                          f"({first})") from None
    log.info("%s: original DEEN checkpoint, %s %s, %d classes", path, arch, options["variant"],
             classes)
    return model.eval()
