"""Running a plan here: each stage not cached is launched with accelerate, in graph order, one at a time.

Per stage: take `<runs_dir>/<name>.lock` (two runners never run one stage twice), write `stage.json` (and
an accelerate config for FSDP/DeepSpeed) into `<name>.partial/`, launch with stdout+stderr to
`stage.log` there (earlier attempts' logs are kept as `stage.log.1`, `.2`, ...), rename the folder to
`<name>/` when the job exits 0 with a complete `result.json`, ingest it in one catalog transaction, then
log it to W&B. A failed stage skips its dependants; the others go on. A kept partial folder holds the
checkpoints the next attempt resumes from. SIGTERM/SIGINT stop the running job's process group first;
a job also gets SIGTERM when its runner dies (even by SIGKILL), and holds the stage's lock while it lives.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from tdro.catalog import ingest as cat
from tdro.catalog.connection import DEFAULT_LOCK_TIMEOUT, transaction
from tdro.catalog.query import Rows, run_sql
from tdro.catalog.schema import MODEL_ORDER, SHARED_TRANSFERS
from tdro.enums import Backend, TrackingMode
from tdro.errors import UserError
from tdro.plan import projection
from tdro.plan.graph import Plan, Stage, Status
from tdro.plan.launch import (
    ACCELERATE_CONFIG,
    accelerate_executable,
    direct_args,
    direct_launch,
    effective_precision,
    free_port,
    gpu_available,
    gradient_accumulation,
    launch_args,
    write_accelerate_config,
)
from tdro.spec.stage_file import CHECKPOINTS_DIR, RESULT_FILE, STAGE_FILE

LOG_FILE = "stage.log"
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(runner_pid: int) -> None:
    """In the job, before exec: SIGTERM when the runner dies, however it dies (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != runner_pid:  # the runner died before the call: do not start an orphan
        os._exit(1)


def _job_preparation(runner_pid: int) -> Callable[[], None]:
    def prepare() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        _die_with_parent(runner_pid)

    return prepare


class Outcome(StrEnum):
    cached = "cached"
    done = "done"
    failed = "failed"
    skipped = "skipped"  # an input failed


@dataclass
class StageOutcome:
    stage: Stage
    outcome: Outcome
    seconds: float = 0.0
    log: Path | None = None
    reason: str = ""
    tail: list[str] = field(default_factory=list)


@dataclass
class RunReport:
    plan: Plan
    outcomes: list[StageOutcome]
    results: Rows

    @property
    def ok(self) -> bool:
        return all(o.outcome in (Outcome.cached, Outcome.done) for o in self.outcomes)

    def launched(self) -> list[StageOutcome]:
        return [o for o in self.outcomes if o.outcome in (Outcome.done, Outcome.failed)]


def stage_command(
    stage: Stage, *, gpu: bool, port: int | str, executable: list[str] | None = None
) -> list[str]:
    """How this machine runs the stage (see `launch.direct_launch` for the single-CPU-process case)."""
    if direct_launch(stage.resources, gpu):
        return direct_args(stage.kind, stage.partial)
    config = stage.partial / ACCELERATE_CONFIG if stage.resources.backend is not Backend.ddp else None
    return launch_args(
        stage.kind, stage.partial, stage.resources, mixed_precision=effective_precision(stage.resources, gpu),
        port=port, config_file=config, executable=executable,
    )


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _record(stage: Stage, folder: Path, **extra: Any) -> cat.StageRecord:
    return cat.StageRecord(
        stage_id=stage.id, kind=stage.kind.value, folder=folder, inputs=list(stage.inputs),
        identity=stage.identity, dataset_fingerprints=stage.dataset_fingerprints, **extra,
    )


def _complete(folder: Path) -> bool:
    try:
        return json.loads((folder / RESULT_FILE).read_text()).get("status") == "complete"
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _stage_lock(stage: Stage) -> Iterator[int]:
    """The stage's lock, held while this block runs; yields its descriptor so that the job can hold it too
    (a flock belongs to the open file, so a job that inherits it keeps the stage locked while it lives, even
    when its runner is killed: a second runner then waits for it and never starts a twin)."""
    stage.runs_dir.mkdir(parents=True, exist_ok=True)
    with open(stage.runs_dir / f"{stage.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle.fileno()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _exit_reason(code: int) -> str:
    """`exit code 2`, or `killed by signal 9 (SIGKILL)` for a job a signal ended (Popen's negative code)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            return f"killed by signal {-code}"
        return f"killed by signal {-code} ({name})"
    return f"exit code {code}"


def _rotate_log(folder: Path) -> Path:
    log = folder / LOG_FILE
    if log.exists():
        n = 1
        while (folder / f"{LOG_FILE}.{n}").exists():
            n += 1
        log.rename(folder / f"{LOG_FILE}.{n}")
    return log


def _tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


class _Child:
    """The running job; terminated with its whole process group when the runner is stopped."""

    process: subprocess.Popen[bytes] | None = None

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)


class Runner:
    def __init__(
        self,
        plan: Plan,
        *,
        gpu: bool | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        tail_lines: int = 20,
        on_event: Callable[[str, Stage, StageOutcome | None], None] | None = None,
    ) -> None:
        self.plan = plan
        self.gpu = gpu_available() if gpu is None else gpu
        self.lock_timeout = lock_timeout
        self.tail_lines = tail_lines
        self.on_event = on_event or (lambda event, stage, outcome: None)
        self.commit = _git_commit()
        self.child = _Child()
        self.ingest_failures: dict[str, str] = {}  # complete folders the catalog could not take

    # -- catalog ---------------------------------------------------------------------------------
    def register(self) -> None:
        """The experiment, its arms and stage links, and every complete stage the catalog lacks."""
        plan = self.plan
        with transaction(plan.catalog, timeout=self.lock_timeout) as con:
            cat.record_experiment(
                con, name=plan.experiment, spec_path=plan.spec_path, spec=plan.resolved, arms=plan.arms,
                links=plan.links(), datasets=plan.datasets,
            )
            known = cat.complete_stage_ids(con)
        for stage in plan.stages:
            if stage.id not in known and stage.status is Status.cached:
                try:
                    self._ingest(stage, started=None, finished=None)
                except UserError:
                    raise
                except Exception as error:  # reported as this stage's failure; the others go on
                    self.ingest_failures[stage.id] = f"ingest of {stage.folder} failed: {error}"
            elif stage.id in known and self._tracking and projection.pending(stage):
                projection.log_stage(plan, stage, self.lock_timeout)  # a runner died before it logged

    @property
    def _tracking(self) -> bool:
        return self.plan.tracking.mode is not TrackingMode.disabled

    def _ingest(self, stage: Stage, started: datetime | None, finished: datetime | None) -> None:
        record = _record(stage, stage.folder, started=started, finished=finished, git_commit=self.commit)
        track = self._tracking and not projection.logged(stage)
        if track:
            projection.mark_pending(stage)  # so that a kill between the commit and the logging loses nothing
        with transaction(self.plan.catalog, timeout=self.lock_timeout) as con:
            cat.ingest_stage(con, record)
        if track:
            projection.log_stage(self.plan, stage, self.lock_timeout)

    def _fail(self, stage: Stage, started: datetime) -> None:
        record = _record(stage, stage.partial, started=started, finished=datetime.now(),
                         git_commit=self.commit)
        with transaction(self.plan.catalog, timeout=self.lock_timeout) as con:
            cat.record_failure(con, record)

    # -- stages ----------------------------------------------------------------------------------
    def run_stage(self, stage: Stage) -> StageOutcome:
        with _stage_lock(stage) as lock_fd:
            if stage.status is Status.cached:  # another runner finished it while we waited
                return StageOutcome(stage, Outcome.cached)
            started = datetime.now()
            t0 = time.monotonic()
            partial = stage.partial
            log = partial / LOG_FILE
            if not _complete(partial):  # else: the job finished but its runner died before the rename
                partial.mkdir(parents=True, exist_ok=True)
                stage.stage_file.write(partial / STAGE_FILE)
                write_accelerate_config(partial, stage.resources, gradient_accumulation(stage.stage_file))
                log = _rotate_log(partial)
                args = stage_command(stage, gpu=self.gpu, port=free_port(),
                                     executable=accelerate_executable())
                env = {**os.environ, "PYTHONUNBUFFERED": "1"}
                with open(log, "wb") as out:
                    out.write(("$ " + " ".join(args) + "\n").encode())
                    out.flush()
                    # A stop signal arriving between fork and bookkeeping would orphan the job: hold
                    # signals until the child is recorded (the child unblocks them for itself).
                    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
                    try:
                        self.child.process = subprocess.Popen(
                            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                            preexec_fn=_job_preparation(os.getpid()), pass_fds=(lock_fd,),
                        )
                    finally:
                        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
                    code = self.child.process.wait()
                    self.child.process = None
                if code != 0 or not _complete(partial):
                    reason = _exit_reason(code) if code != 0 else f"no complete {RESULT_FILE}"
                    self._fail(stage, started)
                    return StageOutcome(stage, Outcome.failed, time.monotonic() - t0, log, reason,
                                        _tail(log, self.tail_lines))
            os.replace(partial, stage.folder)
            if not self.plan.keep_checkpoints:  # the stage is complete: nothing will resume from them
                shutil.rmtree(stage.folder / CHECKPOINTS_DIR, ignore_errors=True)
            try:
                self._ingest(stage, started, datetime.now())
            except UserError:
                raise
            except Exception as error:  # a complete folder the catalog cannot read is a failed stage
                return StageOutcome(stage, Outcome.failed, time.monotonic() - t0, stage.folder / LOG_FILE,
                                    f"ingest failed: {error}")
            return StageOutcome(stage, Outcome.done, time.monotonic() - t0, stage.folder / LOG_FILE)

    def run(self) -> RunReport:
        plan = self.plan
        if any(s.resources.machines > 1 for s in plan.stages if s.status is Status.run):
            raise UserError("resources.machines > 1: a multi-machine experiment runs through "
                            "`tdro plan SPEC --emit DIR` (Slurm scripts), not here")
        self.register()
        outcomes: dict[str, StageOutcome] = {}
        main_thread = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS} if main_thread else {}

        def stop(signum: int, frame: Any) -> None:
            # Forward only: waiting for the job here could deadlock with the wait it interrupts.
            self.child.signal(signal.SIGTERM)
            raise KeyboardInterrupt(f"signal {signum}")

        for sig in previous:
            signal.signal(sig, stop)
        try:
            for stage in plan.stages:
                blocked = [i for i in stage.inputs if outcomes.get(i) and outcomes[i].outcome in
                           (Outcome.failed, Outcome.skipped)]
                if stage.id in self.ingest_failures:
                    result = StageOutcome(stage, Outcome.failed, reason=self.ingest_failures[stage.id])
                elif stage.status is Status.cached:
                    result = StageOutcome(stage, Outcome.cached)
                elif blocked:
                    result = StageOutcome(stage, Outcome.skipped, reason=f"input {blocked[0][:12]} failed")
                else:
                    self.on_event("start", stage, None)
                    result = self.run_stage(stage)
                outcomes[stage.id] = result
                self.on_event("end", stage, result)
        finally:
            self.child.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return RunReport(plan, list(outcomes.values()), experiment_results(plan, self.lock_timeout))


def experiment_results(plan: Plan, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> Rows:
    return run_sql(
        plan.catalog,
        "SELECT arm, transfer, measure, metric, benchmark, value FROM results WHERE experiment = ? "
        f"ORDER BY arm, {MODEL_ORDER}, metric, benchmark",
        [plan.experiment], timeout=lock_timeout,
    )


def results_table(rows: Rows) -> tuple[list[str], list[list[Any]]]:
    """One row per model (the shared zero-shot and baseline models once, then arm x transfer), one column
    per metric: the mean over the benchmarks, so the table fits a terminal; per-benchmark values are in
    `tdro sql`. The arm column is left out when it only restates the measure (a sweep over `dro.measure`
    alone)."""
    metrics = sorted({r["metric"] for r in rows.records()})
    values: dict[tuple[Any, ...], dict[str, list[float]]] = {}
    for r in rows.records():
        shared = r["transfer"] in SHARED_TRANSFERS
        key = ("(all)" if shared else r["arm"], r["transfer"], r["measure"])
        values.setdefault(key, {}).setdefault(r["metric"], []).append(r["value"])
    out = []
    for key, per_metric in values.items():
        if key[0] == "(all)" and len({r["arm"] for r in rows.records()}) == 1:
            key = (next(iter({r["arm"] for r in rows.records()})), *key[1:])
        means = [sum(v) / len(v) if (v := per_metric.get(m)) else None for m in metrics]
        out.append([*key, *means])
    columns = ["arm", "transfer", "measure", *(f"mean {m}" for m in metrics)]
    arms_are_measures = all(row[1] in SHARED_TRANSFERS or row[0] == f"dro.measure={row[2]}" for row in out)
    if arms_are_measures and any(row[1] not in SHARED_TRANSFERS for row in out):
        return columns[1:], [row[1:] for row in out]
    return columns, out
