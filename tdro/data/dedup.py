"""Test-set deduplication by SimHash, as the reference does it (§6.2), with exact matching.

Contract:
- `normalize(text)`: the reference's normalisation: `_` removed. (Its jieba segmentation of Chinese
  only inserts spaces, which SimHash's tokenizer drops, so it is left out: the fingerprint is the same.)
- `fingerprint(text)`: `simhash.Simhash(normalize(text)).value`, the package's defaults: 64 bits,
  lower-cased `[\\w\\u4e00-\\u9fcc]+` characters concatenated, character 4-grams weighted by count, MD5.
- `QueryIndex(items)`: the test queries' fingerprints; `match(text)` gives the nearest test item within
  Hamming distance `max_distance` (the reference's `SimhashIndex(k=2)` reports any within k; the
  nearest, first in input order among equals, is recorded here) or None. Matching is exhaustive
  (popcount of XOR against every test fingerprint), so no candidate is missed by bucketing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BenchmarkQuery:
    benchmark: str
    query_id: str
    query: str


@dataclass(frozen=True)
class Match:
    item: BenchmarkQuery
    distance: int


def normalize(text: str) -> str:
    return text.replace("_", "")


def fingerprint(text: str) -> int:
    from simhash import Simhash

    return int(Simhash(normalize(text)).value)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class QueryIndex:
    """Fingerprints of the test queries, searched exhaustively (see the module docstring)."""

    def __init__(self, items: Sequence[BenchmarkQuery], *, max_distance: int = 2) -> None:
        self.items = list(items)
        self.max_distance = max_distance
        self.values = np.array([fingerprint(item.query) for item in self.items], dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.items)

    def match(self, text: str) -> Match | None:
        return self.match_fingerprint(fingerprint(text))

    def match_fingerprint(self, value: int) -> Match | None:
        if not self.items:
            return None
        distances = np.bitwise_count(self.values ^ np.uint64(value))
        best = int(np.argmin(distances))  # first among equals
        distance = int(distances[best])
        return Match(self.items[best], distance) if distance <= self.max_distance else None
