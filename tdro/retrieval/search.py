"""Exact inner-product search with faiss, over the corpus in chunks, merged to the top k.

Contract: `search(queries, corpus, top_k=..., chunk_size=...)` returns `(scores, indices)` of shape
[num_queries, min(top_k, num_docs)], rows sorted by score descending with ties broken by corpus position
ascending, so the result does not depend on `chunk_size`: where tied scores straddle a chunk's cut, that
query's row is ranked exactly (rare: it takes duplicate documents). At most `chunk_size` corpus
vectors are in an index at a time. Missing slots
(fewer candidates than k) have index -1 and score -inf. With `exclude` (the corpus position of each
query's own id, or -1) a query never retrieves that document: BEIR's `ignore_identical_ids`.
A GPU index is used when faiss was built with GPU support and a GPU is visible.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def _settle_boundary_ties(
    scores: np.ndarray, idx: np.ndarray, queries: np.ndarray, block: np.ndarray, need: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cut faiss's results (asked one longer) to `need`; where a tie crosses the cut, faiss's pick among the
    tied documents depends on its code path, so those rows are ranked exactly by (score, position)."""
    if scores.shape[1] > need:
        for q in np.flatnonzero(scores[:, need - 1] == scores[:, need]):
            full = block @ queries[q]
            order = np.lexsort((np.arange(block.shape[0]), -full))[:need]
            scores[q, :need], idx[q, :need] = full[order], order
    return scores[:, :need], idx[:, :need]


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
    import faiss

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    corpus = np.asarray(corpus, dtype=np.float32)
    num_queries, dim = queries.shape
    k = min(top_k, corpus.shape[0])
    # One extra candidate per chunk makes room for the excluded identical document.
    extra = 1 if exclude is not None and (exclude >= 0).any() else 0
    best_s = np.full((num_queries, 0), -np.inf, dtype=np.float32)
    best_i = np.full((num_queries, 0), -1, dtype=np.int64)
    gpu = _gpu_resources() if use_gpu in (None, True) else None
    if use_gpu and gpu is None:
        raise RuntimeError("a GPU index was requested but faiss has no GPU support or sees no GPU")

    for start in range(0, corpus.shape[0], chunk_size):
        block = np.ascontiguousarray(corpus[start : start + chunk_size])
        index = faiss.IndexFlatIP(dim)
        if gpu is not None:
            index = faiss.index_cpu_to_gpu(gpu, 0, index)
        index.add(block)
        need = min(k + extra, block.shape[0])
        scores, idx = index.search(queries, min(need + 1, block.shape[0]))
        scores, idx = _settle_boundary_ties(scores, idx, queries, block, need)
        idx = np.where(idx >= 0, idx + start, -1)
        if extra:
            hit = idx == exclude[:, None]
            scores = np.where(hit, -np.inf, scores)
            idx = np.where(hit, -1, idx)
        best_s, best_i = _merge(best_s, best_i, scores.astype(np.float32), idx.astype(np.int64), k)
        index.reset()
    return best_s, best_i


def to_run(
    scores: np.ndarray, indices: np.ndarray, query_ids: Sequence[str], doc_ids: Sequence[str]
) -> dict[str, dict[str, float]]:
    """A pytrec_eval run: query id -> doc id -> score, missing slots dropped."""
    return {
        q: {doc_ids[i]: float(s) for s, i in zip(row_s, row_i, strict=True) if i >= 0}
        for q, row_s, row_i in zip(query_ids, scores, indices, strict=True)
    }
