"""Training methods, from a registry like the dataset readers and the loaders.

A method owns what differs between recipes: the network (AGW's two-stream network with its
head's options, or its own: ``build_model``), its losses (the identity cross-entropy plus a
metric loss, or its own: ``losses``), the views its training batches hold, its training
augmentation on a dataset beyond the views (``augmentation``), its defaults (the
schedule length, other settings' values in ``settings``), and how it is tested (flip
averaging and its rule, the feature rows scored, the row that selects ``best.pt``).
A new method is one module here that calls ``register``. ``list_methods()`` names them;
``get_method(name)`` returns its ``MethodSpec``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from vireid.choices import FlipRule, Method, Recipe, Triplet, Views
from vireid.errors import VireidError
from vireid.loader.augment import Augmentation

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
    flip: bool = False  # test features combined with the mirrored image's, by default
    flip_rule: FlipRule = FlipRule.MEAN  # how (vireid.eval.features)
    features: tuple[str, ...] = ("pool", "fc")  # the rows scored by default
    select: str = "fc"  # the feature whose Rank-1 selects best.pt
    branches: int = 1  # rows of pooled features and logits per input image
    # other settings' defaults (flat names), filled where not given: for every recipe, and
    # on top for one recipe (``TrainConfig.with_recipe``)
    settings: Mapping[str, object] = field(default_factory=dict)
    recipe_settings: Mapping[Recipe, Mapping[str, object]] = field(default_factory=dict)
    swappable_metric: bool = True  # --triplet may replace ``metric_loss``
    other_views: bool = True  # --views may give it other views
    image_size: tuple[int, int] | None = None  # the authors' (height, width), if their own

    def size_warning(self, height: int, width: int) -> str | None:
        """One line when the shards' images are not the size the method's authors train at
        (small sizes serve tests and demos, so it is a warning, not an error)."""
        if self.image_size is None or (height, width) == tuple(self.image_size):
            return None
        wanted_h, wanted_w = self.image_size
        return (f"{self.name}: the shards hold {height}x{width} images; the authors train at "
                f"{wanted_h}x{wanted_w} (Lanczos pre-resize: vireid-shard build … --height "
                f"{wanted_h} --width {wanted_w}), so results will not compare with theirs")

    def model_options(self, dataset: str | None) -> dict:
        """Options of ``build_model`` that the training data decides (recorded in
        checkpoints as ``model_options``); none for AGW's network."""
        return {}

    def augmentation(self, dataset: str | None) -> Augmentation:
        """The training augmentation on ``dataset`` (the shards' manifest names it) beyond
        the views': random gray, erase area, erase fill. AGW's for AGW's network."""
        return Augmentation()

    def build_model(self, num_classes: int, arch, pretrained: str = "torchvision", **options):
        from vireid.model import build_model

        return build_model(num_classes, arch=arch, non_local=self.non_local,
                           pooling=self.pooling, pretrained=pretrained, **options)

    def losses(self, pooled: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, *,
               num_pos: int | None = None) -> dict[str, torch.Tensor]:
        """Named loss tensors: ``total`` = identity + metric loss, each with weight 1 (no
        label smoothing); cross-entropy in float32. ``num_pos`` (K) is for methods whose
        losses read the batch's P×K blocks."""
        identity = F.cross_entropy(logits.float(), labels)
        metric = self.metric_loss(pooled, labels)
        return {"total": identity + metric, "id": identity, "triplet": metric}

    def defaults(self, recipe: Recipe) -> dict:
        """The settings this method gives a value under ``recipe`` (flat names)."""
        return {**self.settings, **self.recipe_settings.get(Recipe(recipe), {})}


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
    loss = metric_loss(Triplet.parse(triplet, "triplet"))
    if loss is not spec.metric_loss and not spec.swappable_metric:
        raise VireidError("triplet", f"{triplet}: {method}'s losses are its own (its metric "
                          f"loss is {spec.metric_loss.__name__}); leave --triplet out")
    return dataclasses.replace(spec, metric_loss=loss)


def metric_loss(triplet: Triplet) -> MetricLoss:
    from vireid.train import losses

    return {Triplet.WRT: losses.weighted_regularized_triplet, Triplet.HARD: losses.hard_triplet,
            Triplet.ADP: losses.adp_triplet}[triplet]


from vireid.train.methods import agw, base, caj, deen  # noqa: E402,F401  (each registers itself)
