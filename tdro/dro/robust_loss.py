"""The proxy's training loss in stage 1: per-sample losses weighted by alpha of their dataset.

robust = sum_i w_i * l_i with w_i = alpha_{dom(i)} / sum_j alpha_{dom(j)} (alpha detached).
The reference normalises w over the LOCAL micro-batch, which makes the proxy's update depend on how a
global micro-batch is split over processes. Here the normaliser is the sum over the GLOBAL micro-batch
(`global_weight_sum`, computed from the gathered dataset ids) and the loss is multiplied by the number of
processes, so that DDP's gradient averaging gives exactly the single-process gradient of the global
micro-batch; with one process this is the reference's loss.
"""

from __future__ import annotations

import torch


def sample_weights(alpha: torch.Tensor, dataset_ids: torch.Tensor) -> torch.Tensor:
    """alpha of each sample's dataset (no gradient)."""
    return alpha.detach()[dataset_ids.long().to(alpha.device)]


def robust_loss(
    losses: torch.Tensor,
    dataset_ids: torch.Tensor,
    alpha: torch.Tensor,
    *,
    global_weight_sum: float | torch.Tensor | None = None,
    num_processes: int = 1,
) -> torch.Tensor:
    """sum_i alpha_{dom(i)} l_i / normaliser (times `num_processes`); the normaliser is the local sum of
    alpha_{dom(i)} unless `global_weight_sum` is given."""
    w = sample_weights(alpha, dataset_ids).to(device=losses.device, dtype=losses.dtype)
    total = w.sum() if global_weight_sum is None else torch.as_tensor(global_weight_sum).to(w)
    return (w * losses).sum() / total * num_processes
