"""W&B as a projection of what stages and the catalog hold; offline by default.

One W&B run per stage (id `tracking_keys.run_id(kind, stage_id)`, resume="allow"): the job calls
`StageTracker.start(...)` and streams its per-step curves while it trains (main process only); after
ingest the runner starts the same run again and adds the summary and tables (`table`, `summary`).
Key names come from `tdro.tracking_keys`. Imports no torch; wandb itself is imported only when tracking
is on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tdro.enums import TrackingMode
from tdro.spec.experiment import TrackingSpec
from tdro.tracking_keys import run_id


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
        import random

        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        before = random.getstate()  # W&B must not move a job's seeded RNG: tracking on or off, same run
        run = wandb.init(
            project=tracking.project,
            entity=tracking.entity,
            mode=tracking.mode.value,  # type: ignore[arg-type]  # a TrackingMode value: wandb's literals
            group=experiment,
            job_type=kind,
            name=run_id(kind, stage_id),
            id=run_id(kind, stage_id),
            resume="allow",
            config=config or {},
            dir=str(folder),
            reinit="create_new",
        )
        random.setstate(before)
        return cls(run)

    @property
    def active(self) -> bool:
        return self._run is not None

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self._run is not None:
            self._run.log(metrics, step=step)

    def table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        """A table in the run summary: it adds no history step, so it never clashes with the job's steps."""
        if self._run is not None:
            import wandb

            names: list[str | int] = list(columns)
            self._run.summary[key] = wandb.Table(columns=names, data=rows)

    def summary(self, values: dict[str, Any]) -> None:
        if self._run is not None:
            self._run.summary.update(values)

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None
