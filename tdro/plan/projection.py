"""The W&B run of a finished stage, projected from what the catalog now holds about it.

Optimize: `alpha/<dataset>` (and `group_measure/<dataset>`) per step as line charts, the final weights as
a table. Reference/train: `train/loss` and `train/lr` per step. Evaluate: a table of benchmark x metric,
and each `<benchmark>/<metric>` in the summary. One run per stage: group = experiment, job_type = kind.
"""

from __future__ import annotations

from typing import Any

from tdro.catalog.query import run_sql
from tdro.enums import StageKind
from tdro.plan.graph import Plan, Stage
from tdro.tracking import log_stage_summary


def _series(rows: list[tuple[Any, ...]]) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for key, step, value in rows:
        if value is not None:
            out.setdefault(key, []).append((int(step), float(value)))
    return out


def log_stage(plan: Plan, stage: Stage, lock_timeout: float) -> None:
    sid = stage.id
    series: dict[str, list[tuple[int, float]]] = {}
    tables: dict[str, tuple[list[str], list[list[Any]]]] = {}
    summary: dict[str, Any] = {"stage_id": sid, "arms": stage.arms}
    if stage.kind is StageKind.optimize:
        rows = run_sql(plan.catalog, """
            SELECT 'alpha/' || dataset, step, alpha FROM trajectory_rows WHERE stage_id = ?
            UNION ALL
            SELECT 'group_measure/' || dataset, step, group_measure FROM trajectory_rows WHERE stage_id = ?
        """, [sid, sid], timeout=lock_timeout)
        series = _series(rows.rows)
        weights = run_sql(plan.catalog, "SELECT source, dataset, weight FROM mixture_weights "
                          "WHERE stage_id = ? ORDER BY source, dataset", [sid], timeout=lock_timeout)
        tables["weights"] = (weights.columns, [list(r) for r in weights.rows])
    elif stage.kind in (StageKind.reference, StageKind.train):
        rows = run_sql(plan.catalog, """
            SELECT 'train/loss', step, loss FROM train_metrics WHERE stage_id = ?
            UNION ALL SELECT 'train/lr', step, lr FROM train_metrics WHERE stage_id = ?
        """, [sid, sid], timeout=lock_timeout)
        series = _series(rows.rows)
    else:
        metrics = run_sql(plan.catalog, "SELECT benchmark, metric, value FROM eval_metrics "
                          "WHERE stage_id = ? ORDER BY benchmark, metric", [sid], timeout=lock_timeout)
        tables["evaluation"] = (metrics.columns, [list(r) for r in metrics.rows])
        summary.update({f"{b}/{m}": v for b, m, v in metrics.rows})
    log_stage_summary(
        plan.tracking, experiment=plan.experiment, kind=stage.kind.value, stage_id=sid, folder=stage.folder,
        config=stage.stage_file.tracking_config, series=series, tables=tables, summary=summary,
    )
