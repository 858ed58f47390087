"""The runner's part of a finished stage's W&B run, projected from what the catalog now holds about it.

The job streamed the per-step curves into the stage's run while it trained; after ingest this adds, to
the same run (`tdro.tracking_keys.run_id`), the summary and the tables. Optimize: the final weights as
the `weights` table and `final_alpha/<dataset>` in the summary. Reference/train: `final_loss` and `steps`.
Evaluate: the `evaluation` table of benchmark x metric and each `<benchmark>/<metric>` in the summary.
Every stage: `stage_id` and `arms`. Key names come from `tdro.tracking_keys`.

Logged once per stage folder, whatever happens to the runner or the catalog: the runner marks a stage
pending before its catalog commit (`mark_pending`), and `log_stage` replaces that mark by the logged mark
when it is done. A later runner logs every stage still pending (the runner before it died in between) and
never one already logged (re-ingesting into a new catalog adds no second copy).
"""

from __future__ import annotations

from typing import Any

from tdro import tracking_keys as keys
from tdro.catalog.query import run_sql
from tdro.enums import StageKind
from tdro.plan.graph import Plan, Stage
from tdro.tracking import StageTracker

PENDING_MARK = ".wandb-pending"
LOGGED_MARK = ".wandb-logged"


def logged(stage: Stage) -> bool:
    return (stage.folder / LOGGED_MARK).is_file()


def pending(stage: Stage) -> bool:
    return (stage.folder / PENDING_MARK).is_file() and not logged(stage)


def mark_pending(stage: Stage) -> None:
    (stage.folder / PENDING_MARK).write_text(keys.run_id(stage.kind.value, stage.id) + "\n")


def log_stage(plan: Plan, stage: Stage, lock_timeout: float) -> None:
    _log(plan, stage, lock_timeout)
    (stage.folder / LOGGED_MARK).write_text(keys.run_id(stage.kind.value, stage.id) + "\n")
    (stage.folder / PENDING_MARK).unlink(missing_ok=True)


def _log(plan: Plan, stage: Stage, lock_timeout: float) -> None:
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
    elif stage.kind in (StageKind.holdout, StageKind.mine, StageKind.dedup):
        pass  # their counts are in the catalog's `preparation` view; the run gets its id and arms only
    else:
        # an answer_recall benchmark by its mean over languages (the per-language rows are in the catalog)
        metrics = run_sql(plan.catalog, "SELECT benchmark, metric, value FROM eval_metrics "
                          "WHERE stage_id = ? AND NOT (kind = 'answer_recall' AND language IS NOT NULL) "
                          "ORDER BY benchmark, metric", [sid], timeout=lock_timeout)
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
