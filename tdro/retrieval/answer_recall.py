"""The `answer_recall` benchmark kind (MKQA's protocol): load, check, rank per language, score, resume.

Contract:
- The card's `corpus` file has BEIR corpus lines (`_id`, `text`, optional `title`); a passage is
  `title + " " + text` (stripped), for encoding and for the answer match alike.
- Each language's query file (`card.query_file(lang)`) has lines `{"id", "question", "answers"}`, with
  `answers` a non-empty list of strings each with at least one token. Anything else is a `UserError`
  naming file:line; a language whose file is missing names the card field.
- Each language's queries (the card's instruction, as retrieval queries get it) rank the corpus for the
  top `max(card.k)`; a passage is a hit when `tdro.retrieval.answer_match.has_answer`; the language's
  metrics are `accuracy@k` for each k of the card; the benchmark's `metrics` are their mean over languages.
- Languages are evaluated and recorded one by one: with a `progress_dir`, each finished language is a
  file `<progress_dir>/<benchmark>/<language>.json`, and a language whose file is there is not evaluated
  again (a stopped evaluation resumes at the next language).
- Passage tokens are computed for retrieved passages only, memoised, and with a `token_dir` kept in
  `tokens-<corpus sha256[:16]>.jsonl.gz` (appended per language), so a resume or the next run does not
  tokenise them again.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tdro import utf8
from tdro.errors import UserError
from tdro.retrieval.answer_match import accuracy_at, has_answer, tokenize
from tdro.retrieval.beir import _json_lines, _Problems, doc_text
from tdro.retrieval.cache import _sha256_file, atomic_write_bytes
from tdro.spec.cards import BenchmarkCard

if TYPE_CHECKING:
    from tdro.retrieval.evaluator import BenchmarkResult, Evaluator


@dataclass(frozen=True)
class LanguageQueries:
    language: str
    ids: list[str]
    questions: list[str]
    answers: list[list[str]]


@dataclass(frozen=True)
class AnswerBenchmark:
    card: BenchmarkCard
    corpus_path: Path
    doc_ids: list[str]
    doc_texts: list[str]
    languages: list[LanguageQueries]

    @property
    def num_queries(self) -> int:
        return sum(len(q.ids) for q in self.languages)


def read_queries(path: Path, language: str) -> LanguageQueries:
    """One language's query file, checked: every line needs an id, a question and non-empty answers."""
    problems = _Problems()
    ids: list[str] = []
    questions: list[str] = []
    answers: list[list[str]] = []
    for number, row in utf8.json_lines(path, problems.add):
        if not isinstance(row, dict) or not isinstance(row.get("id"), str | int):
            problems.add(f"{path}:{number}: expected an object with an id")
            continue
        if not isinstance(row.get("question"), str) or not row["question"].strip():
            problems.add(f"{path}:{number}: question missing or empty")
            continue
        given = row.get("answers")
        if not isinstance(given, list) or not given:
            problems.add(f"{path}:{number}: answers missing or empty")
            continue
        bad = next((i for i, a in enumerate(given) if not (isinstance(a, str) and tokenize(a))), None)
        if bad is not None:
            problems.add(f"{path}:{number}: answers[{bad}] {given[bad]!r} has no word "
                         "(it would match no passage)")
            continue
        ids.append(str(row["id"]))
        questions.append(row["question"])
        answers.append(given)
    problems.raise_if_any()
    if not ids:
        raise UserError(f"{path}: no queries")
    return LanguageQueries(language, ids, questions, answers)


def load_answer_benchmark(card: BenchmarkCard) -> AnswerBenchmark:
    """Load and check the corpus and every language's queries of an `answer_recall` card."""
    root = Path(card.path).expanduser()
    corpus_path = root / (card.corpus or "")
    if not corpus_path.is_file():
        raise UserError(f"benchmark {card.name}: corpus: {corpus_path}: no such file")
    missing = [f"benchmark {card.name}: languages: {lang}: no file {card.query_file(lang)}"
               for lang in card.languages or [] if not card.query_file(lang).is_file()]
    if missing:
        raise UserError(*missing)
    problems = _Problems()
    doc_ids: list[str] = []
    doc_texts: list[str] = []
    for _, row in _json_lines(corpus_path, problems, ("_id", "text")):
        doc_ids.append(str(row["_id"]))
        doc_texts.append(doc_text(row))
    problems.raise_if_any()
    if not doc_ids:
        raise UserError(f"{corpus_path}: no passages")
    languages = [read_queries(card.query_file(lang), lang) for lang in card.languages or []]
    return AnswerBenchmark(card, corpus_path, doc_ids, doc_texts, languages)


