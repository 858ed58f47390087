"""Test-set deduplication by SimHash, as the reference does it (§6.2), with exact matching.

Contract:
- `normalize(text)`: the reference's normalisation: `_` removed. (Its jieba segmentation of Chinese
  only inserts spaces, which SimHash's tokenizer drops, so it is left out: the fingerprint is the same.)
- `fingerprint(text)`: equal, bit for bit, to `simhash.Simhash(normalize(text)).value` of the `simhash`
  package the reference used (2.1.2 defaults: 64 bits, lower-cased `[\\w\\u4e00-\\u9fcc]+` characters
  concatenated, character 4-grams weighted by count, the last 8 bytes of each gram's MD5; a bit is set when
  the grams' weight with that bit exceeds half the total). `fingerprints` computes many texts in one numpy
  pass: each text's 4-grams become 64-bit keys (4 UTF-16-range code points), the batch's distinct keys are
  found by one sort, each distinct gram is hashed once (its digest remembered across batches), and a
  sparse (text x gram) count matrix times the grams' bit matrix gives every text's bit weights. Texts
  shorter than 4 characters or with code points beyond U+FFFF take a per-gram path. A test checks the
  equality against the package on varied texts.
- `QueryIndex(items)`: the test queries' fingerprints; `match(text)` gives the nearest test item within
  Hamming distance `max_distance` (the reference's `SimhashIndex(k=2)` reports any within k; the
  nearest, first in input order among equals, is recorded here) or None. Nothing is missed: for
  `max_distance` k <= 3 the 64 bits are cut into k + 1 blocks and only test fingerprints equal to the
  query on some block are compared (two fingerprints within k bits agree on at least one block, by
  pigeonhole), otherwise every test fingerprint is compared (popcount of XOR).
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
    item_position: int  # in the index's input order: the first among equally near items wins


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


def _content(text: str) -> str:
    return "".join(_LETTERS.findall(normalize(text).lower()))


def _grams(text: str) -> list[str]:
    content = _content(text)
    return [content[i : i + 4] for i in range(max(len(content) - 3, 1))]


def _over_half(sums: np.ndarray, grams: np.ndarray) -> np.ndarray:
    """The fingerprints whose bit i is set where the grams with bit i outweigh half of them."""
    return np.packbits(2 * sums > grams[:, None], axis=1).view(">u8").ravel().astype(np.uint64)


def _by_gram(texts: Sequence[str]) -> np.ndarray:
    """Fingerprints gram by gram in Python: texts the vectorised path cannot key (see the docstring)."""
    grams = [_grams(t) for t in texts]
    lengths = np.array([len(g) for g in grams], dtype=np.int64)
    digests = b"".join(_gram_digest(gram) for text_grams in grams for gram in text_grams)
    bits = np.unpackbits(np.frombuffer(digests, dtype=np.uint8)).reshape(-1, 64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return _over_half(np.add.reduceat(bits, starts, axis=0, dtype=np.int64), lengths)


def _by_key(contents: list[str]) -> np.ndarray:
    """Fingerprints of contents of >= 4 characters, all code points below U+10000 (see the docstring)."""
    from scipy.sparse import csr_matrix

    lengths = np.fromiter(map(len, contents), dtype=np.int64, count=len(contents))
    points = np.frombuffer("".join(contents).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    keys = points[:-3] << 48 | points[1:-2] << 32 | points[2:-1] << 16 | points[3:]
    valid = np.ones(len(keys), dtype=bool)
    ends = np.cumsum(lengths)
    for back in (1, 2, 3):  # a gram starting in a text's last 3 characters crosses into the next text
        valid[(ends - back)[ends - back < len(keys)]] = False
    keys = keys[valid]
    ranked = np.sort(keys)  # a plain sort (SIMD in numpy) and a binary search beat argsort 3x here
    distinct = ranked[np.concatenate([[True], ranked[1:] != ranked[:-1]])]
    gram_of = np.searchsorted(distinct, keys)
    digests = b"".join(_gram_digest("".join(chr((k >> shift) & 0xFFFF) for shift in (48, 32, 16, 0)))
                       for k in distinct.tolist())
    bits = np.unpackbits(np.frombuffer(digests, dtype=np.uint8)).reshape(-1, 64).astype(np.int32)
    rows = np.concatenate([[0], np.cumsum(lengths - 3)])  # text t's grams: rows[t]:rows[t + 1]
    counts = csr_matrix((np.ones(len(keys), dtype=np.int32), gram_of, rows), shape=(len(contents), len(bits)))
    return _over_half(counts @ bits, lengths - 3)


def fingerprints(texts: Sequence[str], *, batch: int = 65536) -> np.ndarray:
    """The 64-bit SimHash of each text (uint64), `batch` texts per numpy pass (see the docstring).

    Each gram occurrence counts once, which is the package's count weighting summed out."""
    out = np.empty(len(texts), dtype=np.uint64)
    for begin in range(0, len(texts), batch):
        chunk = texts[begin : begin + batch]
        contents = [_content(t) for t in chunk]
        keyed = [i for i, c in enumerate(contents) if len(c) >= 4 and max(c) <= "\uffff"]
        other = sorted(set(range(len(chunk))) - set(keyed))
        if keyed:
            out[begin + np.array(keyed)] = _by_key([contents[i] for i in keyed])
        if other:
            out[begin + np.array(other)] = _by_gram([chunk[i] for i in other])
    return out


