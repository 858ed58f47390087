"""Metrics: parity with pytrec_eval on a run with ties and missing judgements, and hand-derived values."""

from __future__ import annotations

import math

import pytest
import pytrec_eval

from tdro.errors import UserError
from tdro.retrieval.metrics import DEFAULT_METRICS, Metric, evaluate_run, parse_metrics, trec_order

# q1: graded (d1=2, d2=1), d3 judged NOT relevant (0); a tie at 0.9 between d3 and the unjudged dx.
# q2: its relevant doc is never retrieved. q3: a tie between its two relevant docs.
# q4: in the qrels but absent from the run. q9: in the run but not in the qrels (ignored).
QRELS = {
    "q1": {"d1": 2, "d2": 1, "d3": 0},
    "q2": {"d4": 1},
    "q3": {"d5": 1, "d6": 1},
    "q4": {"d7": 1},
}
RUN = {
    "q1": {"d3": 0.9, "dx": 0.9, "d2": 0.8, "d1": 0.5, "dy": 0.1},
    "q2": {"da": 0.7, "db": 0.6},
    "q3": {"d6": 0.5, "d5": 0.5, "dz": 0.9},
    "q9": {"d1": 1.0},
}


def test_hand_derived_values() -> None:
    metrics = parse_metrics(["ndcg@3", "ndcg@5", "mrr@10", "mrr@2", "recall@3", "precision@3", "map@100"])
    scores = evaluate_run(QRELS, RUN, metrics)
    log2 = math.log2
    # trec_eval ranks ties by doc id descending: q1 -> dx, d3, d2, d1, dy; q3 -> dz, d6, d5.
    assert trec_order(RUN["q1"]) == ["dx", "d3", "d2", "d1", "dy"]
    idcg_q1 = 2 / log2(2) + 1 / log2(3)
    ndcg3_q1 = (1 / log2(4)) / idcg_q1
    ndcg5_q1 = (1 / log2(4) + 2 / log2(5)) / idcg_q1
    ndcg3_q3 = (1 / log2(3) + 1 / log2(4)) / (1 / log2(2) + 1 / log2(3))
    per = scores.per_query
    assert per["q1"]["ndcg@3"] == pytest.approx(ndcg3_q1)
    assert per["q1"]["ndcg@5"] == pytest.approx(ndcg5_q1)
    assert per["q3"]["ndcg@3"] == pytest.approx(ndcg3_q3)
    assert per["q1"]["mrr@10"] == pytest.approx(1 / 3) and per["q3"]["mrr@10"] == pytest.approx(1 / 2)
    assert per["q1"]["mrr@2"] == 0.0 and per["q3"]["mrr@2"] == pytest.approx(1 / 2)
    assert per["q1"]["recall@3"] == pytest.approx(1 / 2)  # d3 (score 0) does not count as relevant
    assert per["q1"]["precision@3"] == pytest.approx(1 / 3)
    assert per["q1"]["map@100"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    # BEIR-style mean: over all four qrels queries; q2 (nothing relevant found) and q4 (no run) count 0.
    assert set(per) == {"q1", "q2", "q3", "q4"}
    assert per["q2"] == per["q4"] == {m.name: 0.0 for m in metrics}
    assert scores.mean["ndcg@3"] == pytest.approx((ndcg3_q1 + ndcg3_q3) / 4)
    assert scores.mean["mrr@10"] == pytest.approx((1 / 3 + 1 / 2) / 4)
    assert scores.mean["mrr@2"] == pytest.approx((1 / 2) / 4)
    assert scores.mean["recall@3"] == pytest.approx((1 / 2 + 1) / 4)


def test_parity_with_pytrec_eval() -> None:
    metrics = parse_metrics([*DEFAULT_METRICS, "precision@1", "precision@5", "ndcg@2"])
    scores = evaluate_run(QRELS, RUN, metrics)
    measures = {"ndcg_cut.1,2,3,5,10,100", "recall.10,100,1000", "map_cut.100", "P.1,5", "recip_rank"}
    direct = pytrec_eval.RelevanceEvaluator(QRELS, measures).evaluate(RUN)
    for q in QRELS:
        for m in metrics:
            expected = direct[q][m.trec_key] if q in direct else 0.0
            # No first relevant document lies beyond rank 10 here, so mrr@10 is the plain recip_rank.
            assert scores.per_query[q][m.name] == pytest.approx(expected, abs=1e-12), (q, m.name)
    for m in metrics:
        assert scores.mean[m.name] == pytest.approx(sum(scores.per_query[q][m.name] for q in QRELS) / 4)


def test_parse_metrics() -> None:
    assert parse_metrics(["NDCG@10", "recall@100", "ndcg@10"]) == [Metric("ndcg", 10), Metric("recall", 100)]
    assert Metric("map", 100).trec_key == "map_cut_100" and Metric("precision", 5).trec_key == "P_5"
    with pytest.raises(UserError) as err:
        parse_metrics(["ndcg@10", "bleu@4", "ndcg@0"], field_name="--metrics")
    assert len(err.value.problems) == 1
    assert "--metrics" in err.value.problems[0] and "'bleu@4'" in err.value.problems[0]


def test_empty_run_counts_zero() -> None:
    scores = evaluate_run(QRELS, {}, parse_metrics(["ndcg@10", "mrr@10"]))
    assert scores.mean == {"ndcg@10": 0.0, "mrr@10": 0.0}
