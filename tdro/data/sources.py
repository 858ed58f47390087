"""Data that is not yet query groups: a pairs file or folder, or a BEIR split, read as positives-only groups.

Contract (torch-free; the mine stage and `tdro data mine` read through it):
- `read_pairs(path)`: a JSONL file, or a folder's `*.jsonl` files (`tdro.data.files.dataset_files`: sorted
  by name). A line is one of the shapes the reference code reads, plus ours:
  `{"query": str, "positive": str, "title"?: str}`, `[query, positive]` (a list of two or more strings:
  the rest are positives), `{"query": str, "pos": [str, ...]}`, `{"set": [query, positive, ...]}`.
  Blank lines are not rows. A line of none of these shapes is a problem `file:line: reason`; all of
  them (the first `MAX_PROBLEMS`) are raised together as one `UserError`.
- `read_beir_split(folder, split)`: the split's queries; positives are the documents its qrels judge
  with a score > 0; the corpus is the whole BEIR corpus (`tdro.retrieval.beir.load_beir`, which names
  bad lines the same way).
- Empty texts (blank after stripping) are dropped, never fatal: an empty positive is left out, and a
  query left with no positive (or an empty query) drops its row; both are counted (`empty_dropped`).
- The corpus is the distinct passages by full text (`title + " " + text`), in order of first
  appearance; a group names its positives by corpus position. Query ids are `q<row>` for pairs (row in
  reading order), the qrels' ids for BEIR; document ids are `d<position>` for pairs, BEIR's own ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tdro import utf8
from tdro.data.files import dataset_files
from tdro.data.records import BadLine, Passage, decode_group
from tdro.enums import DataSource
from tdro.errors import UserError

MAX_PROBLEMS = 10


@dataclass(frozen=True)
class SourceGroup:
    """One training query and the corpus positions of its positives."""

    query_id: str
    query: str
    positives: tuple[int, ...]


@dataclass
class SourceData:
    """A dataset's queries with positives only, and the corpus their negatives are mined from."""

    groups: list[SourceGroup] = field(default_factory=list)
    doc_ids: list[str] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    rows_in: int = 0  # rows read (blank lines excluded)
    empty_dropped: int = 0  # rows dropped because the query or every positive was empty
    empty_positives: int = 0  # empty positives left out of rows that kept another

    def texts(self) -> list[str]:
        return [p.full_text for p in self.passages]


class _Corpus:
    def __init__(self, data: SourceData) -> None:
        self.data = data
        self.position: dict[str, int] = {}

    def add(self, passage: Passage) -> int:
        key = passage.full_text
        if key not in self.position:
            self.position[key] = len(self.data.passages)
            docid = f"d{len(self.data.passages)}"
            self.data.passages.append(Passage(text=passage.text, title=passage.title, docid=docid))
            self.data.doc_ids.append(docid)
        return self.position[key]


def _strings(values: object, what: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{what} must be a list of strings")
    return values


def parse_pair(row: object) -> tuple[str, list[Passage]]:
    """(query, positives) of one decoded line, in any of the accepted shapes; ValueError(reason) otherwise."""
    if isinstance(row, list):
        texts = _strings(row, "a list line")
        if len(texts) < 2:
            raise ValueError("a list line needs a query and at least one positive")
        return texts[0], [Passage(text=t) for t in texts[1:]]
    if not isinstance(row, dict):
        raise ValueError("a line must be a JSON object or a list of strings")
    if "set" in row:
        texts = _strings(row["set"], "set")
        if len(texts) < 2:
            raise ValueError("set needs a query and at least one positive")
        return texts[0], [Passage(text=t) for t in texts[1:]]
    if not isinstance(row.get("query"), str):
        missing = "query" not in row
        raise ValueError("missing field `query` (or `set`)" if missing else "query must be a string")
    if "positive" in row:
        title = row.get("title")
        if not isinstance(row["positive"], str) or not (title is None or isinstance(title, str)):
            raise ValueError("positive and title must be strings")
        return row["query"], [Passage(text=row["positive"], title=title)]
    if "pos" in row:
        return row["query"], [Passage(text=t) for t in _strings(row["pos"], "pos")]
    raise ValueError("missing field `positive` (or `pos`)")


def _add_group(
    data: SourceData, corpus: _Corpus, query_id: str, query: str, positives: list[Passage]
) -> None:
    kept = [p for p in positives if p.full_text.strip()]
    if not query.strip() or not kept:
        data.empty_dropped += 1
        return
    data.empty_positives += len(positives) - len(kept)
    ids = tuple(dict.fromkeys(corpus.add(p) for p in kept))
    data.groups.append(SourceGroup(query_id, query, ids))


def read_pairs(path: str | Path) -> SourceData:
    """A pairs file or folder as positives-only groups (see the module docstring)."""
    data = SourceData()
    corpus = _Corpus(data)
    problems: list[str] = []
    for file in dataset_files(Path(path).expanduser()):
        for number, row in utf8.json_lines(file, problems.append):
            try:
                query, positives = parse_pair(row)
            except ValueError as exc:
                problems.append(f"{file}:{number}: {exc}")
                continue
            data.rows_in += 1
            _add_group(data, corpus, f"q{data.rows_in - 1}", query, positives)
    _raise(problems)
    return data


def read_beir_split(folder: str | Path, split: str) -> SourceData:
    """The queries of a BEIR split with their judged-relevant documents; the corpus is the whole corpus."""
    from tdro.retrieval.beir import load_beir  # stdlib-only, but it belongs to the evaluation side

    bench = load_beir(folder, split)
    data = SourceData(doc_ids=list(bench.doc_ids),
                      passages=[Passage(text=t, docid=d) for d, t in zip(bench.doc_ids, bench.doc_texts,
                                                                         strict=True)])
    position = {d: i for i, d in enumerate(bench.doc_ids)}
    for query_id, text in zip(bench.query_ids, bench.query_texts, strict=True):
        data.rows_in += 1
        judged = [position[d] for d, score in bench.qrels[query_id].items() if score > 0]
        kept = tuple(i for i in judged if bench.doc_texts[i].strip())
        if not text.strip() or not kept:
            data.empty_dropped += 1
            continue
        data.empty_positives += len(judged) - len(kept)
        data.groups.append(SourceGroup(query_id, text, kept))
    return data


def read_groups(path: str | Path) -> SourceData:
    """Query-group data to re-mine: its negatives are set aside; they and the positives form the corpus."""
    data = SourceData()
    corpus = _Corpus(data)
    problems: list[str] = []
    for file in dataset_files(Path(path).expanduser()):
        for number, text in utf8.text_lines(file, problems.append):
            try:
                group = decode_group(text)
            except BadLine as exc:
                problems.append(f"{file}:{number}: {exc}")
                continue
            data.rows_in += 1
            for passage in group.negatives:
                if passage.full_text.strip():
                    corpus.add(passage)
            _add_group(data, corpus, f"q{data.rows_in - 1}", group.query, list(group.positives))
    _raise(problems)
    return data


def _raise(problems: list[str]) -> None:
    if problems:
        more = [f"... and {len(problems) - MAX_PROBLEMS} more"] if len(problems) > MAX_PROBLEMS else []
        raise UserError(*problems[:MAX_PROBLEMS], *more)


def read_source(source: DataSource, path: str | Path, split: str | None = None) -> SourceData:
    """The dataset at `path` as positives-only groups, whatever its source."""
    if source is DataSource.pairs:
        return read_pairs(path)
    if source is DataSource.beir:
        if not split:
            raise UserError(f"{path}: a BEIR source needs a split")
        return read_beir_split(path, split)
    return read_groups(path)
