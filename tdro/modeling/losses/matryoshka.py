"""Matryoshka representation learning: the sum of a loss evaluated at truncated dimensions.

`truncate` keeps the first `dim` coordinates and, for cosine models, L2-normalises them again, which is
how a truncated embedding is used at search time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F


def truncate(reps: torch.Tensor, dim: int, *, renormalize: bool) -> torch.Tensor:
    out = reps[..., :dim]
    return F.normalize(out, dim=-1) if renormalize else out


def matryoshka(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    q: torch.Tensor,
    p: torch.Tensor,
    dims: Sequence[int],
    *,
    renormalize: bool,
) -> torch.Tensor:
    """sum over d in dims of loss_fn(q[:, :d], p[:, :d]) (re-normalised when `renormalize`)."""
    if not dims:
        raise ValueError("matryoshka needs at least one dimension")
    losses = [
        loss_fn(truncate(q, d, renormalize=renormalize), truncate(p, d, renormalize=renormalize))
        for d in dims
    ]
    return torch.stack(losses).sum(dim=0)
