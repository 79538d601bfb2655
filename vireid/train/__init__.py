"""Training: configuration, losses, schedule, one-epoch loop, checkpoints, the run itself."""
