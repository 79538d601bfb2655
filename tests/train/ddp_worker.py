"""Run by torchrun in tests: one rank of ``run_training``, recording what the rank saw.

    torchrun --standalone --nproc_per_node=2 tests/train/ddp_worker.py CONFIG_JSON RECORD \
        [STOP_AT_EPOCH]

Writes ``RECORD.rank<r>.json`` with the labels of every batch, a digest of every parameter,
the evaluation rows and what the rank ran on: the process group's backend and size (None
without one) and the wrapped model's class (``DistributedDataParallel`` or the bare model).
With STOP_AT_EPOCH every rank exits (status 3) when that epoch starts, as if the job had been
killed.
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
    ran = {"backend": None, "world_size": None, "model": None}
    wrap = runner.wrap_model

    def recording_wrap(model, *args, **kwargs):
        if torch.distributed.is_initialized():
            ran["backend"] = str(torch.distributed.get_backend())
            ran["world_size"] = torch.distributed.get_world_size()
        wrapped = wrap(model, *args, **kwargs)
        ran["model"] = type(wrapped).__name__
        return wrapped

    runner.wrap_model = recording_wrap
    result = runner.run_training(config)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else int(
        __import__("os").environ.get("RANK", "0"))
    digest = {name: float(p.double().sum()) for name, p in result.model.state_dict().items()
              if p.is_floating_point()}
    with open(f"{record}.rank{rank}.json", "w") as handle:
        json.dump({"labels": seen, "digest": digest, "evaluations": result.evaluations,
                   **ran}, handle)


if __name__ == "__main__":
    main()
