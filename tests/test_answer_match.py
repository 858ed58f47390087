"""DPR's answer match and accuracy@k against hand-derived cases: case, accents (NFD), punctuation."""

from __future__ import annotations

import pytest

from tdro.retrieval.answer_match import accuracy_at, contains, has_answer, tokenize


@pytest.mark.parametrize(("text", "tokens"), [
    pytest.param("Hello, World!", ["hello", ",", "world", "!"], id="punctuation-is-its-own-token"),
    pytest.param("8,849 metres", ["8", ",", "849", "metres"], id="digits-split-at-commas"),
    pytest.param("Saint-Germain", ["saint", "-", "germain"], id="hyphen"),
    pytest.param("  two\tspaces\n", ["two", "spaces"], id="whitespace-dropped"),
    pytest.param("Caf\u00e9", ["cafe\u0301"], id="nfd-decomposes-the-accent-and-keeps-it"),
    pytest.param("北京是首都。", ["北京是首都", "。"], id="cjk-letters-run-together"),
])
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_composed_and_decomposed_accents_are_the_same_tokens() -> None:
    assert tokenize("Caf\u00e9 de Flore") == tokenize("Cafe\u0301 de Flore")


@pytest.mark.parametrize(("passage", "answer", "found"), [
    pytest.param("PARIS is the capital.", "paris", True, id="uncased"),
    pytest.param("It lies in France.", "France", True, id="trailing-period-is-separate"),
    pytest.param("The Café de Flore", "Cafe", False, id="accent-not-stripped"),
    pytest.param("The Cafe\u0301 de Flore", "Caf\u00e9", True, id="accent-forms-match"),
    pytest.param("on the Boulevard Saint-Germain.", "Saint Germain", False, id="hyphen-is-a-token"),
    pytest.param("on the Boulevard Saint-Germain.", "saint-germain", True, id="hyphen-in-both"),
    pytest.param("8,849 metres high", "8849", False, id="number-punctuation-matters"),
    pytest.param("Parisian cafés", "Paris", False, id="whole-tokens-only"),
    pytest.param("the capital city", "capital city", True, id="contiguous-sequence"),
    pytest.param("the capital of the city", "capital city", False, id="not-contiguous"),
])
def test_answer_match(passage: str, answer: str, found: bool) -> None:
    assert has_answer(tokenize(passage), [tokenize(answer)]) is found


def test_any_answer_counts() -> None:
    assert has_answer(tokenize("8,849 metres"), [tokenize("8849 m"), tokenize("8,849 metres")])


def test_an_empty_answer_matches_nothing() -> None:
    assert not contains(tokenize("anything at all"), [])


def test_accuracy_at_k_is_the_share_of_queries_with_a_hit_in_the_top_k() -> None:
    hits = [[False, True, False], [False, False, False], [True, False, False]]
    assert accuracy_at(hits, [1, 2, 3]) == {"accuracy@1": 1 / 3, "accuracy@2": 2 / 3, "accuracy@3": 2 / 3}


def test_accuracy_at_k_beyond_the_retrieved_counts_what_there_is() -> None:
    assert accuracy_at([[False, True]], [1, 10]) == {"accuracy@1": 0.0, "accuracy@10": 1.0}
