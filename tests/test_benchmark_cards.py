"""Benchmark cards: the kind and the fields each kind needs; every card in the registry stays valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tdro.enums import BenchmarkKind
from tdro.spec.cards import BenchmarkCard
from tdro.spec.registry import Registry

ANSWER_FIELDS = {"kind": "answer_recall", "corpus": "corpus.jsonl", "queries": "queries/{language}.jsonl",
                 "languages": ["en", "de"], "k": [1, 5]}


def test_a_card_without_kind_is_retrieval() -> None:
    card = BenchmarkCard(name="b", path="somewhere")
    assert card.kind is BenchmarkKind.retrieval
    assert [p.as_posix() for p in card.files()] == ["somewhere/corpus.jsonl", "somewhere/queries.jsonl",
                                                    "somewhere/qrels/test.tsv"]


def test_every_registry_benchmark_card_is_valid() -> None:
    registry = Registry.load()
    names = [p.stem for p in Path("registry/benchmarks").glob("*.yaml")]
    kinds = {registry.benchmark(name).kind for name in names}
    assert kinds == set(BenchmarkKind)


def test_answer_recall_files_are_the_corpus_then_each_language() -> None:
    card = BenchmarkCard(name="b", path="root", **ANSWER_FIELDS)
    assert [p.as_posix() for p in card.files()] == ["root/corpus.jsonl", "root/queries/en.jsonl",
                                                    "root/queries/de.jsonl"]


@pytest.mark.parametrize(("fields", "message"), [
    pytest.param({"kind": "sts", "score_range": (0, 5), "ignore_identical_ids": True},
                 "ignore_identical_ids: not a field of kind sts", id="foreign-field"),
    pytest.param({"score_range": (0, 5)}, "score_range: not a field of kind retrieval",
                 id="sts-field-on-retrieval"),
    pytest.param({"kind": "answer_recall", "languages": ["en"]}, "needs corpus, queries, k", id="missing"),
    pytest.param({**ANSWER_FIELDS, "queries": "queries.jsonl"}, "must contain {language}", id="no-pattern"),
    pytest.param({**ANSWER_FIELDS, "languages": ["en", "en"]}, "listed twice", id="duplicate-language"),
    pytest.param({"kind": "sts"}, "needs score_range", id="sts-without-range"),
    pytest.param({"kind": "sts", "score_range": (5, 0)}, "low end must be below", id="empty-range"),
])
def test_a_card_with_fields_its_kind_does_not_take_is_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BenchmarkCard(name="b", path="p", **fields)
