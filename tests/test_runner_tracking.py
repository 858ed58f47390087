"""After ingest the runner adds each new stage's summary and tables to the stage's own W&B run (offline)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tdro import tracking_keys as keys
from tdro.plan.graph import Plan, Stage, build_plan
from tdro.plan.runner import Runner
from tests.runner_project import fake_outputs, load, write_project_with_model_folder
from tests.wandb_offline import OfflineRun, offline_runs

WEIGHTS = {"alpha": 0.6, "beta": 0.3, "gamma": 0.1}


@dataclass(frozen=True)
class Logged:
    """A plan whose stages 0 and 2 were ingested without tracking, then stage 1 and an evaluation with it."""

    quiet: Plan
    plan: Plan
    optimize: Stage
    evaluate: Stage


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Logged:
    import wandb

    root = tmp_path_factory.mktemp("tracking")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        spec = write_project_with_model_folder(root)
        quiet = build_plan(load(spec, "tracking.mode=disabled"))
        ref, opt, train, ev_ref, ev_train = quiet.stages
        for stage in (ref, train, ev_train):
            fake_outputs(stage, value=0.25)
        Runner(quiet, gpu=False).register()  # ingested without tracking
        fake_outputs(opt, weights=WEIGHTS)
        fake_outputs(ev_ref, value=0.75)
        plan = build_plan(load(spec, "tracking.mode=offline"))
        Runner(plan, gpu=False).register()
        wandb.teardown()  # the W&B service writes run files asynchronously; this waits for them
    return Logged(quiet, plan, opt, ev_ref)


def only_run(stage: Stage) -> OfflineRun:
    (run,) = offline_runs(stage.folder)
    return run


def test_tracking_is_not_part_of_any_stage_id(logged: Logged) -> None:
    assert [s.id for s in logged.plan.stages] == [s.id for s in logged.quiet.stages]


def test_only_the_stages_ingested_now_are_logged(logged: Logged) -> None:
    runs = logged.plan.stages[0].folder.parent.glob("*/wandb/offline-run-*")
    assert sorted(p.parent.parent.name for p in runs) == sorted([logged.optimize.name, logged.evaluate.name])


@pytest.mark.parametrize("kind", [
    pytest.param("optimize", id="optimize"), pytest.param("evaluate", id="evaluate"),
])
def test_the_runner_writes_to_the_stage_run_id(logged: Logged, kind: str) -> None:
    stage = getattr(logged, kind)
    assert only_run(stage).run_id == keys.run_id(kind, stage.id)


def test_the_runner_adds_no_history_steps(logged: Logged) -> None:
    assert only_run(logged.optimize).history == []  # the job streams the curves; the runner adds none


def test_final_alpha_is_in_the_summary(logged: Logged) -> None:
    summary = only_run(logged.optimize).summary
    assert {d: summary[keys.final_alpha(d)] for d in WEIGHTS} == WEIGHTS


def test_weights_table_holds_the_catalog_weights(logged: Logged) -> None:
    (table,) = only_run_dir(logged.optimize).glob("files/media/table/weights_*.table.json")
    data = json.loads(table.read_text())
    assert data["columns"] == ["source", "dataset", "weight"] and ["curr", "alpha", 0.6] in data["data"]


def test_evaluation_table_and_summary(logged: Logged) -> None:
    (table,) = only_run_dir(logged.evaluate).glob("files/media/table/evaluation_*.table.json")
    assert json.loads(table.read_text())["data"] == [["tiny", "ndcg@10", 0.75]]
    assert only_run(logged.evaluate).summary[keys.benchmark_metric("tiny", "ndcg@10")] == 0.75


def only_run_dir(stage: Stage) -> Path:
    (run_dir,) = (stage.folder / "wandb").glob("offline-run-*")
    return run_dir


@dataclass(frozen=True)
class Relogged:
    """A stage ingested by a runner that died before it logged to W&B, then seen by two more runners."""

    stage: Stage
    runs_after_next_runner: int
    runs_after_a_new_catalog: int


@pytest.fixture(scope="module")
def relogged(tmp_path_factory) -> Relogged:
    import wandb

    from tdro.plan.projection import PENDING_MARK

    root = tmp_path_factory.mktemp("relogged")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        spec = write_project_with_model_folder(root)
        quiet = build_plan(load(spec, "tracking.mode=disabled"))
        stage = quiet.stages[0]
        fake_outputs(stage, value=0.25)
        Runner(quiet, gpu=False).register()
        (stage.folder / PENDING_MARK).write_text("")  # what a kill between the commit and the logging leaves
        Runner(build_plan(load(spec, "tracking.mode=offline")), gpu=False).register()
        wandb.teardown()
        after_next = len(offline_runs(stage.folder))
        other = build_plan(load(spec, "tracking.mode=offline", f"output.catalog={root / 'other.duckdb'}"))
        Runner(other, gpu=False).register()
        wandb.teardown()
    return Relogged(stage, after_next, len(offline_runs(stage.folder)))


def test_a_stage_the_dead_runner_did_not_log_is_logged_by_the_next(relogged: Relogged) -> None:
    assert relogged.runs_after_next_runner == 1
    assert only_run(relogged.stage).summary[keys.FINAL_LOSS] == 0.25


def test_reingesting_into_a_new_catalog_logs_nothing_twice(relogged: Relogged) -> None:
    assert relogged.runs_after_a_new_catalog == 1
