"""Learning-rate schedule: linear warm-up then step decay (docs/methods.md §1.6, §2.1, §3.7, §4.6).

lr(iteration, epoch) = base_lr * gamma ** #{s in lr_steps : s <= epoch} * warmup(iteration)
warmup(i) = warmup_factor + (1 - warmup_factor) * i / warmup_iters   for i < warmup_iters
          = 1                                                        otherwise

``iteration`` counts optimizer iterations from 0 over the whole run, ``epoch`` is 0-based; an
lr step "at epoch 16" therefore applies from the 17th epoch on, as in SeqNet's MultiStepLR and
mmdetection's step policy. This is torchvision's ``warmup_lr_scheduler`` (SeqNet) and
mmdetection's linear warm-up (CGPS/DICL: 2,242 iterations from 1/200).

The schedule is a pure function of (iteration, epoch): nothing to restore on resume beyond the
counters, which the checkpoint holds.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class LRSchedule:
    base_lr: float
    warmup_iters: int = 0
    warmup_factor: float = 1.0
    lr_steps: Sequence[int] = ()
    gamma: float = 0.1

    def factor(self, iteration: int, epoch: int) -> float:
        decay = self.gamma ** bisect.bisect_right(sorted(self.lr_steps), epoch)
        if iteration < self.warmup_iters:
            alpha = iteration / self.warmup_iters
            return decay * (self.warmup_factor * (1.0 - alpha) + alpha)
        return decay

    def lr(self, iteration: int, epoch: int) -> float:
        return self.base_lr * self.factor(iteration, epoch)

    def apply(self, optimizer: torch.optim.Optimizer, iteration: int, epoch: int) -> float:
        """Set every param group's lr (groups may carry an ``lr_mult``); returns the lr."""
        lr = self.lr(iteration, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        return lr

    def state_dict(self) -> dict:
        return {
            "base_lr": self.base_lr,
            "warmup_iters": self.warmup_iters,
            "warmup_factor": self.warmup_factor,
            "lr_steps": list(self.lr_steps),
            "gamma": self.gamma,
        }


def warmup_iterations(
    warmup_iters: int | None, warmup_epochs: float | None, iters_per_epoch: int
) -> int:
    """Warm-up length in iterations from either setting (``warmup_epochs`` is rounded)."""
    if warmup_iters is not None:
        return int(warmup_iters)
    if warmup_epochs is not None:
        return int(round(warmup_epochs * iters_per_epoch))
    return 0


LR_SCALING_RULES = ("linear", "none")


def scale_for_batch(
    lr: float,
    warmup_iters: int,
    global_batch: int,
    reference_batch: int,
    rule: str = "linear",
) -> tuple[float, int]:
    """Learning rate and warm-up length for a global batch other than the one the preset was
    tuned for (several processes: global batch = per-process batch x world size).

    ``linear`` (Goyal et al., "Accurate, large minibatch SGD"): the lr is multiplied by
    k = global_batch / reference_batch and a warm-up given in iterations is divided by k
    (rounded up), so it spans the same number of images. A warm-up given in epochs needs no
    change (an epoch already has k times fewer iterations). ``none`` keeps both.
    Returns (lr, warmup_iters).
    """
    if rule not in LR_SCALING_RULES:
        raise ValueError(f"lr scaling rule must be one of {LR_SCALING_RULES}, got {rule!r}")
    if global_batch <= 0 or reference_batch <= 0:
        raise ValueError(f"batch sizes must be positive, got {global_batch} and {reference_batch}")
    if rule == "none" or global_batch == reference_batch:
        return lr, warmup_iters
    factor = global_batch / reference_batch
    return lr * factor, int(math.ceil(warmup_iters / factor))
