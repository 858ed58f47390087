"""The negative-selection rule of mining, against hand-derived cases."""

from __future__ import annotations

import pytest

from tdro.data.mining import query_rng, select_negatives

RANKED = list(range(10, 20))  # corpus positions 10..19 at ranks 0..9
SCORES = [1.0 - 0.1 * r for r in range(10)]  # 1.0, 0.9, ..., 0.1


def pick(**kw):
    args = {"depth": (2, 8), "negatives": 3, "seed": 42, "query_id": "q"} | kw
    return select_negatives(kw.pop("ranked", RANKED), kw.pop("scores", SCORES), kw.pop("positives", set()),
                            **{k: v for k, v in args.items() if k not in ("ranked", "scores", "positives")})


def test_draw_is_the_seeded_sample_of_the_depth_window() -> None:
    expected = query_rng(42, "q").sample([12, 13, 14, 15, 16, 17], 3)
    assert pick().negatives == expected


@pytest.mark.parametrize(("kw", "candidates"), [
    pytest.param({"positives": {12, 15}}, [13, 14, 16, 17], id="positives-removed"),
    pytest.param({"ranked": [10, 11, 12, -1, 14, -1, 16, 17, 18, 19]}, [12, 14, 16, 17], id="missing-slots"),
    pytest.param({"positive_score": 0.8, "margin": 0.75}, [14, 15, 16, 17], id="margin"),
])
def test_candidates_are_the_window_minus_what_the_rule_removes(kw: dict, candidates: list[int]) -> None:
    assert pick(negatives=10, **kw).negatives == candidates  # all kept in rank order when few enough


def test_margin_counts_what_it_removed() -> None:
    # threshold 0.75 * 0.8 = 0.6: ranks 2, 3 (scores 0.8, 0.7) go
    assert pick(positive_score=0.8, margin=0.75).false_negatives == 2


def test_fewer_candidates_than_asked_keeps_them_all() -> None:
    assert pick(depth=(2, 4), negatives=16).negatives == [12, 13]


def test_no_candidate_left_gives_none() -> None:
    assert pick(positives={12, 13}, depth=(2, 4)).negatives == []


def test_draw_depends_on_the_query_not_on_the_order_of_calls() -> None:
    first = pick(query_id="a").negatives
    pick(query_id="b")
    assert pick(query_id="a").negatives == first
    assert any(pick(query_id=f"x{i}").negatives != first for i in range(5))
