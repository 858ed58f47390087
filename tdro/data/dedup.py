"""Test-set deduplication by SimHash, as the reference does it (§6.2), with exact matching.

Contract:
- `normalize(text)`: the reference's normalisation: `_` removed. (Its jieba segmentation of Chinese
  only inserts spaces, which SimHash's tokenizer drops, so it is left out: the fingerprint is the same.)
- `fingerprint(text)`: equal, bit for bit, to `simhash.Simhash(normalize(text)).value` of the `simhash`
  package the reference used (2.1.2 defaults: 64 bits, lower-cased `[\\w\\u4e00-\\u9fcc]+` characters
  concatenated, character 4-grams weighted by count, the last 8 bytes of each gram's MD5; a bit is set when
  the grams' weight with that bit exceeds half the total). Computed here for many texts in one numpy
  pass (`fingerprints`), each gram's digest remembered, because the package spends most of its time in
  per-gram Python; a test checks the equality against the package on varied texts.
- `QueryIndex(items)`: the test queries' fingerprints; `match(text)` gives the nearest test item within
  Hamming distance `max_distance` (the reference's `SimhashIndex(k=2)` reports any within k; the
  nearest, first in input order among equals, is recorded here) or None. Matching is exhaustive
  (popcount of XOR against every test fingerprint), so no candidate is missed by bucketing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_LETTERS = re.compile(r"[\w\u4e00-\u9fcc]+")  # simhash's default `reg`


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


_DIGESTS: dict[str, bytes] = {}  # gram -> the last 8 bytes of its MD5; grams repeat across texts
_MAX_DIGESTS = 1 << 21


def _gram_digest(gram: str) -> bytes:
    digest = _DIGESTS.get(gram)
    if digest is None:
        if len(_DIGESTS) >= _MAX_DIGESTS:
            _DIGESTS.clear()
        digest = _DIGESTS[gram] = hashlib.md5(gram.encode("utf-8")).digest()[-8:]
    return digest


def _grams(text: str) -> list[str]:
    content = "".join(_LETTERS.findall(normalize(text).lower()))
    return [content[i : i + 4] for i in range(max(len(content) - 3, 1))]


def fingerprints(texts: Sequence[str], *, batch: int = 1024) -> np.ndarray:
    """The 64-bit SimHash of each text (uint64), `batch` texts per numpy pass.

    Each gram occurrence counts once, which is the package's count weighting summed out."""
    out = np.empty(len(texts), dtype=np.uint64)
    for begin in range(0, len(texts), batch):
        grams = [_grams(t) for t in texts[begin : begin + batch]]
        lengths = np.array([len(g) for g in grams], dtype=np.int64)
        digests = b"".join(_gram_digest(gram) for text_grams in grams for gram in text_grams)
        bits = np.unpackbits(np.frombuffer(digests, dtype=np.uint8)).reshape(-1, 64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        sums = np.add.reduceat(bits, starts, axis=0, dtype=np.int64)
        packed = np.packbits(2 * sums > lengths[:, None], axis=1)
        out[begin : begin + len(grams)] = packed.view(">u8").ravel()
    return out


def fingerprint(text: str) -> int:
    """The 64-bit SimHash of `text` after `normalize` (see the module docstring)."""
    return int(fingerprints([text])[0])


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class QueryIndex:
    """Fingerprints of the test queries, searched exhaustively (see the module docstring)."""

    def __init__(self, items: Sequence[BenchmarkQuery], *, max_distance: int = 2) -> None:
        self.items = list(items)
        self.max_distance = max_distance
        self.values = fingerprints([item.query for item in self.items])

    def __len__(self) -> int:
        return len(self.items)

    def match(self, text: str) -> Match | None:
        return self.match_fingerprint(fingerprint(text))

    def match_fingerprint(self, value: int) -> Match | None:
        return self.match_many(np.array([value], dtype=np.uint64))[0]

    def match_many(self, values: np.ndarray, *, block: int = 256) -> list[Match | None]:
        """`match_fingerprint` of each value, `block` values against all test fingerprints at a time."""
        out: list[Match | None] = []
        if not self.items:
            return [None] * len(values)
        for begin in range(0, len(values), block):
            distances = np.bitwise_count(values[begin : begin + block, None] ^ self.values[None, :])
            best = np.argmin(distances, axis=1)  # first among equals
            nearest = distances[np.arange(len(best)), best]
            out.extend(Match(self.items[b], int(d)) if d <= self.max_distance else None
                       for b, d in zip(best.tolist(), nearest.tolist(), strict=True))
        return out
