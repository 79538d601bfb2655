"""CAJ (Ye et al., ICCV 2021): AGW's network trained on two visible views (the second
channel-exchanged) and the infrared image with adaptive gray, the ADP squared-difference
triplet, 100 epochs, and test features averaged with the mirrored image's (docs/methods.md)."""

from vireid.choices import Method, Views
from vireid.train.losses import adp_triplet
from vireid.train.methods import MethodSpec, register

CAJ = register(MethodSpec(Method.CAJ, non_local=True, pooling="gem",
                          metric_loss=adp_triplet, epochs=100, views=Views.CHANNEL, flip=True,
                          summary="AGW's network on channel-augmented views (2 visible + 1 "
                          "infrared), ADP squared triplet, 100 epochs, flip at test"))
