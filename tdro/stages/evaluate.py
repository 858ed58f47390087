"""The evaluate stage: `accelerate launch -m tdro.stages.evaluate STAGE_FILE` (1 or more processes).

Reads an `EvaluateStageFile`; loads the retriever under test (a training stage's `model/`, or with
`model_under_test` None the base model itself, zero-shot) (its tdro_retriever.json, else the stage's
model card gives pooling, normalisation and prompts); evaluates every benchmark card (corpus
encoding sharded across processes, search and metrics on the main process); the main process writes
`per_query/<benchmark>.parquet` and then `result.json` (each under a temporary name, then renamed) into
`output_dir`, as `tdro.spec.stage_result.EvaluateResult` specifies, only once every benchmark is done (a
failure leaves no half outputs). Every benchmark kind is evaluated through `tdro.retrieval.kinds`; an
`answer_recall` benchmark records each finished language under `languages/` first, so a stopped stage,
launched again into the same folder, resumes at the next language. Returns the result on the main
process, None on the others. Exit 0 on success, 2 with one line per problem on stderr for a `UserError`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tdro import tracking_keys as keys
from tdro.enums import MixedPrecision
from tdro.errors import UserError
from tdro.spec.stage_file import EvaluateStageFile
from tdro.spec.stage_result import BenchmarkRecord, EvaluateResult
from tdro.stages.outputs import write_parquet
from tdro.stages.runtime import make_accelerator, run_stage_module, start_tracker

PROGRESS_FOLDER = "languages"  # answer_recall: <benchmark>/<language>.json per finished language


def _autocast_dtype(mode: MixedPrecision):
    import torch

    if not torch.cuda.is_available() or mode is MixedPrecision.no:
        return None
    return torch.bfloat16 if mode is MixedPrecision.bf16 else torch.float16


def _write_per_query(folder: Path, name: str, per_query: dict[str, dict[str, float]]) -> str:
    metrics = sorted({m for values in per_query.values() for m in values})
    rows = [{"query_id": q, **values} for q, values in per_query.items()]
    relative = EvaluateResult.per_query_file(name)
    (folder / relative).parent.mkdir(parents=True, exist_ok=True)
    write_parquet(folder / relative, rows, ["query_id", *metrics])
    return relative


def model_folder(stage: EvaluateStageFile) -> str:
    """The folder of the retriever under test: a training stage's model, or the base model's own."""
    if stage.model_under_test is not None:
        return stage.model_under_test.path
    from tdro.modeling.source import resolve_model_path

    return str(resolve_model_path(stage.model.source))


def run(stage: EvaluateStageFile) -> EvaluateResult | None:
    """Evaluate every benchmark of the stage; the main process writes and returns the result."""
    from tdro.retrieval.cache import EmbeddingCache
    from tdro.retrieval.evaluator import Evaluator, SearchSettings
    from tdro.retrieval.kinds import evaluate_benchmark, load_benchmark
    from tdro.retrieval.metrics import parse_metrics
    from tdro.retrieval.model_folder import resolve_folder

    started = time.perf_counter()
    spec = stage.evaluate
    settings = SearchSettings(
        parse_metrics(spec.metrics, field_name="evaluate.metrics"), top_k=spec.top_k,
        ignore_identical_ids=spec.ignore_identical_ids, batch_size=spec.batch_size,
        chunk_size=spec.chunk_size,
    )
    model_dir = model_folder(stage)
    if not Path(model_dir).is_dir():
        raise UserError(f"model_dir {model_dir}: no such folder")
    model = resolve_folder(model_dir, card=stage.model)
    # Check every benchmark before encoding anything: a bad file fails in seconds, not after an hour.
    benches = [load_benchmark(card) for card in stage.benchmarks]
    accelerator = make_accelerator(stage.resources)
    evaluator = Evaluator.load(
        model, settings, cache=EmbeddingCache(stage.cache_dir), accelerator=accelerator,
        autocast_dtype=_autocast_dtype(stage.resources.mixed_precision),
    )
    tracker = start_tracker(stage, accelerator)
    try:
        done = []  # (card, result) on the main process
        for card, bench in zip(stage.benchmarks, benches, strict=True):
            # answer_recall records each language in the stage folder as it finishes: a rerun resumes
            result = evaluate_benchmark(
                evaluator, bench, ignore_identical_ids=spec.ignore_identical_ids,
                progress_dir=stage.output / PROGRESS_FOLDER,
                token_dir=stage.cache_dir or stage.output / PROGRESS_FOLDER,
            )
            if result is not None:
                done.append((card, result))
        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            return None
        stage.output.mkdir(parents=True, exist_ok=True)
        outcome = EvaluateResult(
            stage_id=stage.stage_id, wall_seconds=round(time.perf_counter() - started, 3),
            model_dir=model_dir,
            benchmarks=[BenchmarkRecord.model_validate(result.record()) for _, result in done],
            per_query={card.name: _write_per_query(stage.output, card.name, result.per_query)
                       for card, result in done if result.per_query},
        )
        outcome.write(stage.output)
        tracker.summary({keys.benchmark_metric(card.name, name): value
                         for card, result in done for name, value in result.metrics.items()})
        return outcome
    finally:
        tracker.finish()


def main(argv: list[str] | None = None) -> int:
    return run_stage_module(run, (EvaluateStageFile,), "tdro.stages.evaluate", argv)


if __name__ == "__main__":
    sys.exit(main())
