"""DEEN (Zhang & Wang, CVPR 2023): the DEEN network (``vireid.model.deen``: MFA blocks after
the stages, DEE tripling the batch before the last one), its losses
(``vireid.train.deen_losses``: identity and batch-hard triplet over the three branches, CPM,
orthogonality), the authors' schedule (151 epochs, drops at 20 and 80), P = 6, K = 4, and
their test rule: flip features summed without normalising again, scored on all six parts
(``all``, the authors' distmat7; it selects best.pt) and on 0.1·pool + 0.9·BN (``weighted``,
distmat8). The RegDB variant (no MFA3, no layer4) is built for RegDB data, as the authors'
constructor does (``dataset == 'regdb'``). Its training augmentation is the authors'
(``augmentation``): random gray (p = 0.5, both modalities, PIL's luma before normalisation),
erasing over 0.2-0.8 of the image on SYSU-MM01 and 0.02-0.4 on RegDB and LLCM, filled with
(0.485, 0.456, 0.406) in normalised space. docs/methods.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vireid.choices import FlipRule, Method, Recipe
from vireid.constants import IMAGENET_MEAN
from vireid.loader.augment import ERASE_AREA, Augmentation
from vireid.train.losses import hard_triplet
from vireid.train.methods import MethodSpec, register

BRANCHES = 3  # DEE's [original; expansion 1; expansion 2], stacked along the batch
VARIANTS = {"regdb": "regdb"}  # dataset → the network's variant; every other dataset: "full"
GRAY_P = 0.5  # RandomGrayscale(p=0.5) on both modalities
# dataset → the erased fraction of the image (train.py's RandomErasing per dataset); a
# dataset the authors did not train on: AGW's (0.02, 0.4)
ERASE_AREAS = {"sysu": (0.2, 0.8), "regdb": (0.02, 0.4), "llcm": (0.02, 0.4)}


@dataclass(frozen=True)
class DeenSpec(MethodSpec):
    """A method with its own network and losses."""

    def model_options(self, dataset: str | None) -> dict:
        return {"variant": VARIANTS.get(str(dataset), "full")}

    def augmentation(self, dataset: str | None) -> Augmentation:
        return Augmentation(gray=GRAY_P, erase_area=ERASE_AREAS.get(str(dataset), ERASE_AREA),
                            fill=IMAGENET_MEAN)  # their RandomErasing's fill

    def build_model(self, num_classes: int, arch, pretrained: str = "torchvision",
                    variant: str = "full"):
        from vireid.model import DEEN

        return DEEN(num_classes, str(arch), variant, pretrained)

    def losses(self, pooled: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, *,
               num_pos: int | None = None) -> dict[str, torch.Tensor]:
        """``deen_losses`` with the authors' weights; ``labels`` are the 2B input labels."""
        from vireid.train.deen_losses import deen_losses

        if num_pos is None:
            raise ValueError("DEEN's losses need K (num_pos): its CPM reads P blocks of K")
        return deen_losses(pooled, logits, labels, num_pos=num_pos)


DEEN = register(DeenSpec(
    Method.DEEN, non_local=False, pooling="avg", metric_loss=hard_triplet, epochs=151,
    flip=True, flip_rule=FlipRule.SUM, features=("all", "weighted"), select="all",
    branches=BRANCHES, swappable_metric=False, other_views=False, image_size=(384, 144),
    settings={"batch_ids": 6, "num_pos": 4, "milestones": (20, 80)},
    recipe_settings={Recipe.ORIGINAL: {"eval_every": 1}},  # after every epoch > 0
    summary="DEEN's network (MFA, DEE; RegDB variant on RegDB), ID + triplet + CPM + "
    "orthogonality, random gray and its erasing, 151 epochs (drops at 20, 80), P 6 K 4, flip "
    "sums at test, rows all and weighted"))
