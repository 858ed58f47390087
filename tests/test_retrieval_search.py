"""Chunked faiss search equals unchunked search and an independent numpy ranking, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from tdro.retrieval.search import identical_id_positions, search, to_run


def _vectors(rows: int, seed: int) -> np.ndarray:
    # Small integers: every dot product is exact in float32, and many scores tie.
    return np.random.default_rng(seed).integers(-1, 3, size=(rows, 8)).astype(np.float32)


def _brute_force(queries, corpus, k, exclude=None):
    """Independent reference: full score matrix, order by score desc then position asc."""
    scores = queries @ corpus.T
    if exclude is not None:
        for q, position in enumerate(exclude):
            if position >= 0:
                scores[q, position] = -np.inf
    positions = np.broadcast_to(np.arange(corpus.shape[0]), scores.shape)
    order = np.lexsort((positions, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10_000])
def test_chunked_equals_brute_force_with_ties(chunk_size: int) -> None:
    queries, corpus = _vectors(15, 0), _vectors(200, 1)
    corpus[50] = corpus[120] = corpus[199] = queries[0]  # exact duplicates: guaranteed ties at the top
    expected_s, expected_i = _brute_force(queries, corpus, 10)
    assert (expected_s[:, :-1] == expected_s[:, 1:]).any()  # the fixture really has ties
    scores, indices = search(queries, corpus, top_k=10, chunk_size=chunk_size)
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_array_equal(scores, expected_s)
    tied = scores[:, :-1] == scores[:, 1:]
    assert (indices[:, :-1] < indices[:, 1:])[tied].all()  # equal scores: corpus position ascending
    assert {50, 120, 199} <= set(indices[0])


@pytest.mark.parametrize("chunk_size", [3, 10_000])
def test_ignore_identical_ids(chunk_size: int) -> None:
    queries, corpus = _vectors(6, 2), _vectors(40, 3)
    doc_ids = [f"d{i}" for i in range(40)]
    query_ids = ["d5", "q1", "d39", "d0", "q4", "d17"]
    corpus[5], corpus[39], corpus[0], corpus[17] = queries[0], queries[2], queries[3], queries[5]
    exclude = identical_id_positions(query_ids, doc_ids)
    assert list(exclude) == [5, -1, 39, 0, -1, 17]
    expected_s, expected_i = _brute_force(queries, corpus, 5, exclude)
    scores, indices = search(queries, corpus, top_k=5, chunk_size=chunk_size, exclude=exclude)
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_array_equal(scores, expected_s)
    run = to_run(scores, indices, query_ids, doc_ids)
    for q in query_ids:
        assert q not in run[q] and len(run[q]) == 5
    # Without the option the queries find their own copies, so the option changes the result.
    _, kept = search(queries, corpus, top_k=5, chunk_size=chunk_size)
    np.testing.assert_array_equal(kept, _brute_force(queries, corpus, 5)[1])
    assert sum(int(p in row) for p, row in zip(exclude, kept, strict=True) if p >= 0) >= 2


def test_top_k_larger_than_corpus() -> None:
    queries, corpus = _vectors(3, 4), _vectors(5, 5)
    scores, indices = search(queries, corpus, top_k=100, chunk_size=2)
    assert indices.shape == (3, 5) and sorted(indices[0]) == [0, 1, 2, 3, 4]
    excluded = np.array([2, -1, -1])
    scores, indices = search(queries, corpus, top_k=100, chunk_size=2, exclude=excluded)
    assert 2 not in indices[0] and indices[0, -1] == -1 and scores[0, -1] == -np.inf
    assert len(to_run(scores, indices, ["a", "b", "c"], list("vwxyz"))["a"]) == 4
