"""InfoNCE with hard negatives and in-batch negatives.

Layout: `q` is [B, D]; `p` is [B*n, D] with the passages of query i at rows i*n .. i*n+n-1, its positive
first. The target of query i is column i*n. Every other column is a negative: the query's own n-1 hard
negatives and every passage of every other query (in-batch negatives; across processes when the caller
gathered first). `only_hard_negatives=True` masks every column outside query i's own block, so each
query sees exactly its n passages (stage 1's per-sample loss). Scores are computed in float32.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Reduction = Literal["mean", "none"]


def positive_columns(
    num_queries: int, passages_per_query: int, device: torch.device | None = None
) -> torch.Tensor:
    """Column of each query's own positive in the passage matrix: i * n."""
    return torch.arange(num_queries, device=device) * passages_per_query


def hard_negative_mask(
    num_queries: int, passages_per_query: int, device: torch.device | None = None
) -> torch.Tensor:
    """[B, B*n] bool, True where column j belongs to query i's own block of n passages."""
    owner = torch.arange(num_queries * passages_per_query, device=device) // passages_per_query
    return owner.unsqueeze(0) == torch.arange(num_queries, device=device).unsqueeze(1)


def info_nce(
    q: torch.Tensor,
    p: torch.Tensor,
    *,
    passages_per_query: int,
    temperature: float,
    only_hard_negatives: bool = False,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Cross-entropy of each query against all passages (or only its own), target its positive."""
    num_queries = q.shape[0]
    if p.shape[0] != num_queries * passages_per_query:
        raise ValueError(f"{p.shape[0]} passages for {num_queries} queries x {passages_per_query}")
    scores = q.float() @ p.float().T / temperature
    if only_hard_negatives:
        keep = hard_negative_mask(num_queries, passages_per_query, scores.device)
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
    labels = positive_columns(num_queries, passages_per_query, scores.device)
    return F.cross_entropy(scores, labels, reduction=reduction)
