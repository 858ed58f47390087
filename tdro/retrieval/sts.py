"""The `sts` benchmark kind: sentence pairs with gold scores, scored as MTEB scores STS.

Contract:
- `<card.path>/<card.split>.jsonl` has lines `{"sentence1": str, "sentence2": str, "score": number}`;
  a score outside the card's `score_range` (closed), a missing field or bad JSON is a `UserError`
  naming file:line.
- Both sentences are formatted as queries (the card's instruction, the model's prompt style) and
  encoded with the passage length limit (sentences are not truncated more than passages are);
  similarity is the cosine of the two embeddings.
- Metrics (MTEB's names): `cosine_spearman` and `cosine_pearson` of the cosines against the gold scores
  (scipy's `spearmanr` and `pearsonr`, as MTEB).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tdro import utf8
from tdro.errors import UserError
from tdro.retrieval.beir import _Problems
from tdro.spec.cards import BenchmarkCard

if TYPE_CHECKING:
    from tdro.retrieval.evaluator import BenchmarkResult, Evaluator


_TEXTS = ("sentence1", "sentence2")


@dataclass(frozen=True)
class StsPairs:
    card: BenchmarkCard
    sentence1: list[str]
    sentence2: list[str]
    scores: list[float]


def _score(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def load_sts(card: BenchmarkCard) -> StsPairs:
    """Load and check the card's split."""
    path = card.files()[0]
    if not path.is_file():
        raise UserError(f"benchmark {card.name}: {path}: no such file (split {card.split!r})")
    low, high = card.score_range or (-math.inf, math.inf)
    problems = _Problems()
    first: list[str] = []
    second: list[str] = []
    scores: list[float] = []
    for number, row in utf8.json_lines(path, problems.add):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in _TEXTS):
            problems.add(f"{path}:{number}: expected an object with text fields sentence1 and sentence2")
            continue
        score = _score(row.get("score"))
        if score is None:
            problems.add(f"{path}:{number}: score missing or not a finite number")
            continue
        if not low <= score <= high:
            problems.add(f"{path}:{number}: score {score:g} is outside the card's score_range "
                         f"[{low:g}, {high:g}]")
            continue
        first.append(row["sentence1"])
        second.append(row["sentence2"])
        scores.append(score)
    problems.raise_if_any()
    if len(scores) < 2:
        raise UserError(f"{path}: fewer than two pairs (a correlation needs two)")
    return StsPairs(card, first, second, scores)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine of each row of `a` with the same row of `b` (float64; a zero vector gives 0)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    dots = np.einsum("ij,ij->i", a64, b64)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def correlations(similarities: Sequence[float], gold: Sequence[float]) -> dict[str, float]:
    """MTEB's STS scores: Spearman and Pearson of the similarities against the gold scores."""
    from scipy.stats import pearsonr, spearmanr

    return {"cosine_spearman": float(spearmanr(gold, similarities).statistic),
            "cosine_pearson": float(pearsonr(gold, similarities).statistic)}


def evaluate_sts(evaluator: Evaluator, pairs: StsPairs) -> BenchmarkResult | None:
    """Encode both sides, score the cosines; the result on main, None elsewhere."""
    from tdro.retrieval.evaluator import BenchmarkResult
    from tdro.spec.retriever import format_query

    started = time.perf_counter()
    card, config = pairs.card, evaluator.encoder.config
    length = config.passage_max_length
    left, n1 = evaluator.embed([format_query(s, card.instruction, config) for s in pairs.sentence1],
                               role="sentence1", max_length=length)
    right, n2 = evaluator.embed([format_query(s, card.instruction, config) for s in pairs.sentence2],
                                role="sentence2", max_length=length)
    if left is None or right is None:
        return None
    return BenchmarkResult(
        benchmark=card.name, kind=card.kind, benchmark_group=card.group, language=card.language,
        split=card.split,
        num_queries=len(pairs.scores), num_docs=0, top_k=0, ignore_identical_ids=False,
        metrics=correlations(cosine_rows(left, right).tolist(), pairs.scores),
        encoded={"query": n1 + n2, "passage": 0}, seconds=time.perf_counter() - started,
    )
