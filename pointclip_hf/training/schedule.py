"""The learning-rate schedule of the few-shot recipe, exactly as Dassl's `ConstantWarmupScheduler` steps it."""

import math

import torch
from torch.optim.lr_scheduler import LRScheduler

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


class RecipeLRScheduler(LRScheduler):
    r"""
    The recipe's schedule as a torch scheduler, stepped once per epoch (after the epoch's optimiser steps): the
    learning rate of epoch `e` is exactly [`learning_rate_at`]`(e, config)`, computed in closed form rather than by
    chained updates, so a resumed run gets the same floats as an uninterrupted one.

    Args:
        optimizer (`torch.optim.Optimizer`):
            The optimiser whose parameter groups it sets.
        config ([`TrainingConfig`]):
            The recipe.
        first_epoch (`int`, *optional*, defaults to 0):
            The 0-based epoch the run starts at (a resumed run's epochs done).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainingConfig, first_epoch: int = 0):
        self.config = config
        self.first_epoch = first_epoch
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        epoch = self.first_epoch + self.last_epoch
        return [learning_rate_at(epoch, self.config) for _ in self.optimizer.param_groups]


__all__ = ["RecipeLRScheduler", "learning_rate_at", "learning_rate_schedule"]
