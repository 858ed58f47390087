"""The mine stage: `accelerate launch -m tdro.stages.mine STAGE_FILE` (1 or more processes).

Reads a `MineStageFile`; reads the dataset's source (`tdro.data.sources`): the card's own data, refusing
data whose fingerprint differs from the stage file's, or a holdout stage's training pairs (`data`);
mines it with the stage's retriever (`model`) as `tdro.data.miner.mine` states (encoding shared by the
processes, search and selection on the main process); the main process writes `groups.jsonl`,
`candidates.parquet` and last `result.json` (`tdro.spec.stage_result.MineResult`). Exit 0 on success,
2 with one line per problem for a `UserError`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tdro.data.files import require_fingerprint
from tdro.spec.stage_file import MineStageFile
from tdro.spec.stage_result import MineResult
from tdro.stages.outputs import write_parquet
from tdro.stages.runtime import make_accelerator, run_stage_module


def write_lines(path: Path, lines) -> int:
    """Write byte lines atomically (temp name, then rename); the number written."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    count = 0
    with tmp.open("wb") as handle:
        for line in lines:
            handle.write(line + b"\n")
            count += 1
    os.replace(tmp, path)
    return count


def load_evaluator(model, *, batch_size: int, cache_dir: str | None, accelerator=None, show_progress=True):
    """An `Evaluator` (encoder, cache, processes) of a resolved retriever, for mining."""
    from tdro.retrieval.cache import EmbeddingCache
    from tdro.retrieval.evaluator import Evaluator, SearchSettings

    settings = SearchSettings([], batch_size=batch_size)
    return Evaluator.load(model, settings, cache=EmbeddingCache(cache_dir), accelerator=accelerator,
                          show_progress=show_progress)


def run(stage: MineStageFile) -> MineResult | None:
    from tdro.data.miner import mine
    from tdro.data.sources import read_source

    started = time.perf_counter()
    card = stage.dataset
    if stage.data is None:  # else a holdout stage's output, which its stage id stands for
        require_fingerprint(card.path, card.resolved_path, card.split, stage.dataset_fingerprint or "")
    data = read_source(card.source, stage.data_path, card.split)
    from tdro.modeling.source import resolve_model_path
    from tdro.retrieval.model_folder import resolve_folder

    accelerator = make_accelerator(stage.resources)
    model = resolve_folder(resolve_model_path(stage.model.source), card=stage.model)
    evaluator = load_evaluator(model, batch_size=stage.mine.batch_size, cache_dir=stage.cache_dir,
                               accelerator=accelerator)
    mined = mine(data, evaluator, stage.mine)
    accelerator.wait_for_everyone()
    if mined is None:
        return None
    stage.output.mkdir(parents=True, exist_ok=True)
    write_lines(stage.output / MineResult.DATA_FILE, mined.lines())
    write_parquet(stage.output / MineResult.CANDIDATES_FILE, mined.candidate_rows(),
                  MineResult.CANDIDATE_COLUMNS)
    result = MineResult(
        stage_id=stage.stage_id, wall_seconds=round(time.perf_counter() - started, 3), dataset=card.name,
        rows_in=data.rows_in, rows_out=len(mined.groups), corpus_size=len(data.passages),
        empty_dropped=data.empty_dropped, no_candidates_dropped=mined.no_candidates_dropped,
        short_groups=mined.short_groups, negatives_total=mined.negatives_total,
        false_negatives_removed=mined.false_negatives_removed, num_processes=accelerator.num_processes,
    )
    result.write(stage.output)
    return result


def main(argv: list[str] | None = None) -> int:
    return run_stage_module(run, (MineStageFile,), "tdro.stages.mine", argv)


if __name__ == "__main__":
    sys.exit(main())
