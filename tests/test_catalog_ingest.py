"""Ingest and views against hand-chosen stage outputs; atomicity; two concurrent runners on one catalog."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tdro.catalog import ingest as cat
from tdro.catalog.connection import open_catalog, transaction
from tdro.catalog.query import run_sql
from tdro.plan.graph import build_plan
from tdro.plan.runner import Outcome, Runner
from tests.runner_project import REPO, fake_outputs, load, write_project_with_model_folder

SWEEP = ("sweep.grid={dro.measure: [loss, loss_over_ref]}", "transfer=[{mode: top_percent, percent: 70}, "
         "{mode: uniform}]")
WEIGHTS = {"loss": {"alpha": 0.5, "beta": 0.3, "gamma": 0.2}, "loss_over_ref": {"alpha": 0.2, "beta": 0.3,
                                                                                 "gamma": 0.5}}
NDCG = {"baseline": 0.40, "loss": 0.30, "loss_over_ref": 0.55}


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    return write_project_with_model_folder(tmp_path)


def finished_plan(spec: Path, *overrides: str):  # type: ignore[no-untyped-def]
    """A plan whose every stage folder is complete, with the numbers above."""
    plan = build_plan(load(spec, *overrides))
    for stage in plan.stages:
        link = stage.links[0]
        if stage.kind.value == "optimize":
            fake_outputs(stage, weights=WEIGHTS[link.measure])
        elif stage.kind.value == "evaluate":
            fake_outputs(stage, value=NDCG["baseline" if link.transfer == "baseline" else link.measure])
        else:
            fake_outputs(stage)
    return plan


def test_views_from_ingested_stages(spec: Path) -> None:
    plan = finished_plan(spec, *SWEEP)
    assert len(plan.stages) == 8  # 1 reference, 2 x (optimize, train), 1 + 2 evaluations
    report = Runner(plan, gpu=False).run()
    assert [o.outcome for o in report.outcomes] == [Outcome.cached] * 8
    db = plan.catalog
    results = run_sql(db, "SELECT arm, measure, transfer, base_model, benchmark, metric, value FROM results "
                          "ORDER BY arm, transfer").rows
    loss, ratio = "dro.measure=loss", "dro.measure=loss_over_ref"
    assert results == [
        (loss, None, "baseline", "tiny", "tiny", "ndcg@10", 0.40),
        (loss, "loss", "top_percent_70", "tiny", "tiny", "ndcg@10", 0.30),
        (loss, None, "uniform", "tiny", "tiny", "ndcg@10", 0.40),
        (ratio, None, "baseline", "tiny", "tiny", "ndcg@10", 0.40),
        (ratio, "loss_over_ref", "top_percent_70", "tiny", "tiny", "ndcg@10", 0.55),
        (ratio, None, "uniform", "tiny", "tiny", "ndcg@10", 0.40),
    ]
    # the ablation query: mean per measure x transfer (hand: baseline (0.40 + 0.40) / 2)
    ablation = run_sql(db, "SELECT coalesce(measure, '-'), transfer, avg(value) FROM results "
                           "GROUP BY ALL ORDER BY ALL").rows
    assert ablation == [("-", "baseline", pytest.approx(0.40)), ("-", "uniform", pytest.approx(0.40)),
                        ("loss", "top_percent_70", 0.30), ("loss_over_ref", "top_percent_70", 0.55)]
    weights = run_sql(db, "SELECT measure, source, dataset, weight FROM weights WHERE arm = ? "
                          "ORDER BY source, dataset", [ratio]).rows
    assert [w[1] for w in weights] == ["curr"] * 3 + ["ema"] * 3 + ["mean"] * 3
    assert [(w[2], w[3]) for w in weights[:3]] == [("alpha", 0.2), ("beta", 0.3), ("gamma", 0.5)]
    assert {w[0] for w in weights} == {"loss_over_ref"}
    traj = run_sql(db, "SELECT measure, step, dataset, alpha, ref_loss FROM trajectory WHERE arm = ? "
                       "ORDER BY step, dataset", [loss]).rows
    assert traj[:3] == [("loss", 1, "alpha", 0.5, 2.0), ("loss", 1, "beta", 0.3, 2.0),
                        ("loss", 1, "gamma", 0.2, 2.0)] and len(traj) == 6
    arms = run_sql(db, "SELECT arm, dro_measure, dro_eta, train_steps, transfer FROM arms ORDER BY arm").rows
    assert [a[:4] for a in arms] == [(loss, "loss", 0.02, 2), (ratio, "loss_over_ref", 0.02, 2)]
    datasets = run_sql(db, 'SELECT name, rows, is_symmetric FROM datasets ORDER BY name').rows
    assert datasets == [("alpha", 24, False), ("beta", 24, False), ("gamma", 24, False)]
    stages = run_sql(db, "SELECT kind, count(*) FROM stages WHERE status = 'complete' GROUP BY kind "
                         "ORDER BY kind").rows
    assert stages == [("evaluate", 3), ("optimize", 2), ("reference", 1), ("train", 2)]


def test_a_stage_that_cannot_be_ingested_leaves_nothing(spec: Path) -> None:
    plan = finished_plan(spec)
    opt = plan.stages[1]
    (opt.folder / "trajectory.parquet").write_bytes(b"not parquet")  # weights.json is fine, parquet is not
    record = cat.StageRecord(stage_id=opt.id, kind="optimize", folder=opt.folder)
    with pytest.raises(Exception, match="parquet"), transaction(plan.catalog) as con:
        cat.ingest_stage(con, record)
    for table in ("stages", "mixture_weights", "trajectory_rows"):
        count = run_sql(plan.catalog, f"SELECT count(*) FROM {table} WHERE stage_id = ?", [opt.id])
        assert count.rows == [(0,)]
    # the runner reports it as that stage's failure; the other stages are still ingested
    report = Runner(plan, gpu=False).run()
    assert [o.outcome.value for o in report.outcomes] == ["cached", "failed", "cached", "cached", "cached"]
    assert "trajectory.parquet" in report.outcomes[1].reason
    assert run_sql(plan.catalog, "SELECT count(*) FROM stages").rows == [(4,)]


def test_two_concurrent_runners_both_land(spec: Path, tmp_path: Path) -> None:
    specs = []
    for name, seed in (("exp_a", 7), ("exp_b", 8)):
        text = spec.read_text().replace("name: tiny", f"name: {name}").replace("seed: 1", f"seed: {seed}")
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        finished_plan(path, *SWEEP)
        specs.append(path)
    env = {**os.environ, "TDRO_REGISTRY": str(tmp_path / "registry"), "PYTHONPATH": str(REPO)}
    db = tmp_path / "catalog.duckdb"
    with open_catalog(db):  # hold the lock while both start: each must wait and retry
        procs = [subprocess.Popen([sys.executable, "-m", "tdro", "run", str(p), *SWEEP], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for p in specs]
        time.sleep(1.5)
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    rows = run_sql(db, "SELECT experiment, count(*) FROM results GROUP BY ALL ORDER BY ALL").rows
    assert rows == [("exp_a", 6), ("exp_b", 6)]
    assert run_sql(db, "SELECT count(*) FROM stages WHERE status = 'complete'").rows == [(16,)]
