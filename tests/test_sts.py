"""The sts kind's pure parts: cosines, MTEB's correlations (hand-derived), and its bad-input lines."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tdro.errors import UserError
from tdro.retrieval.sts import correlations, cosine_rows, load_sts
from tdro.spec.cards import BenchmarkCard

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_sts"


def _card(path: Path) -> BenchmarkCard:
    return BenchmarkCard(name="tiny_sts", kind="sts", path=str(path), score_range=(0, 5))


def test_cosine_of_each_row_pair_and_zero_for_a_zero_vector() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    b = np.array([[1.0, 1.0], [0.0, -1.0], [1.0, 0.0]])
    assert cosine_rows(a, b).tolist() == pytest.approx([1 / math.sqrt(2), -1.0, 0.0])


def test_correlations_are_spearman_and_pearson_of_the_similarities() -> None:
    # ranks agree fully; Pearson by hand: cov 0.8 / sqrt(var 2 * var 0.38)
    scores = correlations([0.1, 0.2, 0.9], [1.0, 2.0, 3.0])
    assert scores["cosine_spearman"] == pytest.approx(1.0)
    assert scores["cosine_pearson"] == pytest.approx(0.8 / math.sqrt(2 * 0.38))


def test_the_fixture_loads_in_order() -> None:
    pairs = load_sts(_card(FIXTURE))
    assert pairs.scores == [4.8, 4.2, 0.6, 0.0, 3.6]
    assert pairs.sentence1[0] == "A man is playing a guitar."


@pytest.mark.parametrize(("line", "problem"), [
    pytest.param({"sentence1": "a", "sentence2": "b", "score": 5.5},
                 "score 5.5 is outside the card's score_range [0, 5]", id="above-range"),
    pytest.param({"sentence1": "a", "sentence2": "b", "score": -1},
                 "score -1 is outside the card's score_range [0, 5]", id="below-range"),
    pytest.param({"sentence1": "a", "sentence2": "b"}, "score missing or not a finite number",
                 id="no-score"),
    pytest.param({"sentence1": "a", "score": 1.0},
                 "expected an object with text fields sentence1 and sentence2", id="no-sentence2"),
])
def test_a_bad_line_is_one_problem_naming_file_and_line(tmp_path: Path, line: dict, problem: str) -> None:
    good = json.dumps({"sentence1": "x", "sentence2": "y", "score": 1.0})
    (tmp_path / "test.jsonl").write_text(f"{good}\n{good}\n{json.dumps(line)}\n")
    with pytest.raises(UserError) as caught:
        load_sts(_card(tmp_path))
    assert caught.value.problems == [f"{tmp_path / 'test.jsonl'}:3: {problem}"]
