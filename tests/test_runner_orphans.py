"""A stage job dies with its runner: after `kill -9` of `tdro run`, no orphan job keeps writing the stage,
and the next run resumes it to a bit-exact result (real processes, tiny BERT, CPU)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tdro.plan.graph import Stage, build_plan
from tdro.plan.runner import Outcome, Runner
from tests.runner_project import REPO, load, write_project

pytestmark = pytest.mark.slow
TRAIN = {"steps": 60, "batch_size": 8, "warmup_steps": 0, "checkpoint_every": 20,
         "loss": {"temperature": 0.05}}


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "TDRO_REGISTRY": str(root / "registry"), "PYTHONPATH": str(REPO),
            "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}


def _jobs_of(partial: Path) -> list[int]:
    """Pids of live processes whose command line names this stage folder's stage file."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
                state = (proc / "stat").read_text().split(") ")[-1][0]
            except OSError:
                continue
            if str(partial / "stage.json") in cmdline and state != "Z":
                pids.append(int(proc.name))
    return pids


def _reference(root: Path) -> Stage:
    return next(s for s in build_plan(load(root / "experiment.yaml")).stages if s.kind.value == "reference")


def _model_digest(stage: Stage) -> str:
    files = sorted(p for p in (stage.folder / "model").rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files if p.suffix == ".safetensors")).hexdigest()


@dataclass
class KilledRun:
    root: Path
    reference: Stage
    job_pids: list[int]  # the reference job as it ran when the runner was killed
    orphans: list[int]  # what of it still ran 10 s after the runner's death
    completed_by_orphan: bool  # whether it went on to finish the stage with no runner


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> KilledRun:
    root = tmp_path_factory.mktemp("orphans")
    write_project(root, tiny_bert_dir, train=TRAIN)
    reference = _reference(root)
    runner = subprocess.Popen([sys.executable, "-m", "tdro", "run", str(root / "experiment.yaml")],
                              env=_env(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list((reference.partial / "checkpoints").glob("*")):
        assert runner.poll() is None, "the runner stopped before the reference checkpointed"
        assert time.monotonic() < deadline, "the reference never checkpointed"
        time.sleep(0.1)
    job_pids = _jobs_of(reference.partial)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    deadline = time.monotonic() + 10
    while _jobs_of(reference.partial) and time.monotonic() < deadline:
        time.sleep(0.2)
    orphans = _jobs_of(reference.partial)
    return KilledRun(root, reference, job_pids, orphans, (reference.partial / "result.json").exists())


def test_the_job_was_running_when_the_runner_was_killed(killed: KilledRun) -> None:
    assert killed.job_pids
    assert not (killed.reference.folder / "result.json").exists()


def test_the_job_dies_with_its_runner(killed: KilledRun) -> None:
    assert killed.orphans == []
    assert not killed.completed_by_orphan


def test_the_next_run_resumes_to_the_uninterrupted_result(killed: KilledRun, tmp_path: Path,
                                                          tiny_bert_dir: Path) -> None:
    plan = build_plan(load(killed.root / "experiment.yaml"))
    reference = next(s for s in plan.stages if s.kind.value == "reference")
    assert Runner(plan, gpu=False).run_stage(reference).outcome is Outcome.done
    assert (reference.folder / "stage.log.1").is_file() and not (reference.folder / "stage.log.2").exists()
    write_project(tmp_path, tiny_bert_dir, train=TRAIN)
    fresh_plan = build_plan(load(tmp_path / "experiment.yaml", "output.keep_checkpoints=true"))
    fresh = next(s for s in fresh_plan.stages if s.kind.value == "reference")
    assert fresh.id == reference.id
    assert Runner(fresh_plan, gpu=False).run_stage(fresh).outcome is Outcome.done
    assert _model_digest(reference) == _model_digest(fresh)
    # a complete stage keeps its model and outputs, and its checkpoints only when the spec says so
    assert not (reference.folder / "checkpoints").exists()
    assert list((fresh.folder / "checkpoints").glob("step-*"))
