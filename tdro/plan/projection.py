"""The runner's part of a finished stage's W&B run, projected from what the catalog now holds about it.

The job streamed the per-step curves into the stage's run while it trained; after ingest this adds, to
the same run (`tdro.tracking_keys.run_id`), the summary and the tables. Optimize: the final weights as
the `weights` table and `final_alpha/<dataset>` in the summary. Reference/train: `final_loss` and `steps`.
Evaluate: the `evaluation` table of benchmark x metric and each `<benchmark>/<metric>` in the summary.
Every stage: `stage_id` and `arms`. Key names come from `tdro.tracking_keys`.
"""

from __future__ import annotations

from typing import Any

from tdro import tracking_keys as keys
from tdro.catalog.query import run_sql
from tdro.enums import StageKind
from tdro.plan.graph import Plan, Stage
from tdro.tracking import StageTracker


def log_stage(plan: Plan, stage: Stage, lock_timeout: float) -> None:
    sid = stage.id
    tables: dict[str, tuple[list[str], list[list[Any]]]] = {}
    summary: dict[str, Any] = {keys.STAGE_ID: sid, keys.ARMS: stage.arms}
    if stage.kind is StageKind.optimize:
        weights = run_sql(plan.catalog, "SELECT source, dataset, weight FROM mixture_weights "
                          "WHERE stage_id = ? ORDER BY source, dataset", [sid], timeout=lock_timeout)
        tables[keys.WEIGHTS_TABLE] = (weights.columns, [list(r) for r in weights.rows])
        summary.update({keys.final_alpha(d): w for source, d, w in weights.rows if source == "curr"})
    elif stage.kind in (StageKind.reference, StageKind.train):
        last = run_sql(plan.catalog, "SELECT step, loss FROM train_metrics WHERE stage_id = ? "
                       "ORDER BY step DESC LIMIT 1", [sid], timeout=lock_timeout)
        if last.rows:
            summary.update({keys.STEPS: last.rows[0][0], keys.FINAL_LOSS: last.rows[0][1]})
    elif stage.kind in (StageKind.mine, StageKind.dedup):
        pass  # their counts are in the catalog's `preparation` view; the run gets its id and arms only
    else:
        metrics = run_sql(plan.catalog, "SELECT benchmark, metric, value FROM eval_metrics "
                          "WHERE stage_id = ? ORDER BY benchmark, metric", [sid], timeout=lock_timeout)
        tables[keys.EVALUATION_TABLE] = (metrics.columns, [list(r) for r in metrics.rows])
        summary.update({keys.benchmark_metric(b, m): v for b, m, v in metrics.rows})
    tracker = StageTracker.start(
        plan.tracking, experiment=plan.experiment, kind=stage.kind.value, stage_id=sid, folder=stage.folder,
        config=stage.stage_file.tracking_config,
    )
    try:
        for key, (columns, rows) in tables.items():
            tracker.table(key, columns, rows)
        tracker.summary(summary)  # updating a summary again changes nothing: logging twice is harmless
    finally:
        tracker.finish()
