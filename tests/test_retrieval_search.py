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


def test_many_ties_beyond_faiss_window_rank_by_position() -> None:
    # 30 copies of the best document: more than the k + 8 candidates faiss proposes, so the row is
    # ranked over the whole chunk and the first five copies by position win.
    queries, corpus = _vectors(4, 5), _vectors(120, 6)
    copies = list(range(3, 120, 4))[:30]
    corpus[copies] = queries[1] * 2
    expected_s, expected_i = _brute_force(queries, corpus, 5)
    scores, indices = search(queries, corpus, top_k=5, chunk_size=1000)
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_array_equal(scores, expected_s)
    assert list(indices[1]) == copies[:5]


def test_scores_are_exact_sums_whatever_faiss_threads_and_chunks() -> None:
    # Regression (issue 15): faiss's float32 scores moved by ~4e-7 between 1 and 2 threads, so 1 and 2
    # mining processes wrote different candidate scores. Scores are now exact sums cast to float32.
    import math

    import faiss

    rng = np.random.default_rng(9)
    queries = rng.standard_normal((20, 64)).astype(np.float32)
    corpus = rng.standard_normal((500, 64)).astype(np.float32)
    before = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(1)
        one = search(queries, corpus, top_k=10, chunk_size=70)
        faiss.omp_set_num_threads(2)
        two = search(queries, corpus, top_k=10, chunk_size=10_000)
    finally:
        faiss.omp_set_num_threads(before)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    for q in (0, 7, 19):
        for slot in (0, 9):
            d = int(one[1][q, slot])
            exact = math.fsum(float(a) * float(b) for a, b in zip(queries[q], corpus[d], strict=True))
            assert one[0][q, slot] == np.float32(exact)
