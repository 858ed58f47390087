"""Hard-negative mining of one dataset with a retriever: the work of the `mine` stage and `tdro data mine`.

Contract:
- `mine(data, evaluator, spec)` ranks the dataset's corpus (`SourceData.passages`) for every query with
  the evaluator's encoder (its length-sorted batches, embedding cache and processes: `Evaluator.embed`)
  and exact inner-product search in chunks of `spec.chunk_size` (`tdro.retrieval.search.TopK`); queries
  get no instruction (the reference mines without one). The cache roles are the evaluation's
  (`tdro.retrieval.evaluator.corpus_role`), so evaluating the mining model on the same corpus reuses them.
  It returns `MinedData` on the main process and None on the others. The selection of each query's
  negatives is `tdro.data.mining.select_negatives`.
- A query with no candidate left is dropped (`no_candidates_dropped`), one with fewer than asked is kept
  (`short_groups`). Groups keep the source's order.
- `MinedData.lines()` are the training-format lines (`tdro.data.records`) with `query_id`, passages as
  `{docid, title?, text}`; `candidate_rows()` are each query's `top_k` ranked doc ids and scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from tdro.data.mining import select_negatives
from tdro.data.records import Passage
from tdro.data.sources import SourceData, SourceGroup
from tdro.spec.experiment import MineSpec

if TYPE_CHECKING:
    from tdro.retrieval.evaluator import Evaluator


@dataclass
class MinedGroup:
    source: SourceGroup
    negatives: list[int]
    ranked: list[int]
    scores: list[float]


@dataclass
class MinedData:
    data: SourceData
    groups: list[MinedGroup] = field(default_factory=list)
    no_candidates_dropped: int = 0
    short_groups: int = 0
    false_negatives_removed: int = 0
    passages_encoded: int = 0

    @property
    def negatives_total(self) -> int:
        return sum(len(g.negatives) for g in self.groups)

    def _passage(self, position: int) -> dict:
        p: Passage = self.data.passages[position]
        out: dict = {"docid": self.data.doc_ids[position]}
        if p.title is not None:
            out["title"] = p.title
        out["text"] = p.text
        return out

    def lines(self):
        """The training-format line of each kept group (bytes, no newline)."""
        for g in self.groups:
            yield msgspec.json.encode({
                "query_id": g.source.query_id, "query": g.source.query,
                "positive_passages": [self._passage(i) for i in g.source.positives],
                "negative_passages": [self._passage(i) for i in g.negatives],
            })

    def candidate_rows(self) -> list[dict]:
        ids = self.data.doc_ids
        return [{"query_id": g.source.query_id, "doc_ids": [ids[i] for i in g.ranked],
                 "scores": g.scores} for g in self.groups]


def _positive_scores(groups: list[SourceGroup], queries: np.ndarray, blocks) -> np.ndarray:
    """Each query's lowest positive score, accumulated over the corpus blocks as they are encoded."""
    lowest = np.full(len(groups), np.inf, dtype=np.float32)
    pairs = np.array([(q, p) for q, g in enumerate(groups) for p in g.positives], dtype=np.int64)
    pairs = pairs.reshape(-1, 2)

    def add(vectors: np.ndarray, start: int) -> None:
        inside = (pairs[:, 1] >= start) & (pairs[:, 1] < start + len(vectors))
        q, p = pairs[inside, 0], pairs[inside, 1] - start
        np.minimum.at(lowest, q, np.einsum("ij,ij->i", queries[q], vectors[p]))

    blocks.append(add)
    return lowest


def mine(data: SourceData, evaluator: Evaluator, spec: MineSpec) -> MinedData | None:
    """Rank, select and count (see the module docstring); None on processes other than the main one."""
    from tdro.retrieval.evaluator import QUERY_ROLE, corpus_role
    from tdro.retrieval.search import TopK
    from tdro.spec.retriever import format_passage, format_query

    config = evaluator.encoder.config
    queries = [format_query(g.query, None, config) for g in data.groups]
    q_vectors, _ = evaluator.embed(queries, role=QUERY_ROLE, max_length=config.query_max_length)
    top = TopK(q_vectors, spec.top_k) if q_vectors is not None else None
    listeners: list = []
    lowest = _positive_scores(data.groups, q_vectors, listeners) if q_vectors is not None else None
    texts = data.texts()
    chunks = range(0, len(texts), spec.chunk_size)
    encoded = 0
    for number, start in enumerate(chunks, start=1):
        docs = [format_passage(t, None, config) for t in texts[start : start + spec.chunk_size]]
        vectors, count = evaluator.embed(docs, role=corpus_role(number, len(chunks)),
                                         max_length=config.passage_max_length)
        encoded += count
        if top is not None and vectors is not None:
            top.add(vectors, start)
            for listen in listeners:
                listen(vectors, start)
    if top is None or lowest is None:
        return None
    scores, indices = top.result(len(texts))
    out = MinedData(data, passages_encoded=encoded)
    for q, group in enumerate(data.groups):
        ranked = [int(i) for i in indices[q] if i >= 0]
        row_scores = [float(s) for s, i in zip(scores[q], indices[q], strict=True) if i >= 0]
        selection = select_negatives(
            ranked, row_scores, set(group.positives), depth=spec.depth, negatives=spec.negatives,
            seed=spec.seed, query_id=group.query_id, positive_score=float(lowest[q]),
            margin=spec.false_negative_margin,
        )
        out.false_negatives_removed += selection.false_negatives
        if not selection.negatives:
            out.no_candidates_dropped += 1
            continue
        if len(selection.negatives) < spec.negatives:
            out.short_groups += 1
        out.groups.append(MinedGroup(group, selection.negatives, ranked, row_scores))
    return out
