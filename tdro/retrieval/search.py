"""Exact inner-product search with faiss, over the corpus in chunks, merged to the top k.

Contract: `search(queries, corpus, top_k=..., chunk_size=...)` returns `(scores, indices)` of shape
[num_queries, min(top_k, num_docs)], rows sorted by score descending with ties broken by corpus position
ascending. faiss proposes a window of candidates per chunk (k + 8); their scores are recomputed exactly
(`exact_dot`: float64 sums, cast to float32) and ranked, so scores and order depend neither on
`chunk_size` nor on faiss's kernel or thread count (1 and 2 processes mine the same bytes); a row whose
window might miss a document (near-ties at the cut) is ranked over the whole chunk exactly. At most
`chunk_size` corpus vectors are in an index at a time. `TopK` is the same merge for callers that produce
the corpus block by block (the evaluator encodes and searches one chunk at a time, so the corpus matrix is
never whole in memory).
Missing slots (fewer candidates than k) have index -1 and score -inf. With `exclude` (the corpus
position of each query's own id, or -1) a query never retrieves that document: `ignore_identical_ids`.
A GPU index is used when faiss was built with GPU support and a GPU is visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def identical_id_positions(query_ids: Sequence[str], doc_ids: Sequence[str]) -> np.ndarray:
    """For each query, the corpus position of a document with the same id, or -1."""
    position = {d: i for i, d in enumerate(doc_ids)}
    return np.array([position.get(q, -1) for q in query_ids], dtype=np.int64)


def _gpu_resources():
    import faiss

    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        return faiss.StandardGpuResources()
    return None


def _merge(
    best_s: np.ndarray, best_i: np.ndarray, new_s: np.ndarray, new_i: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([best_s, new_s], axis=1)
    indices = np.concatenate([best_i, new_i], axis=1)
    # Missing slots sort last; ties by position ascending (lexsort's last key is the primary one).
    tie_key = np.where(indices < 0, np.iinfo(np.int64).max, indices)
    order = np.lexsort((tie_key, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(indices, order, axis=1)


_WINDOW_MARGIN = 8  # faiss candidates asked beyond the k kept, re-scored exactly
_ELEMENTS = 1 << 24  # float64 values per re-scoring gather ([queries, window, dim]): 128 MB


def exact_dot(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Inner products [..., n] of queries [..., d] with vectors [..., n, d], as float32 of a float64 sum:
    products of float32 numbers are exact in float64 and numpy sums each row in an order fixed by its
    length, so the value depends on neither a BLAS kernel nor the thread count (faiss's float32 scores
    differ in the last bits between them)."""
    products = queries.astype(np.float64)[..., None, :] * vectors.astype(np.float64)
    return products.sum(axis=-1).astype(np.float32)


