"""The holdout stage: `python -m tdro.stages.holdout STAGE_FILE` (one process; no model).

Reads a `HoldoutStageFile`; reads the dataset's pairs (`tdro.data.sources`), refusing data whose
fingerprint differs from the stage file's; splits it by `tdro.data.holdout.hold_out`; writes
`train.jsonl` (the pairs left to train on) and `test/` (the held-out BEIR folder), then `result.json`
(`tdro.spec.stage_result.HoldoutResult`). Exit 0 on success, 2 with one line per problem for a `UserError`.
"""

from __future__ import annotations

import sys
import time

from tdro.data.files import require_fingerprint
from tdro.data.holdout import benchmark_lines, hold_out, train_lines
from tdro.data.sources import read_source
from tdro.enums import DataSource
from tdro.errors import UserError
from tdro.spec.stage_file import HoldoutStageFile
from tdro.spec.stage_result import HoldoutResult
from tdro.stages.mine import write_lines
from tdro.stages.runtime import run_stage_module


def run(stage: HoldoutStageFile) -> HoldoutResult:
    started = time.perf_counter()
    card = stage.dataset
    if card.source is not DataSource.pairs:
        raise UserError(f"dataset {card.name}: holdout splits a pairs source, not {card.source.value}")
    require_fingerprint(card.path, card.resolved_path, card.split, stage.dataset_fingerprint)
    data = read_source(card.source, card.resolved_path)
    held = hold_out(data, stage.holdout)
    stage.output.mkdir(parents=True, exist_ok=True)
    rows_out = write_lines(stage.output / HoldoutResult.TRAIN_FILE, train_lines(held))
    test = stage.output / HoldoutResult.TEST_DIR
    for name, lines in benchmark_lines(held, HoldoutResult.TEST_SPLIT).items():
        (test / name).parent.mkdir(parents=True, exist_ok=True)
        write_lines(test / name, lines)
    result = HoldoutResult(
        stage_id=stage.stage_id, wall_seconds=round(time.perf_counter() - started, 3), dataset=card.name,
        benchmark=HoldoutResult.benchmark_name(card.name), rows_in=data.rows_in, rows_out=rows_out,
        empty_dropped=data.empty_dropped, test_queries=len(held.test_queries),
        test_qrels=sum(len(v) for v in held.qrels.values()), test_corpus=len(held.corpus),
        train_queries=held.train_queries, unused_queries=held.unused_queries,
    )
    result.write(stage.output)
    return result


def main(argv: list[str] | None = None) -> int:
    return run_stage_module(run, (HoldoutStageFile,), "tdro.stages.holdout", argv)


if __name__ == "__main__":
    sys.exit(main())
