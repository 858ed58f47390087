"""What re-mining replaces negatives with: each training row's pool of mined candidates, and their texts.

Contract: `load_pools(candidates_file, reader)` reads the mine stage's folder that holds
`candidates_file`: its stage file (which names the data it mined, `MineStageFile.data_path`; a relative
card path, written before plans made them absolute, is taken from the runs folder's parent), the
candidates (each query's `top_k` ranked doc ids) and the corpus, read again as mining read it
(`tdro.data.sources.read_source`). For every row of `reader` (the training groups, after dedup; rows are
matched by `query_id`) the pool is its ranking within the mining depth, in rank order, minus the row's
positives and its original negatives (by docid). Returns a `DatasetPools` (pools, the passages of the
pooled doc ids, the mining's negatives per group). A row without candidates gets an empty pool.
`RemineSource(remining, passages)` is what the training stream asks: the `Passage`s a row's draw at a
step uses instead of its mined negatives, or None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tdro.data.reader import JsonlReader
from tdro.data.records import Passage, decode_group, decode_query_id
from tdro.data.remine import Remining
from tdro.errors import UserError


@dataclass(frozen=True)
class DatasetPools:
    pools: list[list[str]]
    passages: dict[str, Passage]
    negatives: int


def load_pools(candidates_file: str | Path, reader: JsonlReader) -> DatasetPools:
    import pyarrow.parquet as pq

    from tdro.data.sources import read_source
    from tdro.spec.stage_file import STAGE_FILE, MineStageFile, read_stage_file

    folder = Path(candidates_file).parent
    stage = read_stage_file(folder / STAGE_FILE)
    if not isinstance(stage, MineStageFile):
        raise UserError(f"{folder}: not a mine stage's folder")
    ranked = {row["query_id"]: row["doc_ids"]
              for row in pq.read_table(candidates_file, columns=["query_id", "doc_ids"]).to_pylist()}
    data_path = stage.data_path
    if stage.data is None and not Path(stage.dataset.path).is_absolute():
        # a stage file from before card paths were made absolute: relative to where the plan ran,
        # which is the runs folder's parent in the default layout
        data_path = (folder.parent.parent / stage.dataset.path).resolve()
    data = read_source(stage.dataset.source, data_path, stage.dataset.split)
    corpus = dict(zip(data.doc_ids, data.passages, strict=True))
    start, end = stage.mine.depth
    pools: list[list[str]] = []
    for row in range(len(reader)):
        raw = reader.raw(row)
        query_id, group = decode_query_id(raw), decode_group(raw)
        used = {p.docid for p in (*group.positives, *group.negatives)}
        pools.append([d for d in ranked.get(query_id, [])[start:end] if d not in used and d in corpus])
    passages = {d: corpus[d] for pool in pools for d in pool}
    return DatasetPools(pools, passages, stage.mine.negatives)


class RemineSource:
    """The stream's view of re-mining: which passages replace a row's negatives at a step."""

    def __init__(self, remining: Remining, passages: Sequence[dict[str, Passage]]) -> None:
        self.remining = remining
        self.passages = passages

    def negatives(self, dataset: int, row: int, step: int) -> list[Passage] | None:
        ids = self.remining.negatives_slice(dataset, row, step)
        return None if ids is None else [self.passages[dataset][d] for d in ids]
