"""A benchmark in BEIR layout, loaded and checked: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.

Contract (BEIR's own conventions):
- corpus lines are JSON objects with `_id` and `text` (and optionally `title`); a document's text is
  `(title + " " + text).strip()`. Queries need `_id` and `text`. Ids are strings.
- `qrels/<split>.tsv` has a header line, then `query-id<TAB>corpus-id<TAB>score` with an integer score.
  Judgments with score 0 are kept (they are "judged not relevant"; metrics treat them as such).
- The split's queries are exactly those named in its qrels, in order of first appearance.
Every problem is reported as `file:line: reason` (up to a few per file) through `UserError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tdro import utf8
from tdro.errors import UserError

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_FOLDER = "qrels"
_MAX_PROBLEMS = 10  # enough to see a pattern, few enough to read


@dataclass(frozen=True)
class Benchmark:
    """One split of a BEIR folder, with corpus and queries in a fixed order."""

    name: str
    split: str
    doc_ids: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> graded relevance

    @property
    def num_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def num_queries(self) -> int:
        return len(self.query_ids)


class _Problems:
    """Collects `file:line: reason` lines; raises them together."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.more = 0

    def add(self, line: str) -> None:
        if len(self.lines) < _MAX_PROBLEMS:
            self.lines.append(line)
        else:
            self.more += 1

    def raise_if_any(self) -> None:
        if self.lines:
            extra = [f"... and {self.more} more problems"] if self.more else []
            raise UserError(*self.lines, *extra)


def _json_lines(path: Path, problems: _Problems, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    for number, row in utf8.json_lines(path, problems.add):
        if not isinstance(row, dict):
            problems.add(f"{path}:{number}: expected a JSON object")
            continue
        missing = [key for key in required if not isinstance(row.get(key), str | int)]
        if missing:
            problems.add(f"{path}:{number}: missing or non-text field {', '.join(missing)}")
            continue
        yield number, row


def doc_text(row: dict) -> str:
    """BEIR's document text: title and text joined by a space, stripped."""
    return (str(row.get("title") or "") + " " + str(row["text"])).strip()


def read_qrels(path: Path) -> tuple[dict[str, dict[str, int]], dict[tuple[str, str], int]]:
    """Judgments and the file line of each (query, doc) pair, for error messages."""
    problems = _Problems()
    qrels: dict[str, dict[str, int]] = {}
    where: dict[tuple[str, str], int] = {}
    for number, raw in utf8.text_lines(path, problems.add):
        line = raw.rstrip("\r\n")
        fields = line.split("\t")
        if number == 1 and (len(fields) != 3 or not _is_int(fields[2])):
            continue  # the header line
        if len(fields) != 3 or not fields[0] or not fields[1]:
            problems.add(f"{path}:{number}: expected query-id<TAB>corpus-id<TAB>score, got {line[:60]!r}")
            continue
        if not _is_int(fields[2]):
            problems.add(f"{path}:{number}: score {fields[2]!r} is not an integer")
            continue
        qrels.setdefault(fields[0], {})[fields[1]] = int(fields[2])
        where[(fields[0], fields[1])] = number
    problems.raise_if_any()
    return qrels, where


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def load_beir(folder: str | Path, split: str = "test", name: str | None = None) -> Benchmark:
    """Load and check one split of a BEIR folder; raise `UserError` naming file and line on bad input."""
    root = Path(folder).expanduser()
    corpus_path, queries_path = root / CORPUS_FILE, root / QUERIES_FILE
    qrels_path = root / QRELS_FOLDER / f"{split}.tsv"
    if not root.is_dir():
        raise UserError(f"{root}: no such benchmark folder")
    missing = [str(p) for p in (corpus_path, queries_path, qrels_path) if not p.is_file()]
    if missing:
        splits = sorted(p.stem for p in (root / QRELS_FOLDER).glob("*.tsv"))
        hint = f" (splits here: {', '.join(splits)})" if splits and not qrels_path.is_file() else ""
        raise UserError(*(f"{m}: no such file{hint}" for m in missing))

    qrels, where = read_qrels(qrels_path)
    if not qrels:
        raise UserError(f"{qrels_path}: split {split!r} has no judgments")

    problems = _Problems()
    doc_ids: list[str] = []
    doc_texts: list[str] = []
    first_line: dict[str, int] = {}
    for number, row in _json_lines(corpus_path, problems, ("_id", "text")):
        doc_id = str(row["_id"])
        if doc_id in first_line:
            first = first_line[doc_id]
            problems.add(f"{corpus_path}:{number}: duplicate _id {doc_id!r} (first on line {first})")
            continue
        first_line[doc_id] = number
        doc_ids.append(doc_id)
        doc_texts.append(doc_text(row))
    wanted = set(qrels)
    query_text: dict[str, str] = {}
    for _, row in _json_lines(queries_path, problems, ("_id", "text")):
        if str(row["_id"]) in wanted:
            query_text[str(row["_id"])] = str(row["text"])
    problems.raise_if_any()

    for (query_id, doc_id), number in where.items():
        if query_id not in query_text:
            problems.add(f"{qrels_path}:{number}: query-id {query_id!r} is not in {queries_path.name}")
        if doc_id not in first_line:
            problems.add(f"{qrels_path}:{number}: corpus-id {doc_id!r} is not in {corpus_path.name}")
    problems.raise_if_any()

    query_ids = list(qrels)  # dicts keep first-appearance order
    return Benchmark(
        name=name or root.name, split=split, doc_ids=doc_ids, doc_texts=doc_texts, query_ids=query_ids,
        query_texts=[query_text[q] for q in query_ids], qrels=qrels,
    )