def _exact_top(
    queries: np.ndarray, block: np.ndarray, approx: np.ndarray, idx: np.ndarray, need: int
) -> tuple[np.ndarray, np.ndarray]:
    """faiss's window of candidates re-scored by `exact_dot` and cut to `need`, best first, ties by position.

    A document outside the window scored at most the window's last approximate score (plus float32 error)
    by faiss; where that bound reaches the kept cut, the window may miss one, and that query's row is ranked
    over the whole block exactly (rare: near-duplicate documents at the cut)."""
    scores = np.full(idx.shape, -np.inf, dtype=np.float32)
    batch = max(1, _ELEMENTS // max(1, idx.shape[1] * block.shape[1]))
    for begin in range(0, len(queries), batch):
        rows = slice(begin, begin + batch)
        scores[rows] = exact_dot(queries[rows], block[np.maximum(idx[rows], 0)])
    scores = np.where(idx >= 0, scores, -np.inf).astype(np.float32)
    tie_key = np.where(idx < 0, np.iinfo(np.int64).max, idx)
    order = np.lexsort((tie_key, -scores), axis=1)[:, :need]
    kept_s, kept_i = np.take_along_axis(scores, order, axis=1), np.take_along_axis(idx, order, axis=1)
    if idx.shape[1] < block.shape[0]:  # the window is not the whole block
        last = approx[:, -1]
        open_rows = kept_s[:, -1] <= last + 1e-4 * np.maximum(1.0, np.abs(last))
        step = max(1, _ELEMENTS // block.shape[1])
        for q in np.flatnonzero(open_rows):
            parts = [exact_dot(queries[q], block[b : b + step]) for b in range(0, len(block), step)]
            full = np.concatenate(parts)
            ranked = np.lexsort((np.arange(len(full)), -full))[:need]
            kept_s[q], kept_i[q] = full[ranked], ranked
    return kept_s, kept_i


class TopK:
    """Running top k of every query over corpus blocks added in any order (see module docstring)."""

    def __init__(
        self,
        queries: np.ndarray,
        top_k: int,
        *,
        exclude: np.ndarray | None = None,
        use_gpu: bool | None = None,
    ) -> None:
        self.queries = np.ascontiguousarray(queries, dtype=np.float32)
        self.top_k = top_k
        self.exclude = exclude
        # One extra candidate per block makes room for the excluded identical document.
        self.extra = 1 if exclude is not None and (exclude >= 0).any() else 0
        self.scores = np.full((len(self.queries), 0), -np.inf, dtype=np.float32)
        self.indices = np.full((len(self.queries), 0), -1, dtype=np.int64)
        self.gpu = _gpu_resources() if use_gpu in (None, True) else None
        if use_gpu and self.gpu is None:
            raise RuntimeError("a GPU index was requested but faiss has no GPU support or sees no GPU")

    def add(self, block: np.ndarray, start: int) -> None:
        """Search the corpus vectors `block`, whose first row is corpus position `start`."""
        import faiss

        block = np.ascontiguousarray(block, dtype=np.float32)
        if block.shape[0] == 0:
            return
        index: Any = faiss.IndexFlatIP(self.queries.shape[1])
        if self.gpu is not None:
            index = faiss.index_cpu_to_gpu(self.gpu, 0, index)
        index.add(block)
        need = min(self.top_k + self.extra, block.shape[0])
        approx, idx = index.search(self.queries, min(need + _WINDOW_MARGIN, block.shape[0]))
        index.reset()
        scores, idx = _exact_top(self.queries, block, approx, idx, need)
        idx = np.where(idx >= 0, idx + start, -1)
        if self.extra:
            assert self.exclude is not None  # extra > 0 only with exclude
            hit = idx == self.exclude[:, None]
            scores = np.where(hit, -np.inf, scores)
            idx = np.where(hit, -1, idx)
        self.scores, self.indices = _merge(
            self.scores, self.indices, scores.astype(np.float32), idx.astype(np.int64), self.top_k
        )

    def result(self, num_docs: int) -> tuple[np.ndarray, np.ndarray]:
        """[num_queries, min(top_k, num_docs)] scores and corpus positions, best first."""
        k = min(self.top_k, num_docs)
        pad = k - self.scores.shape[1]
        if pad > 0:  # fewer candidates than k (only with exclusions): fill the missing slots
            rows = len(self.queries)
            self.scores = np.concatenate([self.scores, np.full((rows, pad), -np.inf, np.float32)], axis=1)
            self.indices = np.concatenate([self.indices, np.full((rows, pad), -1, np.int64)], axis=1)
        return self.scores[:, :k], self.indices[:, :k]


def search(
    queries: np.ndarray,
    corpus: np.ndarray,
    *,
    top_k: int,
    chunk_size: int = 100_000,
    exclude: np.ndarray | None = None,
    use_gpu: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k corpus positions and inner-product scores for every query (see module docstring)."""
    top = TopK(queries, top_k, exclude=exclude, use_gpu=use_gpu)
    for start in range(0, corpus.shape[0], chunk_size):
        top.add(corpus[start : start + chunk_size], start)
    return top.result(corpus.shape[0])


def to_run(
    scores: np.ndarray, indices: np.ndarray, query_ids: Sequence[str], doc_ids: Sequence[str]
) -> dict[str, dict[str, float]]:
    """A pytrec_eval run: query id -> doc id -> score, missing slots dropped."""
    return {
        q: {doc_ids[i]: float(s) for s, i in zip(row_s, row_i, strict=True) if i >= 0}
        for q, row_s, row_i in zip(query_ids, scores, indices, strict=True)
    }
