"""The one training loop of stages 0/2 (`train`) and stage 1 (`optimize`).

`run_loop(task, ...)` owns what every training stage does around its step: resume from the newest
checkpoint, prefetch of the next step's batches, the optimizer step (gradient clipping at
`max_grad_norm`, AdamW, schedule), the non-finite guard, per-step records and W&B curves, checkpoints
every `checkpoint_every` steps, the early stop of tests and the end barrier. A stage supplies a
`TrainingTask`: how it draws a step's batches, its forward/backward over them, what it records after the
step (stage 1: alpha's trajectory) and its extra state, which is checkpointed and resumed bit-exactly.

- A NaN/inf loss or gradient norm stops the job before the weights change, with one line naming the
  step and the datasets of the offending batch (`UserError`: exit 2); no output is written, the last
  good checkpoint stays.
- `stop_after_step` (or `TDRO_STOP_AFTER_STEP=k`, tests only) raises `StoppedEarly` after step k as if
  the job had been killed there: no outputs (exit 3).
- The main process prints a progress line (`progress_line`) about ten times per run, into `stage.log`.
- On the main process `run_loop` returns a `LoopEnd` (the step records, the step resumed from, the wall
  time so far); on the others None, and the stage writes nothing.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from tdro import tracking_keys as keys
from tdro.errors import UserError
from tdro.spec.stage_result import DatasetUse
from tdro.tracking import StageTracker

STOP_AFTER_STEP_ENV = "TDRO_STOP_AFTER_STEP"


class StoppedEarly(Exception):
    """The job stopped after the step `TDRO_STOP_AFTER_STEP` names (tests), as if killed there."""


@dataclass(frozen=True)
class StepRecord:
    """One optimizer step; its fields are `TrainResult.METRIC_COLUMNS`."""

    step: int
    loss: float
    lr: float
    dataset: str  # the batch's dataset, or "mixed"
    grad_norm: float
    seconds: float


def progress_line(record: StepRecord, steps: int) -> str | None:
    """The `stage.log` line of a step: about ten per run (every `ceil(steps / 10)` steps) and the last."""
    if record.step % math.ceil(steps / 10) and record.step != steps:
        return None
    return (f"step {record.step}/{steps}  loss {record.loss:.4f}  lr {record.lr:.2e}  "
            f"grad norm {record.grad_norm:.3f}  {record.seconds:.1f} s/step  batch {record.dataset}")


@dataclass(frozen=True)
class LoopEnd:
    records: list[StepRecord]
    resumed_from_step: int | None
    started: float  # perf_counter() when this process started
    previous_seconds: float  # wall time of the runs before the resume

    def wall_seconds(self) -> float:
        return self.previous_seconds + time.perf_counter() - self.started

    @property
    def final_loss(self) -> float | None:
        return self.records[-1].loss if self.records else None


class TrainingTask(Protocol):
    def draw(self) -> list:
        """The next step's micro-batches (called in the prefetch thread, in step order)."""

    def forward_backward(self, step: int, batches: list) -> float:
        """Accumulate the step's gradients; the loss averaged over micro-batches and processes."""

    def after_step(self, record: StepRecord) -> dict[str, float]:
        """Called after the optimizer step: update the task's records; extra curves of the step."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def step_datasets(batches: Sequence[Any], names: Sequence[str]) -> list[str]:
    """The datasets of a step's micro-batches on this process, in dataset order."""
    ids = sorted({int(i) for batch in batches for i in batch.dataset_ids.tolist()})
    return [names[i] for i in ids]


def dataset_uses(stream) -> list[DatasetUse]:
    """The result's record of each dataset the stream read."""
    return [
        DatasetUse(
            name=name, rows=len(reader), fingerprint=reader.fingerprint, skipped_lines=len(reader.skipped)
        )
        for name, reader in zip(stream.names, stream.readers, strict=True)
    ]


def dataset_label(datasets: Sequence[str]) -> str:
    return datasets[0] if len(datasets) == 1 else "mixed"


