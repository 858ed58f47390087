"""Retrieval metrics through pytrec_eval, averaged BEIR-style. No torch.

Names are `kind@k`: `ndcg@k` -> trec `ndcg_cut_k`, `recall@k` -> `recall_k`, `map@k` -> `map_cut_k`,
`precision@k` -> `P_k`, `mrr@k` -> trec `recip_rank` on the run cut to its top k. pytrec_eval's
`recip_rank` has no cutoff, so the run is first cut to k documents *in trec_eval's own order* (score
descending, ties by doc id descending): the value therefore equals pytrec_eval by construction, and
equals BEIR's MRR@k whenever scores do not tie.

Relevance is graded for nDCG (gain = judged score); the other metrics count score >= 1 as relevant, so a
judgment of 0 means "judged not relevant". The mean is taken over every query of the split (every query
in the qrels): a query with nothing retrieved, or no relevant document retrieved, counts as 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tdro.errors import UserError

DEFAULT_METRICS = (
    "ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "ndcg@100",
    "recall@10", "recall@100", "recall@1000", "mrr@10", "map@100",
)
_PATTERN = re.compile(r"^(ndcg|recall|mrr|map|precision)@([1-9]\d*)$")
_TREC = {"ndcg": "ndcg_cut", "recall": "recall", "map": "map_cut", "precision": "P"}

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True, order=True)
class Metric:
    kind: str
    k: int

    @property
    def name(self) -> str:
        return f"{self.kind}@{self.k}"

    @property
    def trec_key(self) -> str:
        """The key pytrec_eval reports this metric under."""
        return "recip_rank" if self.kind == "mrr" else f"{_TREC[self.kind]}_{self.k}"


def parse_metrics(names: Iterable[str], *, field_name: str = "metrics") -> list[Metric]:
    """`["ndcg@10", "recall@100"]` -> metrics (order kept, duplicates dropped); bad names -> UserError."""
    parsed: list[Metric] = []
    bad: list[str] = []
    for raw in names:
        match = _PATTERN.match(raw.strip().lower())
        if not match:
            bad.append(raw)
            continue
        metric = Metric(match[1], int(match[2]))
        if metric not in parsed:
            parsed.append(metric)
    if bad:
        raise UserError(
            f"{field_name}: unknown metric(s) {', '.join(map(repr, bad))}; "
            "use ndcg@k, recall@k, mrr@k, map@k or precision@k"
        )
    if not parsed:
        raise UserError(f"{field_name}: no metric given")
    return parsed


def trec_order(docs: Mapping[str, float]) -> list[str]:
    """Doc ids as trec_eval ranks them: score descending, ties by doc id descending."""
    return sorted(docs, key=lambda d: (docs[d], d), reverse=True)


def cut_run(run: Run, k: int) -> dict[str, dict[str, float]]:
    return {q: {d: float(docs[d]) for d in trec_order(docs)[:k]} for q, docs in run.items()}


@dataclass
class Scores:
    mean: dict[str, float]  # metric name -> mean over all queries of the split
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)  # query id -> metric name -> value


def evaluate_run(qrels: Qrels, run: Run, metrics: Iterable[Metric]) -> Scores:
    """Score a run (query id -> doc id -> score) against qrels with pytrec_eval."""
    import pytrec_eval

    metrics = list(metrics)
    qrels_int = {q: {d: int(s) for d, s in docs.items()} for q, docs in qrels.items()}
    run_float = {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if docs and q in qrels}
    per_query: dict[str, dict[str, float]] = {q: {m.name: 0.0 for m in metrics} for q in qrels_int}

    plain = [m for m in metrics if m.kind != "mrr"]
    if plain and run_float:
        grouped: dict[str, list[str]] = {}
        for m in plain:
            grouped.setdefault(_TREC[m.kind], []).append(str(m.k))
        measures = {f"{trec}.{','.join(ks)}" for trec, ks in grouped.items()}
        evaluated = pytrec_eval.RelevanceEvaluator(qrels_int, measures).evaluate(run_float)
        for q, values in evaluated.items():
            for m in plain:
                per_query[q][m.name] = float(values[m.trec_key])
    for m in (m for m in metrics if m.kind == "mrr"):
        if not run_float:
            continue
        evaluator = pytrec_eval.RelevanceEvaluator(qrels_int, {"recip_rank"})
        evaluated = evaluator.evaluate(cut_run(run_float, m.k))
        for q, values in evaluated.items():
            per_query[q][m.name] = float(values["recip_rank"])

    count = max(len(per_query), 1)
    mean = {m.name: sum(v[m.name] for v in per_query.values()) / count for m in metrics}
    return Scores(mean=mean, per_query=per_query)
