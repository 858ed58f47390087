"""The optimizer and schedule of a retriever's training, built from an `OptimizerSpec`.

`build_optimizer(model, spec)`: AdamW (betas 0.9/0.999, eps 1e-8 as in HF), weight decay on matrices only
(biases and norm weights are 1-D and get none), the fused kernel when torch offers it for the device.
`build_training_schedule(optimizer, spec, total_steps)`: the LambdaLR of `tdro.modeling.schedule`.
Stage 0/2 and stage 1 both use these.
"""

from __future__ import annotations

import torch
from torch import nn

from tdro.modeling.schedule import build_scheduler
from tdro.spec.experiment import OptimizerSpec


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, spec: OptimizerSpec) -> torch.optim.AdamW:
    groups = parameter_groups(model, spec.weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=spec.learning_rate, betas=(0.9, 0.999), eps=1e-8, fused=True)
    except (RuntimeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.AdamW(groups, lr=spec.learning_rate, betas=(0.9, 0.999), eps=1e-8)


def build_training_schedule(optimizer: torch.optim.Optimizer, spec: OptimizerSpec, total_steps: int):
    return build_scheduler(
        optimizer,
        schedule=spec.schedule,
        warmup_steps=spec.warmup_steps,
        total_steps=total_steps,
        min_lr_ratio=spec.min_lr_ratio,
    )
