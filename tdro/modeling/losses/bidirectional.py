"""The GTR bidirectional loss: query->passage InfoNCE plus passage->query InfoNCE over positives.

passage->query: each query's positive (row i*n of `p`) is scored against every query of the batch, its
target being query i. `gtr_loss` averages the two directions, so its scale matches plain InfoNCE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tdro.modeling.losses.infonce import Reduction, info_nce


def passage_to_query(
    q: torch.Tensor,
    p: torch.Tensor,
    *,
    passages_per_query: int,
    temperature: float,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    positives = p[::passages_per_query]
    scores = positives.float() @ q.float().T / temperature
    labels = torch.arange(q.shape[0], device=scores.device)
    return F.cross_entropy(scores, labels, reduction=reduction)


def gtr_loss(
    q: torch.Tensor,
    p: torch.Tensor,
    *,
    passages_per_query: int,
    temperature: float,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    forward = info_nce(
        q, p, passages_per_query=passages_per_query, temperature=temperature, reduction=reduction
    )
    backward = passage_to_query(
        q, p, passages_per_query=passages_per_query, temperature=temperature, reduction=reduction
    )
    return (forward + backward) / 2
