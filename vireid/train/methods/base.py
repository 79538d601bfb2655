"""The baseline of the AGW paper: no non-local blocks, average pooling, and a batch-hard
triplet with margin 0.3 (docs/recipe.md)."""

from vireid.choices import Method
from vireid.train.losses import hard_triplet
from vireid.train.methods import MethodSpec, register

BASE = register(MethodSpec(Method.BASE, non_local=False, pooling="avg",
                           metric_loss=hard_triplet, epochs=81,
                           summary="average pooling, batch-hard triplet (margin 0.3)"))
