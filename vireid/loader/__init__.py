"""manifest → batches. The only package that imports DALI (lazily, in ``dali_*`` modules).

``make_train_loader(kind, ...)`` / ``make_eval_loader(kind, ...)`` choose between the DALI
loaders and the plain PyTorch reference loaders (``kind`` = "dali" or "reference").
"""

from __future__ import annotations

from vireid.errors import VireidError

LOADER_KINDS = ("dali", "reference")


def make_train_loader(kind: str, shards_dir, **options):
    if kind == "dali":
        from vireid.loader.dali_loader import TrainLoader

        return TrainLoader(shards_dir, **options)
    if kind == "reference":
        from vireid.loader.reference import ReferenceTrainLoader

        for dali_only in ("device", "device_id", "num_threads", "prefetch", "cpu_augment"):
            options.pop(dali_only, None)
        return ReferenceTrainLoader(shards_dir, **options)
    raise VireidError("--loader", f"unknown loader {kind!r} (choose from {LOADER_KINDS})")


def make_eval_loader(kind: str, shards_dir, samples, **options):
    if kind == "dali":
        from vireid.loader.dali_eval import EvalLoader

        return EvalLoader(shards_dir, samples, **options)
    if kind == "reference":
        from vireid.loader.reference import ReferenceEvalLoader

        return ReferenceEvalLoader(shards_dir, samples, **options)
    raise VireidError("--loader", f"unknown loader {kind!r} (choose from {LOADER_KINDS})")


def __getattr__(name: str):
    """``from vireid.loader import TrainLoader, EvalLoader`` without importing DALI eagerly."""
    if name == "TrainLoader":
        from vireid.loader.dali_loader import TrainLoader

        return TrainLoader
    if name == "EvalLoader":
        from vireid.loader.dali_eval import EvalLoader

        return EvalLoader
    if name in ("ReferenceTrainLoader", "ReferenceEvalLoader"):
        from vireid.loader import reference

        return getattr(reference, name)
    raise AttributeError(name)
