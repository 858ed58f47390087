"""All-gather of representations across processes that keeps the local slot's gradient.

`torch.distributed.all_gather` returns tensors without autograd history; putting the local tensor back
in its slot lets gradients flow into this process's encoder. Gradients w.r.t. other processes' slots are
dropped here and computed by those processes themselves (each computes the same global loss).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from every process in rank order (all must have the same shape)."""
    world = world_size()
    if world == 1:
        return tensor
    slots = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(slots, tensor.detach().contiguous())
    slots[dist.get_rank()] = tensor
    return torch.cat(slots, dim=0)
