"""The negative-selection rule of mining, pure: one query's ranking in, its negatives out.

Contract (the reference's rule, §6.1, made deterministic):
- candidates are the corpus positions at ranks [start, end) of the query's ranking (best first), minus
  its positives and missing slots (-1), in rank order;
- with a false-negative margin m, a candidate scoring above m times the query's lowest positive score
  is removed too (NV-Retriever's TopK-PercPos), and counted;
- `negatives` of the rest are drawn uniformly without replacement, or all of them when fewer remain;
- the draw's generator is seeded by (seed, query id) alone, so the result does not depend on how many
  processes or threads mine, or in which order queries are handled (the reference's thread pool does).
No candidate left means the caller drops the query; fewer than asked means it keeps the ones it has.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Selection:
    negatives: list[int]  # corpus positions, in draw order
    false_negatives: int  # candidates removed by the margin


def query_rng(seed: int, query_id: str) -> random.Random:
    """The generator of one query's draw (a string seed is hashed with SHA-512: stable across runs)."""
    return random.Random(f"tdro-mine:{seed}:{query_id}")


def select_negatives(
    ranked: Sequence[int],
    scores: Sequence[float],
    positives: set[int],
    *,
    depth: tuple[int, int],
    negatives: int,
    seed: int,
    query_id: str,
    positive_score: float | None = None,
    margin: float | None = None,
) -> Selection:
    """One query's negatives from its ranking (see the module docstring)."""
    start, end = depth
    window = [(i, s) for i, s in zip(ranked[start:end], scores[start:end], strict=True)
              if i >= 0 and i not in positives]
    removed = 0
    if margin is not None and positive_score is not None:
        threshold = margin * positive_score
        kept = [(i, s) for i, s in window if s <= threshold]
        removed = len(window) - len(kept)
        window = kept
    candidates = [i for i, _ in window]
    if len(candidates) <= negatives:
        return Selection(candidates, removed)
    return Selection(query_rng(seed, query_id).sample(candidates, negatives), removed)
