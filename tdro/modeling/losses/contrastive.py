"""The contrastive loss of the training stages, composed from the pure losses of this package.

`ContrastiveLoss(...)(q, p)` with `q` [b, D] and `p` [b*n, D] local to this process:
1. with `cross_device` and more than one process, gathers q and p from every process (local slot keeps
   its gradient), so global query i's target is global column i*n;
2. InfoNCE (or GTR bidirectional), optionally only over each query's own hard negatives;
3. optionally summed over Matryoshka dimensions;
4. under gathering, multiplies by the world size: every process computes the same global mean loss but
   back-propagates only through its own slot, and DDP averages gradients over processes, so the scaled
   loss gives exactly the single-process full-batch gradient. Divide by `.scale()` to log it.
`reduction="none"` returns one loss per query (of the global batch when gathering, also scaled); stage 1
uses it with `only_hard_negatives=True` and no gathering, i.e. each query against its own n passages.

`ContrastiveLoss.from_spec(spec, passages_per_query=, normalize=, dim=)` is the one factory: stages 0/2
(`TrainSpec.loss`) and stage 1 (`DroSpec.loss`) both build their loss through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tdro.errors import UserError
from tdro.modeling.losses.bidirectional import gtr_loss
from tdro.modeling.losses.gather import gather_with_grad, world_size
from tdro.modeling.losses.infonce import Reduction, info_nce
from tdro.modeling.losses.matryoshka import matryoshka
from tdro.spec.experiment import LossSpec


@dataclass(frozen=True)
class ContrastiveLoss:
    passages_per_query: int
    temperature: float
    normalize: bool = True  # whether reps are L2-normalised (Matryoshka re-normalises truncations)
    only_hard_negatives: bool = False
    bidirectional: bool = False
    matryoshka_dims: tuple[int, ...] | None = None
    cross_device: bool = False

    def __post_init__(self) -> None:
        if self.bidirectional and self.only_hard_negatives:
            raise ValueError("the bidirectional loss needs in-batch queries; it excludes only_hard_negatives")

    @classmethod
    def from_spec(
        cls, spec: LossSpec, *, passages_per_query: int, normalize: bool, dim: int
    ) -> ContrastiveLoss:
        """The loss a spec section states, for a model of dimension `dim` (Matryoshka dims must fit)."""
        dims = spec.matryoshka_dims
        if dims and max(dims) > dim:
            raise UserError(f"loss.matryoshka_dims: {max(dims)} exceeds the model's dimension {dim}")
        return cls(
            passages_per_query=passages_per_query,
            temperature=spec.temperature,
            normalize=normalize,
            only_hard_negatives=spec.only_hard_negatives,
            bidirectional=spec.bidirectional,
            matryoshka_dims=tuple(dims) if dims else None,
            cross_device=spec.cross_device_negatives,
        )

    def scale(self) -> int:
        """The factor the returned loss carries (the world size when gathering, else 1)."""
        return world_size() if self.cross_device else 1

    def _single(self, q: torch.Tensor, p: torch.Tensor, reduction: Reduction) -> torch.Tensor:
        if self.bidirectional:
            return gtr_loss(q, p, passages_per_query=self.passages_per_query, temperature=self.temperature,
                            reduction=reduction)
        return info_nce(q, p, passages_per_query=self.passages_per_query, temperature=self.temperature,
                        reduction=reduction, only_hard_negatives=self.only_hard_negatives)

    def __call__(self, q: torch.Tensor, p: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
        scale = self.scale()
        if scale > 1:
            q, p = gather_with_grad(q), gather_with_grad(p)
        if self.matryoshka_dims:
            loss = matryoshka(
                lambda a, b: self._single(a, b, reduction),
                q,
                p,
                self.matryoshka_dims,
                renormalize=self.normalize,
            )
        else:
            loss = self._single(q, p, reduction)
        return loss * scale if scale > 1 else loss
