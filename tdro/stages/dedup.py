"""The dedup stage: `python -m tdro.stages.dedup STAGE_FILE` (one process; no model).

Reads a `DedupStageFile`; loads the test items of its benchmarks (`benchmark_queries`: queries, STS
sentences or answer-recall questions, by the card's kind); keeps every query-group line of
`groups_path` whose query matches no test item (`tdro.data.dedup.QueryIndex`, the stage's
`max_distance`), verbatim, in order, to `groups.jsonl`;
writes each removed row with its match (`DedupMatch`) to `removed.jsonl`; `result.json` last
(`tdro.spec.stage_result.DedupResult`). `dedup_lines` is the same work for `tdro data dedup`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from tdro import utf8
from tdro.data.dedup import BenchmarkQuery, QueryIndex, fingerprints
from tdro.data.files import dataset_files
from tdro.data.records import BadLine, decode_group, decode_query_id
from tdro.errors import UserError
from tdro.spec.cards import BenchmarkCard
from tdro.spec.stage_file import DedupStageFile
from tdro.spec.stage_result import DedupMatch, DedupResult
from tdro.stages.mine import write_lines
from tdro.stages.runtime import run_stage_module


@dataclass
class DedupOutcome:
    kept: list[bytes] = field(default_factory=list)
    removed: list[DedupMatch] = field(default_factory=list)

    @property
    def rows_in(self) -> int:
        return len(self.kept) + len(self.removed)


def benchmark_queries(cards: Sequence[BenchmarkCard]) -> list[BenchmarkQuery]:
    """The test items of every benchmark, by kind: a retrieval benchmark's queries (the split the card
    names), both sentences of each STS pair (`<row>.sentence1|2`), an answer-recall set's questions in
    every language (`<language>/<id>`)."""
    from tdro.retrieval.answer_recall import AnswerBenchmark
    from tdro.retrieval.kinds import load_benchmark
    from tdro.retrieval.sts import StsPairs

    items: list[BenchmarkQuery] = []
    for card in cards:
        data = load_benchmark(card).data
        if isinstance(data, StsPairs):
            for row, pair in enumerate(zip(data.sentence1, data.sentence2, strict=True)):
                items.extend(BenchmarkQuery(card.name, f"{row}.sentence{k}", text)
                             for k, text in enumerate(pair, start=1))
        elif isinstance(data, AnswerBenchmark):
            items.extend(BenchmarkQuery(card.name, f"{language.language}/{q}", text)
                         for language in data.languages
                         for q, text in zip(language.ids, language.questions, strict=True))
        else:
            items.extend(BenchmarkQuery(card.name, q, text)
                         for q, text in zip(data.query_ids, data.query_texts, strict=True))
    return items


def _rows(path: Path) -> Iterator[tuple[str, bytes, str]]:
    """(query id, raw line, query) of each query-group line; ids from the line, else `q<row>`."""
    row = 0
    for file in dataset_files(path):
        for number, text in utf8.lines(file):
            if isinstance(text, UnicodeDecodeError):
                raise UserError(utf8.problem(file, text, number))
            if not text.strip():
                continue
            try:
                group = decode_group(text)
            except BadLine as exc:
                raise UserError(f"{file}:{number}: {exc}") from None
            query_id = decode_query_id(text)
            name = str(query_id) if query_id is not None else f"q{row}"
            yield name, text.rstrip("\r\n").encode(), group.query
            row += 1


_BLOCK = 65536  # rows fingerprinted and matched together: each distinct gram is keyed once per block


def dedup_lines(path: Path, index: QueryIndex, progress=None) -> DedupOutcome:
    """Split the query groups at `path` into kept lines and removed rows (see the module docstring)."""
    out = DedupOutcome()
    rows = _rows(path)
    while block := list(islice(rows, _BLOCK)):
        matches = index.match_many(fingerprints([query for _, _, query in block]))
        for (query_id, line, query), match in zip(block, matches, strict=True):
            if match is None:
                out.kept.append(line)
            else:
                out.removed.append(DedupMatch(
                    query_id=query_id, query=query, benchmark=match.item.benchmark,
                    test_query_id=match.item.query_id, test_query=match.item.query, distance=match.distance,
                ))
        if progress is not None:
            progress.update(len(block))
    return out


def write_outcome(folder: Path, outcome: DedupOutcome) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_lines(folder / DedupResult.DATA_FILE, outcome.kept)
    write_lines(folder / DedupResult.REMOVED_FILE, (m.model_dump_json().encode() for m in outcome.removed))


def run(stage: DedupStageFile) -> DedupResult:
    started = time.perf_counter()
    items = benchmark_queries(stage.benchmarks)
    index = QueryIndex(items, max_distance=stage.dedup.max_distance)
    outcome = dedup_lines(Path(stage.groups_path), index)
    write_outcome(stage.output, outcome)
    result = DedupResult(
        stage_id=stage.stage_id, wall_seconds=round(time.perf_counter() - started, 3),
        dataset=stage.dataset.name, rows_in=outcome.rows_in, rows_out=len(outcome.kept),
        removed=len(outcome.removed), test_queries=len(items), benchmarks=[c.name for c in stage.benchmarks],
    )
    result.write(stage.output)
    return result


def main(argv: list[str] | None = None) -> int:
    return run_stage_module(run, (DedupStageFile,), "tdro.stages.dedup", argv)


if __name__ == "__main__":
    sys.exit(main())
