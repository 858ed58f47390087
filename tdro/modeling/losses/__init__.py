"""Contrastive losses for dense retrieval, as pure functions on representation tensors.

- `info_nce` (infonce.py): InfoNCE over each query's hard negatives plus in-batch negatives, optional
  only-hard-negatives mask, `reduction="mean"|"none"`.
- `passage_to_query` / `gtr_loss` (bidirectional.py): the GTR bidirectional loss.
- `matryoshka` (matryoshka.py): the sum of a loss at truncated (re-normalised) dimensions.
- `balanced_info_nce` (balanced.py): cross-GPU batch balance's retrieval loss (shared queries, negatives
  per process, gathered with a world-size gradient factor).
- `cosent` / `CoSENTLoss` (cosent.py): CoSENT on the cosines of scored sentence pairs (STS datasets).
- `gather_with_grad` (gather.py): all-gather across processes that keeps the local slot's gradient.
- `ContrastiveLoss` (contrastive.py): the composition the training stages use, incl. cross-device
  negatives scaled so that DDP's gradient averaging gives the single-process full-batch gradient.
"""

from tdro.modeling.losses.balanced import balanced_info_nce
from tdro.modeling.losses.bidirectional import gtr_loss, passage_to_query
from tdro.modeling.losses.contrastive import ContrastiveLoss
from tdro.modeling.losses.cosent import CoSENTLoss, cosent
from tdro.modeling.losses.gather import gather_with_grad, world_size
from tdro.modeling.losses.infonce import hard_negative_mask, info_nce, positive_columns
from tdro.modeling.losses.matryoshka import matryoshka, truncate

__all__ = [
    "balanced_info_nce",
    "CoSENTLoss",
    "ContrastiveLoss",
    "cosent",
    "gather_with_grad",
    "gtr_loss",
    "hard_negative_mask",
    "info_nce",
    "matryoshka",
    "passage_to_query",
    "positive_columns",
    "truncate",
    "world_size",
]
