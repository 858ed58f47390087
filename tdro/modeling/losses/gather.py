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


class _ScaleGrad(torch.autograd.Function):
    """The identity, whose backward multiplies the gradient by `factor`."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, factor: float) -> torch.Tensor:  # type: ignore[override]
        ctx.factor = factor
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad * ctx.factor, None


def gather_with_grad(tensor: torch.Tensor, *, grad_factor: float = 1.0) -> torch.Tensor:
    """Concatenate `tensor` from every process in rank order (all must have the same shape); the local
    slot's gradient is multiplied by `grad_factor` (cross-GPU batch balance uses the world size)."""
    world = world_size()
    if world == 1:
        return tensor
    slots = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(slots, tensor.detach().contiguous())
    slots[dist.get_rank()] = tensor if grad_factor == 1.0 else _ScaleGrad.apply(tensor, grad_factor)
    return torch.cat(slots, dim=0)