class PassageTokens:
    """Tokens of corpus passages by position, computed on first use; kept in a file when given a folder."""

    def __init__(self, texts: Sequence[str], corpus_path: Path, folder: str | Path | None) -> None:
        self.texts = texts
        self.tokens: dict[int, list[str]] = {}
        self.new: list[int] = []
        self.path: Path | None = None
        if folder is not None:
            digest = _sha256_file(corpus_path)[:16]  # streamed: the NQ corpus is GBs
            self.path = Path(folder) / f"tokens-{digest}.jsonl.gz"
            if self.path.is_file():
                with gzip.open(self.path, "rt", encoding="utf-8") as handle:
                    for line in handle:
                        entry = json.loads(line)
                        self.tokens[int(entry["i"])] = entry["t"]

    def get(self, position: int) -> list[str]:
        if position not in self.tokens:
            self.tokens[position] = tokenize(self.texts[position])
            self.new.append(position)
        return self.tokens[position]

    def save(self) -> None:
        """Append the tokens computed since the last save (gzip members concatenate)."""
        if self.path is None or not self.new:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(self.path, "at", encoding="utf-8") as handle:
            for position in self.new:
                handle.write(json.dumps({"i": position, "t": self.tokens[position]}) + "\n")
        self.new = []


def language_hits(indices: Sequence[Sequence[int]], answers: list[list[str]],
                  passages: PassageTokens) -> list[list[bool]]:
    """For each query (a row of retrieved corpus positions, -1 for none), which passages have an answer."""
    hits = []
    for row, query_answers in zip(indices, answers, strict=True):
        tokenised = [tokenize(a) for a in query_answers]
        hits.append([int(i) >= 0 and has_answer(passages.get(int(i)), tokenised) for i in row])
    return hits


def _progress_file(progress_dir: Path, benchmark: str, language: str) -> Path:
    return progress_dir / benchmark / f"{language}.json"


def evaluate_answer_recall(
    evaluator: Evaluator, bench: AnswerBenchmark, *, progress_dir: Path | None = None,
    token_dir: str | Path | None = None,
) -> BenchmarkResult | None:
    """Evaluate every language of the benchmark, one by one; the result on main, None elsewhere."""
    from tdro.retrieval.evaluator import BenchmarkResult
    from tdro.spec.retriever import format_passage, format_query

    started = time.perf_counter()
    card, config = bench.card, evaluator.encoder.config
    ks = sorted(set(card.k or []))
    top_k = max(ks)
    docs = [format_passage(d, None, config) for d in bench.doc_texts]
    passages = PassageTokens(bench.doc_texts, bench.corpus_path, token_dir) if evaluator.is_main else None
    per_language: dict[str, dict[str, float]] = {}
    per_query: dict[str, dict[str, float]] = {}
    encoded = {"query": 0, "passage": 0}
    for queries in bench.languages:
        done = _progress_file(progress_dir, card.name, queries.language) if progress_dir else None
        if done is not None and done.is_file():
            saved = json.loads(done.read_text())
        else:
            texts = [format_query(q, card.instruction, config) for q in queries.questions]
            ranked = evaluator.rank(texts, docs, top_k)
            if ranked is None or passages is None:
                continue  # not the main process: it only helped encode
            _, indices, counts = ranked
            for role, count in counts.items():
                encoded[role] += count
            hits = language_hits(indices.tolist(), queries.answers, passages)
            passages.save()
            saved = {"metrics": accuracy_at(hits, ks),
                     "per_query": {q: accuracy_at([row], ks)
                                   for q, row in zip(queries.ids, hits, strict=True)}}
            if done is not None:
                text = json.dumps(saved) + "\n"
                atomic_write_bytes(done, lambda h, text=text: h.write(text.encode()))
        per_language[queries.language] = saved["metrics"]
        per_query.update({f"{queries.language}/{q}": m for q, m in saved["per_query"].items()})
    if not evaluator.is_main:
        return None
    mean = {name: sum(m[name] for m in per_language.values()) / len(per_language)
            for name in next(iter(per_language.values()))}
    return BenchmarkResult(
        benchmark=card.name, kind=card.kind, benchmark_group=card.group, language=None, split=card.split,
        num_queries=bench.num_queries, num_docs=len(bench.doc_ids), top_k=top_k, ignore_identical_ids=False,
        metrics=mean, per_language=per_language, per_query=per_query, encoded=encoded,
        seconds=time.perf_counter() - started,
    )