def check_finite(step: int, loss: float, grad_norm: float, datasets: Sequence[str], last_good: Path | None):
    """The non-finite guard: one line naming the step and the batch's datasets, before the weights change."""
    if math.isfinite(loss) and math.isfinite(grad_norm):
        return
    what = f"loss is {loss}" if not math.isfinite(loss) else f"gradient norm is {grad_norm}"
    where = f"dataset {datasets[0]}" if len(datasets) == 1 else f"datasets {', '.join(datasets)}"
    kept = f"checkpoints/{last_good.name} kept" if last_good else "no checkpoint was written yet"
    raise UserError(f"step {step}: {what} on {where}; training stopped ({kept})")


def stop_step(stop_after_step: int | None) -> int | None:
    if stop_after_step is not None:
        return stop_after_step
    value = os.environ.get(STOP_AFTER_STEP_ENV)
    return int(value) if value else None


def optimizer_step(
    task: TrainingTask, step: int, batches: list, *, datasets: Sequence[str], accelerator, model, optimizer,
    scheduler, max_grad_norm: float | None, last_good: Path | None = None,
) -> tuple[float, float]:
    """The task's forward/backward, clipping, the non-finite guard, AdamW and the schedule.

    Returns (loss, gradient norm before clipping)."""
    loss = task.forward_backward(step, batches)
    grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), max_grad_norm or math.inf))
    check_finite(step, loss, grad_norm, datasets, last_good)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss, grad_norm


def run_loop(
    task: TrainingTask,
    *,
    output: Path,
    stream,
    accelerator,
    model,
    optimizer,
    scheduler,
    steps: int,
    checkpoint_every: int,
    max_grad_norm: float | None,
    queries_per_step: int,
    tracker: StageTracker,
    started: float,
    stop_after_step: int | None = None,
) -> LoopEnd | None:
    from tdro.stages.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
    from tdro.stages.prefetch import Prefetcher

    stop = stop_step(stop_after_step)
    records: list[StepRecord] = []
    start_step, previous_seconds, last_good = 0, 0.0, latest_checkpoint(output)
    if last_good is not None:
        trainer, rank_state = load_checkpoint(
            last_good, accelerator=accelerator, model=model, optimizer=optimizer, scheduler=scheduler
        )
        stream.load_state_dict(rank_state["stream"])
        task.load_state_dict(trainer["task"])
        start_step, previous_seconds = trainer["step"], trainer["wall_seconds"]
        records = [StepRecord(**r) for r in trainer["records"]]

    prefetch = Prefetcher(stream, 1, steps - start_step, draw=task.draw)
    try:
        for step in range(start_step + 1, steps + 1):
            t0 = time.perf_counter()
            lr = scheduler.get_last_lr()[0]
            batches = prefetch.next()
            datasets = step_datasets(batches, stream.names)
            loss, grad_norm = optimizer_step(
                task, step, batches, datasets=datasets, accelerator=accelerator, model=model,
                optimizer=optimizer, scheduler=scheduler, max_grad_norm=max_grad_norm, last_good=last_good,
            )
            record = StepRecord(step, loss, lr, dataset_label(datasets), grad_norm, time.perf_counter() - t0)
            records.append(record)
            curves = task.after_step(record)
            line = progress_line(record, steps) if accelerator.is_main_process else None
            if line is not None:
                print(line, flush=True)
            tracker.log({
                keys.LOSS: record.loss, keys.LR: record.lr, keys.GRAD_NORM: record.grad_norm,
                keys.SECONDS: record.seconds, keys.QUERIES_PER_SECOND: queries_per_step / record.seconds,
                **curves,
            }, step=step)
            if step % checkpoint_every == 0 and step < steps:
                last_good = save_checkpoint(
                    output, step, accelerator=accelerator, model=model, optimizer=optimizer,
                    scheduler=scheduler,
                    trainer={"records": [asdict(r) for r in records], "task": task.state_dict(),
                             "wall_seconds": previous_seconds + time.perf_counter() - started},
                    rank_state={"stream": prefetch.state_dict()},
                )
            if stop is not None and step >= stop:
                raise StoppedEarly(f"stopped after step {step}")
    finally:
        prefetch.close()
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    return LoopEnd(records, start_step or None, started, previous_seconds)
