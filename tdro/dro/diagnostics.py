"""Diagnostics of a stage-1 weight snapshot (pure Python): is alpha informative or has it collapsed?

- entropy: Shannon entropy (nats) of the weights divided by their sum (log n for uniform);
- max_share / max_share_dataset: the largest normalised weight and its dataset (first one on a tie);
- absent_datasets: datasets that never appeared in a micro-batch (alpha got no signal from them);
- collapsed: the largest share exceeds `COLLAPSE_SHARE` (0.9): the mixture is one dataset.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from pydantic import BaseModel

COLLAPSE_SHARE = 0.9


class Diagnostics(BaseModel):
    entropy: float
    max_share: float
    max_share_dataset: str
    absent_datasets: list[str]
    collapsed: bool

    def warning(self) -> str | None:
        if not self.collapsed:
            return None
        return (f"alpha collapsed: {self.max_share_dataset} holds {self.max_share:.1%} of the mixture "
                f"(> {COLLAPSE_SHARE:.0%}); consider a smaller eta or fewer steps")


def diagnostics(weights: Mapping[str, float], absent: Iterable[str] = ()) -> Diagnostics:
    total = math.fsum(weights.values())
    shares = {name: w / total for name, w in weights.items()}
    top = max(shares, key=lambda name: shares[name])  # max() keeps the first of equal values
    return Diagnostics(
        entropy=-math.fsum(p * math.log(p) for p in shares.values() if p > 0),
        max_share=shares[top],
        max_share_dataset=top,
        absent_datasets=list(absent),
        collapsed=shares[top] > COLLAPSE_SHARE,
    )
