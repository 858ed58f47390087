"""From a query group to the texts the encoder sees: one positive, hard negatives, prompts.

`build_example` takes one positive (uniform choice) and `passages_per_query - 1` negatives: a sample
without replacement when the group has enough, with replacement otherwise, none when
`passages_per_query == 1`. With the e5 prompt style the query gets one of the card's instructions
(`"Instruct: {instruction}\\nQuery: {query}"`); for a symmetric dataset every passage of the group gets
one instruction too, drawn independently of the query's. Passages are `title + " " + text` when titled.
All randomness comes from the `random.Random` passed in; `example_rng` makes one per
(seed, step, process, position), so no two examples share an RNG stream and a resumed run redraws
the same examples.

`build_scored_example` turns an STS pair into a one-passage example with its score: both sentences are
formatted as queries with the same instruction (the task is symmetric), as e5 formats STS.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from tdro.data.records import QueryGroup, ScoredPair
from tdro.enums import PromptStyle
from tdro.errors import UserError
from tdro.spec.cards import DatasetCard
from tdro.spec.retriever import RetrieverConfig, format_passage, format_query


@dataclass(frozen=True)
class TrainingExample:
    query: str
    passages: list[str]  # [positive, negative_1, ..., negative_{n-1}]
    score: float | None = None  # a scored pair's gold similarity (then `passages` is the second sentence)


def example_rng(seed: int, step: int, process_index: int, position: int) -> random.Random:
    """A fresh RNG determined by (seed, step, process, position) alone."""
    digest = hashlib.sha256(f"tdro-example|{seed}|{step}|{process_index}|{position}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "little"))


def build_example(group: QueryGroup, card: DatasetCard, passages_per_query: int, rng: random.Random,
                  config: RetrieverConfig, negatives_rng: random.Random | None = None) -> TrainingExample:
    """`negatives_rng` (default `rng`) draws the negatives alone: cross-GPU batch balance shares the
    positive and prompts across processes and draws each process's negatives apart."""
    if passages_per_query < 1:
        raise ValueError(f"passages_per_query must be >= 1, got {passages_per_query}")
    positive = rng.choice(group.positives)
    wanted = passages_per_query - 1
    if wanted == 0:
        negatives = []
    elif not group.negatives:
        raise UserError(
            f"dataset {card.name}: a query group has no negative_passages but passages_per_query="
            f"{passages_per_query} needs {wanted}; use passages_per_query: 1 or add hard negatives"
        )
    elif len(group.negatives) >= wanted:
        negatives = (negatives_rng or rng).sample(group.negatives, wanted)
    else:
        negatives = (negatives_rng or rng).choices(group.negatives, k=wanted)

    e5 = config.prompt_style is PromptStyle.e5
    query_instruction = rng.choice(card.instructions) if e5 else None
    passage_instruction = rng.choice(card.instructions) if e5 and card.symmetric else None
    return TrainingExample(
        query=format_query(group.query, query_instruction, config),
        passages=[format_passage(p.full_text, passage_instruction, config) for p in [positive, *negatives]],
    )


def build_scored_example(pair: ScoredPair, card: DatasetCard, rng: random.Random,
                         config: RetrieverConfig) -> TrainingExample:
    instruction = rng.choice(card.instructions) if config.prompt_style is PromptStyle.e5 else None
    return TrainingExample(
        query=format_query(pair.sentence1, instruction, config),
        passages=[format_query(pair.sentence2, instruction, config)], score=pair.score,
    )
