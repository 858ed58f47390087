"""What `tdro data check` reports about a training dataset: rows, mean sizes, bad lines.

`summarize(path)` opens the dataset with bad lines skipped (so that every problem is listed) and measures
rows, passages per group and text lengths in words, from all rows or an evenly spaced sample of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel

from tdro.data.reader import JsonlReader
from tdro.data.records import QueryGroup
from tdro.errors import UserError


class DataSummary(BaseModel):
    path: str
    files: int
    rows: int
    bad_lines: int
    problems: list[str]  # "file:line: reason"
    sampled_rows: int
    mean_query_words: float
    mean_positives: float
    mean_negatives: float
    mean_passage_words: float
    min_negatives: int
    titled_fraction: float  # passages with a title key
    fingerprint: str


def summarize(path: str | Path, *, max_rows: int = 100_000,
              cache_dir: str | Path | None = None) -> DataSummary:
    reader = JsonlReader(path, skip_bad_lines=True, cache_dir=cache_dir)
    n = len(reader)
    if n == 0 and not reader.skipped:
        raise UserError(f"{path}: no rows (the dataset is empty)")
    rows: np.ndarray | list[int] = (
        np.unique(np.linspace(0, n - 1, num=min(n, max_rows)).round().astype(np.int64)) if n else []
    )
    q_words, pos, neg, p_words, titled = [], [], [], [], 0
    passages = 0
    for i in rows:
        g = reader[int(i)]
        assert isinstance(g, QueryGroup)  # the reader's default decoder
        q_words.append(len(g.query.split()))
        pos.append(len(g.positives))
        neg.append(len(g.negatives))
        for p in (*g.positives, *g.negatives):
            p_words.append(len(p.full_text.split()))
            titled += p.title is not None
            passages += 1

    def mean(xs: list[int]) -> float:
        return round(float(np.mean(xs)), 2) if xs else 0.0

    return DataSummary(
        path=str(path), files=len(reader.files), rows=n, bad_lines=len(reader.skipped),
        problems=reader.skipped, sampled_rows=len(rows), mean_query_words=mean(q_words),
        mean_positives=mean(pos), mean_negatives=mean(neg), mean_passage_words=mean(p_words),
        min_negatives=min(neg) if neg else 0,
        titled_fraction=round(titled / passages, 3) if passages else 0.0,
        fingerprint=reader.fingerprint,
    )
