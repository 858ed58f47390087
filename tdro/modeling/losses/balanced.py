"""The retrieval loss of cross-GPU batch balance (Conan-Embedding's CBB): shared queries, own negatives.

Layout on every process: `q` [b, D] and the positives (rows i*n of `p` [b*n, D]) are the same on every
process (the same query groups); the other n-1 rows of each block are this process's own hard negatives.
`balanced_info_nce(q, p, passages_per_query=n, temperature=t)`: query i is scored against every positive
of the batch (in-batch) and every hard negative of every process (gathered in rank order), target its
own positive; the mean cross-entropy is the same number on every process.

Gradients: q and the positives are computed by every process alike, the negatives by their own process
only. DDP averages the processes' gradients, so the local negatives' gradient is multiplied by the world
size W in the backward pass (`gather_with_grad(..., grad_factor=W)`): the average is then exactly the
gradient of the same loss computed by one process holding every negative. The value is not scaled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tdro.modeling.losses.gather import gather_with_grad, world_size


def balanced_info_nce(q: torch.Tensor, p: torch.Tensor, *, passages_per_query: int,
                      temperature: float) -> torch.Tensor:
    b, n = q.shape[0], passages_per_query
    if p.shape[0] != b * n or n < 2:
        raise ValueError(f"{p.shape[0]} passages for {b} queries x {n} (a positive and hard negatives each)")
    blocks = p.view(b, n, -1)
    positives = blocks[:, 0]
    negatives = gather_with_grad(blocks[:, 1:].reshape(b * (n - 1), -1), grad_factor=float(world_size()))
    scores = q.float() @ torch.cat([positives, negatives]).float().T / temperature
    return F.cross_entropy(scores, torch.arange(b, device=scores.device))
