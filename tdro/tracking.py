"""W&B as a projection of what stages and the catalog hold; offline by default.

Jobs call `StageTracker.start(...)` to log live curves (on the main process only); the runner logs
summaries after ingest. Imports no torch; wandb itself is imported only when tracking is on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tdro.enums import TrackingMode
from tdro.spec.experiment import TrackingSpec


class StageTracker:
    """One W&B run per stage: group = experiment, job_type = stage kind, config = resolved spec."""

    def __init__(self, run: Any | None) -> None:
        self._run = run

    @classmethod
    def start(
        cls,
        tracking: TrackingSpec,
        *,
        experiment: str,
        kind: str,
        stage_id: str,
        folder: str | Path,
        config: dict[str, Any] | None = None,
        enabled: bool = True,
    ) -> StageTracker:
        if not enabled or tracking.mode is TrackingMode.disabled:
            return cls(None)
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        run = wandb.init(
            project=tracking.project,
            entity=tracking.entity,
            mode=tracking.mode.value,  # type: ignore[arg-type]  # a TrackingMode value: wandb's literals
            group=experiment,
            job_type=kind,
            name=f"{kind}-{stage_id[:12]}",
            id=f"{kind}-{stage_id[:12]}",
            resume="allow",
            config=config or {},
            dir=str(folder),
            reinit="create_new",
        )
        return cls(run)

    @property
    def active(self) -> bool:
        return self._run is not None

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self._run is not None:
            self._run.log(metrics, step=step)

    def table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        if self._run is not None:
            import wandb

            names: list[str | int] = list(columns)
            self._run.log({key: wandb.Table(columns=names, data=rows)})

    def summary(self, values: dict[str, Any]) -> None:
        if self._run is not None:
            self._run.summary.update(values)

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


def log_stage_summary(
    tracking: TrackingSpec,
    *,
    experiment: str,
    kind: str,
    stage_id: str,
    folder: str | Path,
    config: dict[str, Any] | None = None,
    series: dict[str, list[tuple[int, float]]] | None = None,
    tables: dict[str, tuple[list[str], list[list[Any]]]] | None = None,
    summary: dict[str, Any] | None = None,
) -> None:
    """The runner's W&B run of one finished stage: `series` (key -> [(step, value)]) become line charts
    over `step` (e.g. `alpha/<dataset>`), `tables` W&B tables, `summary` the run summary."""
    tracker = StageTracker.start(
        tracking, experiment=experiment, kind=kind, stage_id=stage_id, folder=folder, config=config
    )
    if not tracker.active:
        return
    try:
        by_step: dict[int, dict[str, float]] = {}
        for key, points in (series or {}).items():
            for step, value in points:
                by_step.setdefault(int(step), {})[key] = value
        for step in sorted(by_step):
            tracker.log(by_step[step], step=step)
        for key, (columns, rows) in (tables or {}).items():
            tracker.table(key, columns, rows)
        tracker.summary(summary or {})
    finally:
        tracker.finish()
