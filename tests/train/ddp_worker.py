"""Run by torchrun in tests: one rank of ``run_training``, recording what the rank saw.

    torchrun --standalone --nproc_per_node=2 tests/train/ddp_worker.py CONFIG_JSON RECORD \
        [STOP_AT_EPOCH]

Writes ``RECORD.rank<r>.json`` with the labels of every batch, a digest of every parameter and
the evaluation rows. With STOP_AT_EPOCH every rank exits (status 3) when that epoch starts, as
if the job had been killed.
"""

import json
import sys

import torch

import vireid.train.loop as loop
import vireid.train.runner as runner
from vireid.loader.train_base import TrainLoaderBase
from vireid.train.config import TrainConfig


def main() -> None:
    values = json.loads(sys.argv[1])
    config = TrainConfig.from_flat(**values)
    record, stop_at = sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None
    seen = []
    iterate = TrainLoaderBase.__iter__

    def recording(self):
        for batch in iterate(self):
            seen.append([batch["epoch"], batch["step"], batch["labels_visible"].tolist()])
            yield batch

    TrainLoaderBase.__iter__ = recording
    train = loop.train_one_epoch

    def maybe_die(model, loader, *args, **kwargs):
        if loader.epoch == stop_at:
            sys.exit(3)
        return train(model, loader, *args, **kwargs)

    loop.train_one_epoch = maybe_die
    result = runner.run_training(config)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else int(
        __import__("os").environ.get("RANK", "0"))
    digest = {name: float(p.double().sum()) for name, p in result.model.state_dict().items()
              if p.is_floating_point()}
    with open(f"{record}.rank{rank}.json", "w") as handle:
        json.dump({"labels": seen, "digest": digest, "evaluations": result.evaluations},
                  handle)


if __name__ == "__main__":
    main()
