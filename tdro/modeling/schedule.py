"""Learning-rate schedules with linear warm-up and a minimum-LR floor (the reference's formulas).

With W warm-up steps, T total steps and m = min_lr_ratio, the LR multiplier at optimizer step t (0-based,
the step about to be taken) is t/W for t < W, then
- cosine:   m + (1-m) * 0.5 * (1 + cos(pi * (t-W) / (T-W)))
- linear:   m + (1-m) * (T-t) / (T-W)
- constant: 1
and m from T on (cosine and linear). `build_scheduler` wraps it in a torch `LambdaLR`.
"""

from __future__ import annotations

import math
from functools import partial

from tdro.enums import Schedule


def lr_factor(
    step: int, *, schedule: Schedule, warmup_steps: int, total_steps: int, min_lr_ratio: float
) -> float:
    if step < warmup_steps:
        return step / warmup_steps
    if schedule is Schedule.constant:
        return 1.0
    if step >= total_steps:
        return min_lr_ratio
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule is Schedule.cosine:
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule is Schedule.linear:
        decay = 1.0 - progress
    else:
        raise ValueError(f"unknown schedule {schedule}")
    return min_lr_ratio + (1.0 - min_lr_ratio) * decay


def build_scheduler(
    optimizer, *, schedule: Schedule, warmup_steps: int, total_steps: int, min_lr_ratio: float
):
    """A `torch.optim.lr_scheduler.LambdaLR`; call `.step()` once per optimizer step."""
    from torch.optim.lr_scheduler import LambdaLR

    factor = partial(
        lr_factor,
        schedule=Schedule(schedule),
        warmup_steps=warmup_steps,
        total_steps=total_steps,
        min_lr_ratio=min_lr_ratio,
    )
    return LambdaLR(optimizer, factor)
