"""CoSENT (Su 2022; used by Conan-Embedding for STS): a ranking loss on the cosines of scored pairs.

`cosent(a, b, scores, scale)` with `a`, `b` [B, D] (pair i is (a_i, b_i)) and gold `scores` [B]:

    log(1 + sum over (i, j) with scores_i > scores_j of exp(scale * (cos_j - cos_i)))

where cos_i = cos(a_i, b_i): every pair scored higher must have the higher cosine; pairs with equal
scores are not compared. `scale` (lambda) is 20 in CoSENT and Conan. Computed as a log-sum-exp with a
zero logit for the 1, so large scales do not overflow.

`CoSENTLoss(scores, scale)` is the callable form the training step takes (`loss(q, p)`), computed on this
process's pairs only (no gathering; DDP averages the processes' gradients); `.scale()` is 1, as
`ContrastiveLoss.scale()` is without gathering.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def cosent(a: torch.Tensor, b: torch.Tensor, scores: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    cos = F.cosine_similarity(a.float(), b.float(), dim=-1)
    differences = scale * (cos[None, :] - cos[:, None])  # [i, j] = scale * (cos_j - cos_i)
    higher = scores[:, None] > scores[None, :]  # pair i scored above pair j
    logits = torch.cat([differences.new_zeros(1), differences[higher]])
    return torch.logsumexp(logits, dim=0)


@dataclass(frozen=True)
class CoSENTLoss:
    scores: torch.Tensor
    similarity_scale: float = 20.0

    def scale(self) -> int:
        return 1

    def __call__(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        if p.shape[0] != q.shape[0]:
            raise ValueError(f"CoSENT pairs one passage per query: {q.shape[0]} queries, "
                             f"{p.shape[0]} passages")
        return cosent(q, p, self.scores.to(q.device), self.similarity_scale)
