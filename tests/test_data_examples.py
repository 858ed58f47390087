"""The example builder: positive and negative draws, prompts, symmetric passage prompts, titles."""

from __future__ import annotations

import random

import pytest

from tdro.data.examples import build_example, example_rng
from tdro.data.records import Passage, QueryGroup
from tdro.enums import Pooling, PromptStyle
from tdro.errors import UserError
from tdro.spec.cards import DatasetCard
from tdro.spec.retriever import RetrieverConfig

E5 = RetrieverConfig(pooling=Pooling.mean, prompt_style=PromptStyle.e5)
PLAIN = RetrieverConfig(pooling=Pooling.mean, prompt_style=PromptStyle.none, query_prefix="query: ",
                        passage_prefix="passage: ")
CARD = DatasetCard(name="qa", path="x.jsonl", instructions=["Find it"])
SYM = DatasetCard(name="dup", path="x.jsonl", symmetric=True, instructions=["A", "B"])


def make_group(n_neg: int, n_pos: int = 1) -> QueryGroup:
    return QueryGroup(
        query="q",
        positives=[Passage(text=f"pos{i}") for i in range(n_pos)],
        negatives=[Passage(text=f"neg{i}") for i in range(n_neg)],
    )


def negatives_of(ex) -> list[str]:
    return ex.passages[1:]


def test_without_replacement_when_enough_negatives():
    g = make_group(n_neg=5)
    for seed in range(50):
        ex = build_example(g, CARD, 6, random.Random(seed), PLAIN)
        negs = negatives_of(ex)
        assert len(negs) == 5 and len(set(negs)) == 5  # all five, each once
        assert ex.passages[0] == "passage: pos0"


def test_with_replacement_when_too_few_negatives():
    g = make_group(n_neg=2)
    seen_repeat = False
    for seed in range(50):
        negs = negatives_of(build_example(g, CARD, 8, random.Random(seed), PLAIN))
        assert len(negs) == 7 and set(negs) <= {"passage: neg0", "passage: neg1"}
        seen_repeat |= len(set(negs)) < len(negs)
    assert seen_repeat  # 7 draws from 2 must repeat


def test_one_passage_per_query_needs_no_negatives():
    ex = build_example(make_group(n_neg=0), CARD, 1, random.Random(0), PLAIN)
    assert ex.passages == ["passage: pos0"] and ex.query == "query: q"


def test_missing_negatives_name_the_dataset():
    with pytest.raises(UserError, match="dataset qa: a query group has no negative_passages"):
        build_example(make_group(n_neg=0), CARD, 2, random.Random(0), PLAIN)


def test_positive_is_drawn_uniformly():
    g = make_group(n_neg=1, n_pos=3)
    firsts = {build_example(g, CARD, 1, random.Random(s), PLAIN).passages[0] for s in range(60)}
    assert firsts == {"passage: pos0", "passage: pos1", "passage: pos2"}


def test_e5_query_prompt_and_plain_passages():
    ex = build_example(make_group(n_neg=1), CARD, 2, random.Random(0), E5)
    assert ex.query == "Instruct: Find it\nQuery: q"
    assert ex.passages == ["pos0", "neg0"]


def test_symmetric_passages_get_an_independent_instruction():
    g = make_group(n_neg=3)
    pairs = set()
    for seed in range(60):
        ex = build_example(g, SYM, 4, random.Random(seed), E5)
        q_instr = ex.query.split("\n")[0].removeprefix("Instruct: ")
        p_instrs = {p.split("\n")[0].removeprefix("Instruct: ") for p in ex.passages}
        assert len(p_instrs) == 1  # one instruction for all passages of the group
        assert ex.passages[0].endswith("\nQuery: pos0")
        pairs.add((q_instr, p_instrs.pop()))
    assert pairs == {("A", "A"), ("A", "B"), ("B", "A"), ("B", "B")}  # drawn independently


def test_titles_are_joined_with_a_space():
    g = QueryGroup(query="q", positives=[Passage(text="body", title="Head")],
                   negatives=[Passage(text="n", title="")])
    ex = build_example(g, CARD, 2, random.Random(0), E5)
    assert ex.passages == ["Head body", " n"]


def test_example_rng_is_a_function_of_its_counters():
    a = example_rng(1, 2, 0, 3).random()
    assert a == example_rng(1, 2, 0, 3).random()
    others = {example_rng(*k).random() for k in [(2, 2, 0, 3), (1, 3, 0, 3), (1, 2, 1, 3), (1, 2, 0, 4)]}
    assert a not in others and len(others) == 4
