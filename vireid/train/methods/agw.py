"""AGW (Ye et al., TPAMI 2021): non-local blocks, GeM pooling and the weighted regularised
triplet (docs/recipe.md). The default method, trained 81 epochs as the original."""

from vireid.choices import Method
from vireid.train.losses import weighted_regularized_triplet
from vireid.train.methods import MethodSpec, register

AGW = register(MethodSpec(Method.AGW, non_local=True, pooling="gem",
                          metric_loss=weighted_regularized_triplet, epochs=81,
                          summary="non-local, GeM, weighted regularised triplet"))
