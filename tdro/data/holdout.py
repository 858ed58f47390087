"""A held-out test set carved out of a pairs dataset: the `holdout` stage's rule.

Contract (torch-free, pure):
- `hold_out(data, spec)`: the dataset's distinct queries (exact text) are ranked by `rank_key(seed, text)`,
  a blake2b digest, so the choice depends on neither row order nor Python's hash seed. The first
  `spec.queries` of those with at most `spec.max_positives` distinct positives are held out: every row
  with such a query leaves training, and the union of its rows' positives are that query's relevant
  documents (score 1). The test corpus is the held-out positives (in rank order of their queries), then
  the dataset's other passages ranked by `rank_key(seed, full text)`, up to `spec.corpus` documents (all
  when None). Of the other queries, the first `spec.train_queries` in rank order (all when None) are
  kept for training; kept rows keep their order.
- Fewer eligible queries than `spec.queries`, or none left to train on, is a `UserError`.
- `train_lines(held)`: one pairs line `{"query", "positive", "title"?}` per kept (query, positive).
  `benchmark_lines(held, split)`: the held-out part as a BEIR folder, relative file name -> lines:
  `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl` (`_id`, `text`), `qrels/<split>.tsv` (BEIR's
  header). Writing them is the stage's (`tdro.stages.holdout`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from tdro.data.sources import SourceData, SourceGroup
from tdro.errors import UserError
from tdro.spec.experiment import HoldoutSpec

QRELS_HEADER = "query-id\tcorpus-id\tscore"


def rank_key(seed: int, text: str) -> bytes:
    return hashlib.blake2b(f"{seed}\0{text}".encode(), digest_size=16).digest()


@dataclass
class HeldOut:
    """The two parts of one dataset (passages by position in `data.passages`)."""

    data: SourceData
    train: list[SourceGroup] = field(default_factory=list)
    test_queries: list[tuple[str, str]] = field(default_factory=list)  # (query id, text)
    qrels: dict[str, list[int]] = field(default_factory=dict)  # query id -> passage positions
    corpus: list[int] = field(default_factory=list)  # passage positions
    unused_queries: int = 0

    @property
    def train_queries(self) -> int:
        return len({group.query for group in self.train})


def hold_out(data: SourceData, spec: HoldoutSpec) -> HeldOut:
    """Split `data` as the module docstring states."""
    rows: dict[str, list[SourceGroup]] = {}
    for group in data.groups:
        rows.setdefault(group.query, []).append(group)
    # each query's distinct positives over its rows, in order
    positives = {text: list(dict.fromkeys(p for group in groups for p in group.positives))
                 for text, groups in rows.items()}
    ranked = sorted(rows, key=lambda text: rank_key(spec.seed, text))
    eligible = [t for t in ranked if spec.max_positives is None or len(positives[t]) <= spec.max_positives]
    if len(eligible) < spec.queries or len(rows) <= spec.queries:
        raise UserError(f"holdout.queries: {spec.queries} held-out queries asked, but {len(eligible)} of the "
                        f"{len(rows)} distinct queries can be held out and one must be left to train on")
    held = eligible[: spec.queries]
    chosen = set(held)
    rest = [t for t in ranked if t not in chosen]
    kept = set(rest if spec.train_queries is None else rest[: spec.train_queries])
    out = HeldOut(data=data, unused_queries=len(rest) - len(kept))
    out.train = [group for group in data.groups if group.query in kept]
    relevant_docs: dict[int, None] = {}
    for text in held:
        query_id = rows[text][0].query_id
        out.test_queries.append((query_id, text))
        out.qrels[query_id] = positives[text]
        relevant_docs.update(dict.fromkeys(positives[text]))
    others = sorted((i for i in range(len(data.passages)) if i not in relevant_docs),
                    key=lambda i: rank_key(spec.seed, data.passages[i].full_text))
    room = None if spec.corpus is None else max(spec.corpus - len(relevant_docs), 0)
    out.corpus = [*relevant_docs, *others[:room]]
    return out


def train_lines(held: HeldOut) -> Iterator[bytes]:
    for group in held.train:
        for position in group.positives:
            passage = held.data.passages[position]
            row = {"query": group.query, "positive": passage.text}
            if passage.title is not None:
                row["title"] = passage.title
            yield json.dumps(row, ensure_ascii=False).encode()


def benchmark_lines(held: HeldOut, split: str) -> dict[str, Iterator[bytes]]:
    """The held-out part as a BEIR folder: relative file name -> its lines."""
    data = held.data
    passages = data.passages

    def lines(rows) -> Iterator[bytes]:
        return (json.dumps(row, ensure_ascii=False).encode() for row in rows)

    qrels = (f"{query_id}\t{data.doc_ids[i]}\t1"
             for query_id, _ in held.test_queries for i in held.qrels[query_id])
    return {
        "corpus.jsonl": lines({"_id": data.doc_ids[i], "title": passages[i].title or "",
                               "text": passages[i].text} for i in held.corpus),
        "queries.jsonl": lines({"_id": query_id, "text": text} for query_id, text in held.test_queries),
        f"qrels/{split}.tsv": (line.encode() for line in (QRELS_HEADER, *qrels)),
    }
