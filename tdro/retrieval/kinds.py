"""One benchmark card, any kind: load it (checked) and evaluate it; the evaluate stage and `tdro eval` call
these two, so both evaluate a kind the same way.

`load_benchmark(card)` reads and checks the card's files (a `UserError` naming file:line or card field)
before anything is encoded; `evaluate_benchmark(evaluator, loaded, ...)` dispatches on the card's `kind`
and returns a `BenchmarkResult` carrying the card's kind, group and language (None off the main process).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tdro.enums import BenchmarkKind
from tdro.retrieval.answer_recall import AnswerBenchmark, evaluate_answer_recall, load_answer_benchmark
from tdro.retrieval.beir import Benchmark, load_beir
from tdro.retrieval.evaluator import BenchmarkResult, Evaluator
from tdro.retrieval.sts import StsPairs, evaluate_sts, load_sts
from tdro.spec.cards import BenchmarkCard


@dataclass(frozen=True)
class LoadedBenchmark:
    card: BenchmarkCard
    data: Benchmark | AnswerBenchmark | StsPairs


def load_benchmark(card: BenchmarkCard) -> LoadedBenchmark:
    if card.kind is BenchmarkKind.answer_recall:
        return LoadedBenchmark(card, load_answer_benchmark(card))
    if card.kind is BenchmarkKind.sts:
        return LoadedBenchmark(card, load_sts(card))
    return LoadedBenchmark(card, load_beir(card.path, card.split, name=card.name))


def evaluate_benchmark(
    evaluator: Evaluator, loaded: LoadedBenchmark, *, ignore_identical_ids: bool = False,
    progress_dir: Path | None = None, token_dir: str | Path | None = None,
) -> BenchmarkResult | None:
    """`ignore_identical_ids`: asked of every benchmark (retrieval only; a card may turn it on itself).
    `progress_dir`, `token_dir`: answer_recall's per-language records and passage tokens."""
    card, data = loaded.card, loaded.data
    if isinstance(data, AnswerBenchmark):
        return evaluate_answer_recall(evaluator, data, progress_dir=progress_dir, token_dir=token_dir)
    if isinstance(data, StsPairs):
        return evaluate_sts(evaluator, data)
    result = evaluator.evaluate(data, card.instruction,
                                ignore_identical_ids=card.ignores_identical_ids(ignore_identical_ids))
    if result is None:
        return None
    card_fields = {"kind": card.kind, "benchmark_group": card.group, "language": card.language}
    return result.model_copy(update=card_fields)
