"""Training: the pre-training dataset, loop, checkpoints and distributed setup."""