def fingerprint(text: str) -> int:
    """The 64-bit SimHash of `text` after `normalize` (see the module docstring)."""
    return int(fingerprints([text])[0])


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def _blocks(max_distance: int) -> list[tuple[int, int]]:
    """(shift, width) of the max_distance + 1 bit blocks of a 64-bit fingerprint, widest first."""
    parts = max_distance + 1
    widths = [64 // parts + (1 if i < 64 % parts else 0) for i in range(parts)]
    shifts = [64 - sum(widths[: i + 1]) for i in range(parts)]
    return list(zip(shifts, widths, strict=True))


_MAX_BLOCKED_DISTANCE = 3  # 4 blocks of 16 bits; beyond, blocks are too narrow to narrow anything


class QueryIndex:
    """Fingerprints of the test queries, searched without missing any (see the module docstring)."""

    def __init__(self, items: Sequence[BenchmarkQuery], *, max_distance: int = 2,
                 values: np.ndarray | None = None) -> None:
        """`values`: the items' fingerprints, when known; else computed from their queries."""
        self.items = list(items)
        self.max_distance = max_distance
        self.values = fingerprints([item.query for item in self.items]) if values is None else values
        self.tables: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        if max_distance <= _MAX_BLOCKED_DISTANCE:
            for shift, width in _blocks(max_distance):
                keys = (self.values >> np.uint64(shift)) & np.uint64((1 << width) - 1)
                order = np.argsort(keys, kind="stable")
                self.tables.append((shift, width, keys[order], order))

    def __len__(self) -> int:
        return len(self.items)

    def match(self, text: str) -> Match | None:
        return self.match_fingerprint(fingerprint(text))

    def match_fingerprint(self, value: int) -> Match | None:
        return self.match_many(np.array([value], dtype=np.uint64))[0]

    def _pairs(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(value position, test position) of every test fingerprint sharing a block with a value."""
        queries, tests = [], []
        for shift, width, keys, order in self.tables:
            wanted = (values >> np.uint64(shift)) & np.uint64((1 << width) - 1)
            low = np.searchsorted(keys, wanted, side="left")
            counts = np.searchsorted(keys, wanted, side="right") - low
            within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            queries.append(np.repeat(np.arange(len(values)), counts))
            tests.append(order[np.repeat(low, counts) + within])
        return np.concatenate(queries), np.concatenate(tests)

    def match_many(self, values: np.ndarray, *, block: int = 4096) -> list[Match | None]:
        """`match_fingerprint` of each value, `block` values at a time (fewer when comparing with all)."""
        if not self.items:
            return [None] * len(values)
        step = block if self.tables else max(1, (1 << 20) // len(self.values))  # bounds the pair arrays
        out: list[Match | None] = []
        for begin in range(0, len(values), step):
            part = values[begin : begin + step]
            if self.tables:
                queries, tests = self._pairs(part)
            else:
                queries = np.repeat(np.arange(len(part)), len(self.values))
                tests = np.tile(np.arange(len(self.values)), len(part))
            distances = np.bitwise_count(part[queries] ^ self.values[tests])
            near = distances <= self.max_distance
            queries, tests, distances = queries[near], tests[near], distances[near]
            order = np.lexsort((tests, distances, queries))  # per value: nearest, then first in input order
            queries, tests, distances = queries[order], tests[order], distances[order]
            first = np.concatenate([[True], queries[1:] != queries[:-1]]) if len(queries) else queries
            found: list[Match | None] = [None] * len(part)
            for q, t, d in zip(*(a[first].tolist() for a in (queries, tests, distances)), strict=True):
                found[q] = Match(self.items[t], d, t)
            out.extend(found)
        return out
