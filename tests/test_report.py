"""`tdro report`: markdown with the hand-chosen numbers and the PNG plots, from an ingested catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdro.cli import main
from tdro.plan.graph import build_plan
from tdro.plan.runner import Runner
from tests.runner_project import fake_outputs, load, write_project

WEIGHTS = {"loss": {"alpha": 0.5, "beta": 0.3, "gamma": 0.2},
           "loss_over_ref": {"alpha": 0.2, "beta": 0.3, "gamma": 0.5}}


def test_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    spec = write_project(tmp_path, model)
    plan = build_plan(load(spec, "sweep.grid={dro.measure: [loss, loss_over_ref]}"))
    for stage in plan.stages:
        link = stage.links[0]
        if stage.kind.value == "optimize":
            fake_outputs(stage, weights=WEIGHTS[link.measure])
        elif stage.kind.value == "evaluate":
            fake_outputs(stage, value=0.4 if link.transfer == "baseline" else 0.6)
        else:
            fake_outputs(stage)
    Runner(plan, gpu=False).run()
    out = tmp_path / "report"
    catalog = str(plan.catalog)
    assert main(["report", "tiny", "--catalog", catalog, "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "| dro.measure=loss | baseline |  | 0.4000 | 0.4000 |" in text
    assert "| dro.measure=loss_over_ref | top_percent_70 | loss_over_ref | 0.6000 | 0.6000 |" in text
    assert "| gamma | 0.2000 | 0.5000 |" in text  # final curr weights: loss, loss_over_ref
    for png in ("metric_ndcg_at_10.png", "final_weights.png", "alpha_trajectories.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png})" in text
    assert main(["report", "nope", "--catalog", catalog]) == 2
    assert main(["sql", "SELEC", "--catalog", catalog]) == 2
    assert main(["status", "--catalog", catalog]) == 0
