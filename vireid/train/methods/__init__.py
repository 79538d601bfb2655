"""Training methods, from a registry like the dataset readers and the loaders.

A method owns what differs between recipes on the same two-stream network: the model's head
(non-local blocks, pooling), the metric loss added to the identity cross-entropy, the views
its training batches hold, and its defaults (the schedule length, flip averaging at test).
A new method is one module here that calls ``register``. ``list_methods()`` names them;
``get_method(name)`` returns its ``MethodSpec``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vireid.choices import Method, Triplet, Views
from vireid.errors import VireidError

MetricLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (pooled, labels) → loss


@dataclass(frozen=True)
class MethodSpec:
    name: Method
    non_local: bool  # non-local blocks in the shared trunk
    pooling: str  # "gem" (p = 3) or "avg"
    metric_loss: MetricLoss  # on the pooled features, weight 1, added to cross-entropy
    epochs: int  # default schedule length
    summary: str
    views: Views = Views.SINGLE  # what one sampled pair becomes in a training batch
    flip: bool = False  # test features averaged with the mirrored image's, by default

    def build_model(self, num_classes: int, arch, pretrained: str = "torchvision"):
        from vireid.model import build_model

        return build_model(num_classes, arch=arch, non_local=self.non_local,
                           pooling=self.pooling, pretrained=pretrained)

    def losses(self, pooled: torch.Tensor, logits: torch.Tensor,
               labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named loss tensors: ``total`` = identity + metric loss, each with weight 1 (no
        label smoothing); cross-entropy in float32."""
        identity = F.cross_entropy(logits.float(), labels)
        metric = self.metric_loss(pooled, labels)
        return {"total": identity + metric, "id": identity, "triplet": metric}


_REGISTRY: dict[Method, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    _REGISTRY[spec.name] = spec
    return spec


def list_methods() -> list[str]:
    return [name.value for name in _REGISTRY]


def get_method(name, triplet=None) -> MethodSpec:
    """The registered method; ``triplet`` (a ``Triplet``) swaps its metric loss (None: the
    method's own), e.g. ``get_method("caj", "wrt")``: CAJ with the original's square = 0."""
    method = Method.parse(name, "method")
    if method not in _REGISTRY:
        raise VireidError("method", f"{name!r} is not registered ({', '.join(list_methods())})")
    spec = _REGISTRY[method]
    if triplet is None:
        return spec
    return dataclasses.replace(spec, metric_loss=metric_loss(Triplet.parse(triplet, "triplet")))


def metric_loss(triplet: Triplet) -> MetricLoss:
    from vireid.train import losses

    return {Triplet.WRT: losses.weighted_regularized_triplet, Triplet.HARD: losses.hard_triplet,
            Triplet.ADP: losses.adp_triplet}[triplet]


from vireid.train.methods import agw, base, caj  # noqa: E402,F401  (each module registers itself)
