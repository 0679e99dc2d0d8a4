"""The learning-rate schedule of the few-shot recipe, exactly as Dassl's `ConstantWarmupScheduler` steps it."""

from __future__ import annotations

import math

from .config import TrainingConfig


def learning_rate_at(epoch: int, config: TrainingConfig) -> float:
    """
    Learning rate of the 0-based `epoch`: `warmup_lr` for the warm-up epochs, then the cosine
    `lr * (1 + cos(pi * t / epochs)) / 2` from t = 0. This is the sequence Dassl's `ConstantWarmupScheduler`
    (with `WARMUP_RECOUNT=True`) wrapped around `CosineAnnealingLR(T_max=epochs)` produces when stepped once per
    epoch: the successor is first stepped at the end of the first cosine epoch, so epoch `warmup_epochs` runs at the
    full learning rate and epoch e at the cosine value of step `e - warmup_epochs`.

    Args:
        epoch (`int`):
            The 0-based epoch.
        config ([`TrainingConfig`]):
            Gives `epochs`, `learning_rate`, `warmup_epochs` and `warmup_lr`.

    Returns:
        `float`: the learning rate of that epoch.
    """
    if epoch < config.warmup_epochs:
        return config.warmup_lr
    step = epoch - config.warmup_epochs
    return config.learning_rate * (1 + math.cos(math.pi * step / config.epochs)) / 2


def learning_rate_schedule(config: TrainingConfig) -> list[float]:
    """
    The learning rate of every epoch.

    Args:
        config ([`TrainingConfig`]):
            The recipe.

    Returns:
        `list[float]` of length `config.epochs`: `learning_rate_at(epoch, config)` for each epoch.
    """
    return [learning_rate_at(epoch, config) for epoch in range(config.epochs)]


__all__ = ["learning_rate_at", "learning_rate_schedule"]
