"""After ingest the runner logs each new stage to W&B (offline): alpha per dataset, evaluation tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tdro.plan.graph import build_plan
from tdro.plan.runner import Runner
from tests.runner_project import fake_outputs, load, write_project

WEIGHTS = {"alpha": 0.6, "beta": 0.3, "gamma": 0.1}


def test_new_stages_are_logged_to_wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    spec = write_project(tmp_path, model)
    quiet = build_plan(load(spec, "tracking.mode=disabled"))
    ref, opt, train, ev_ref, ev_train = quiet.stages
    for stage in (ref, train, ev_train):
        fake_outputs(stage, value=0.25)
    Runner(quiet, gpu=False).register()  # ingested without tracking
    fake_outputs(opt, weights=WEIGHTS)
    fake_outputs(ev_ref, value=0.75)
    plan = build_plan(load(spec, "tracking.mode=offline"))
    assert [s.id for s in plan.stages] == [s.id for s in quiet.stages]  # tracking is not part of any id
    Runner(plan, gpu=False).register()
    runs = tmp_path.glob("runs/*/wandb/offline-run-*/run-*.wandb")
    logged = sorted(p.parent.parent.parent.name for p in runs)
    assert logged == sorted([opt.name, ev_ref.name])  # only the stages ingested now
    (opt_run,) = (tmp_path / "runs" / opt.name / "wandb").glob("offline-run-*")
    assert opt_run.name.endswith(f"optimize-{opt.id[:12]}")
    records = next(opt_run.glob("run-*.wandb")).read_bytes()
    for dataset in WEIGHTS:
        assert f"alpha/{dataset}".encode() in records
    (table,) = opt_run.glob("files/media/table/weights_*.table.json")
    data = json.loads(table.read_text())
    assert data["columns"] == ["source", "dataset", "weight"]
    assert ["curr", "alpha", 0.6] in data["data"]
    (ev_run,) = (tmp_path / "runs" / ev_ref.name / "wandb").glob("offline-run-*")
    (ev_table,) = ev_run.glob("files/media/table/evaluation_*.table.json")
    assert json.loads(ev_table.read_text())["data"] == [["tiny", "ndcg@10", 0.75]]
