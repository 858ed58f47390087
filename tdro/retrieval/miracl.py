"""MIRACL's official layout to BEIR layout (`tdro bench convert miracl SRC DST`). Standard library only.

Contract, the official layout (anywhere under SRC, searched recursively):
- topics `topics.miracl-v1.0-<lang>-<split>.tsv`: `query-id<TAB>query` per line, no header;
- qrels `qrels.miracl-v1.0-<lang>-<split>.tsv`: `query-id<TAB>Q0<TAB>doc-id<TAB>relevance` per line;
- corpus `docs-*.jsonl.gz` (gzip JSON lines `{"docid", "title", "text"}`), read in name order.
Exactly one topics and one qrels file of the split must be found. DST gets `corpus.jsonl` (`_id`, `title`,
`text`), `queries.jsonl` (the judged queries, `_id`, `text`) and `qrels/<split>.tsv` (BEIR's header, then
`query-id<TAB>corpus-id<TAB>score`), each written under a temporary name and then renamed. Every problem
is a `UserError` naming file:line: a malformed line, a judged query with no topic, a judged document not
in the corpus, a duplicate docid.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tdro.errors import UserError

_MAX_PROBLEMS = 10


@dataclass(frozen=True)
class Converted:
    docs: int
    queries: int
    judgments: int


def _one(src: Path, pattern: str, what: str) -> Path:
    found = sorted(src.rglob(pattern))
    if len(found) != 1:
        listed = ", ".join(str(p) for p in found[:3]) or "none"
        raise UserError(f"{src}: expected one {what} file {pattern}, found {len(found)} ({listed})")
    return found[0]


def _tsv(path: Path) -> Iterator[tuple[int, list[str]]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line.rstrip("\r\n").split("\t")


def _raise(problems: list[str]) -> None:
    if problems:
        more = len(problems) - _MAX_PROBLEMS
        extra = [f"... and {more} more problems"] if more > 0 else []
        raise UserError(*problems[:_MAX_PROBLEMS], *extra)


def read_topics(path: Path) -> dict[str, str]:
    topics: dict[str, str] = {}
    problems = []
    for number, fields in _tsv(path):
        if len(fields) < 2 or not fields[0] or not fields[1].strip():
            problems.append(f"{path}:{number}: expected query-id<TAB>query")
            continue
        topics[fields[0]] = "\t".join(fields[1:]).strip()
    _raise(problems)
    return topics


def read_trec_qrels(path: Path) -> list[tuple[int, str, str, int]]:
    """(line, query id, doc id, relevance) of a TREC qrels file."""
    rows = []
    problems = []
    for number, fields in _tsv(path):
        if len(fields) == 1:
            fields = fields[0].split()
        if len(fields) != 4 or not fields[3].lstrip("-").isdigit():
            problems.append(f"{path}:{number}: expected query-id<TAB>Q0<TAB>doc-id<TAB>relevance")
            continue
        rows.append((number, fields[0], fields[2], int(fields[3])))
    _raise(problems)
    return rows


def _write(path: Path, lines: Iterator[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.writelines(lines)
    os.replace(tmp, path)


def _corpus_lines(files: list[Path], seen: set[str]) -> Iterator[str]:
    first: dict[str, str] = {}
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path}:{number}: malformed JSON ({exc.msg})") from None
                if not isinstance(row, dict) or not isinstance(row.get("docid"), str) \
                        or not isinstance(row.get("text"), str):
                    raise UserError(f"{path}:{number}: expected an object with text fields docid and text")
                docid = row["docid"]
                if docid in seen:
                    raise UserError(f"{path}:{number}: duplicate docid {docid!r} (first in {first[docid]})")
                seen.add(docid)
                first[docid] = f"{path.name}:{number}"
                doc = {"_id": docid, "title": row.get("title") or "", "text": row["text"]}
                yield json.dumps(doc, ensure_ascii=False) + "\n"


def convert_miracl(src: str | Path, dst: str | Path, split: str = "dev") -> Converted:
    """Convert one language's MIRACL split under `src` into a BEIR folder `dst`."""
    root, out = Path(src).expanduser(), Path(dst).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: no such folder")
    topics_path = _one(root, f"topics.*-{split}.tsv", "topics")
    qrels_path = _one(root, f"qrels.*-{split}.tsv", "qrels")
    docs = sorted(root.rglob("docs-*.jsonl.gz"))
    if not docs:
        raise UserError(f"{root}: no corpus files docs-*.jsonl.gz")
    topics = read_topics(topics_path)
    judgments = read_trec_qrels(qrels_path)
    _raise([f"{qrels_path}:{n}: query-id {q!r} is not in {topics_path.name}"
            for n, q, _, _ in judgments if q not in topics])
    seen: set[str] = set()
    _write(out / "corpus.jsonl", _corpus_lines(docs, seen))
    _raise([f"{qrels_path}:{n}: doc-id {d!r} is not in the corpus ({docs[0].parent})"
            for n, _, d, _ in judgments if d not in seen])
    judged = list(dict.fromkeys(q for _, q, _, _ in judgments))
    _write(out / "queries.jsonl",
           (json.dumps({"_id": q, "text": topics[q]}, ensure_ascii=False) + "\n" for q in judged))
    _write(out / "qrels" / f"{split}.tsv",
           iter(["query-id\tcorpus-id\tscore\n", *(f"{q}\t{d}\t{r}\n" for _, q, d, r in judgments)]))
    return Converted(docs=len(seen), queries=len(judged), judgments=len(judgments))
