"""End to end through `tdro run` with the real stages (tiny BERT, 2 steps, batch 8, a 13-query benchmark).

One module fixture: a first run is killed once the reference is done and stage 1 has started; the second
run must run only the missing stages. Then: a third run runs nothing and never imports torch; a fourth,
with `evaluate.metrics` changed in one arm and a broken dataset in another, re-runs only the evaluations
of the first and reports the second's failure, skipping its dependants.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tdro.catalog.query import Rows, run_sql
from tdro.cli import main
from tdro.plan.graph import build_plan
from tdro.plan.runner import Outcome, Runner, results_table
from tests.runner_project import REPO, load, write_project

pytestmark = pytest.mark.slow


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "TDRO_REGISTRY": str(root / "registry"), "PYTHONPATH": str(REPO),
            "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> dict:
    root = tmp_path_factory.mktemp("e2e")
    spec = write_project(root, tiny_bert_dir)
    runs = root / "runs"
    first = subprocess.Popen([sys.executable, "-m", "tdro", "run", str(spec)], env=_env(root),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not list(runs.glob("optimize-*.partial/stage.log")):
        assert first.poll() is None, first.communicate()[0]
        assert time.monotonic() < deadline, "stage 1 never started"
        time.sleep(0.2)
    first.send_signal(signal.SIGTERM)
    out = first.communicate(timeout=60)[0]
    killed = {"code": first.returncode, "output": out,
              "folders": sorted(p.name.split("-")[0] + (".partial" if p.suffix else "")
                                for p in runs.iterdir() if p.is_dir() and not p.name.startswith("."))}
    catalog_after_kill = run_sql(root / "catalog.duckdb", "SELECT kind FROM stages").rows
    second = Runner(build_plan(load(spec)), gpu=False).run()
    return {"root": root, "spec": spec, "killed": killed, "catalog_after_kill": catalog_after_kill,
            "second": second}


def test_an_interrupted_run_resumes_only_the_missing_stages(project: dict) -> None:
    killed = project["killed"]
    assert killed["code"] == 130, killed["output"]
    assert killed["folders"] == ["optimize.partial", "reference"]
    assert project["catalog_after_kill"] == [("reference",)]
    second = project["second"]
    assert [(o.stage.kind.value, o.outcome) for o in second.outcomes] == [
        ("reference", Outcome.cached), ("optimize", Outcome.done), ("train", Outcome.done),
        ("evaluate", Outcome.done), ("evaluate", Outcome.done),
    ]
    optimize = second.outcomes[1].stage
    assert (optimize.folder / "stage.log.1").is_file()  # the killed attempt ran in the same folder
    assert not list(project["root"].joinpath("runs").glob("*.partial"))
    results = run_sql(project["root"] / "catalog.duckdb",
                      "SELECT transfer, measure, metric FROM results ORDER BY transfer").rows
    assert results == [("baseline", None, "ndcg@10"), ("top_percent_70", "loss_over_ref", "ndcg@10")]
    weights = json.loads((optimize.folder / "weights.json").read_text())
    assert sum(weights["curr"].values()) == pytest.approx(1.0)


def test_a_second_run_runs_nothing_and_loads_no_model(project: dict) -> None:
    root, spec = project["root"], project["spec"]
    logs = {p: p.stat().st_mtime_ns for p in root.joinpath("runs").glob("*/stage.log")}
    code = ("import sys; from tdro.cli import main; rc = main(['run', sys.argv[1]]); "
            "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, str(spec)], env=_env(root), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "5 cached" in done.stdout and "no torch" in done.stdout
    assert {p: p.stat().st_mtime_ns for p in root.joinpath("runs").glob("*/stage.log")} == logs


def test_metrics_change_reruns_only_evaluations_and_a_failure_skips_its_dependants(
    project: dict, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, spec = project["root"], project["spec"]
    data = yaml.safe_load(spec.read_text())
    data["sweep"] = {"arms": [
        {"name": "good", "set": {"evaluate.metrics": ["ndcg@10", "recall@10"]}},
        {"name": "bad", "set": {"datasets": ["alpha", "broken"]}},
    ]}
    swept = root / "swept.yaml"
    swept.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("TDRO_REGISTRY", str(root / "registry"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    capsys.readouterr()
    assert main(["run", str(swept)]) == 1
    out, err = capsys.readouterr()
    rows = run_sql(root / "catalog.duckdb", """
        SELECT sa.arm, s.kind, s.status FROM stages s JOIN stage_arms sa USING (stage_id)
        WHERE sa.experiment = 'tiny' ORDER BY sa.arm, s.kind, s.status""").rows
    assert ("bad", "reference", "failed") in rows
    assert [r for r in rows if r[0] == "bad" and r[1] != "reference"] == []  # dependants never ran
    assert "failed reference-" in err and "stage.log" in err and "broken" in err
    assert "2 done" in out and "1 failed" in out and "4 skipped" in out and "3 cached" in out
    results = run_sql(root / "catalog.duckdb", "SELECT arm, transfer, metric FROM results "
                      "WHERE metric = 'recall@10' ORDER BY transfer").rows
    assert results == [("good", "baseline", "recall@10"), ("good", "top_percent_70", "recall@10")]


def _result_rows(arms: list[tuple[str, str | None, str]]) -> Rows:
    columns = ["arm", "measure", "transfer", "metric", "value"]
    return Rows(columns, [(arm, measure, transfer, "ndcg@10", 0.5) for arm, measure, transfer in arms])


def test_results_table_leaves_out_an_arm_column_that_only_restates_the_measure() -> None:
    by_measure = _result_rows([
        ("dro.measure=loss", None, "baseline"),
        ("dro.measure=loss", "loss", "reweight"),
        ("dro.measure=loss_over_ref", "loss_over_ref", "reweight"),
    ])
    columns, body = results_table(by_measure)
    assert columns == ["transfer", "measure", "mean ndcg@10"]
    assert body[0] == ["baseline", None, 0.5]
    by_eta = _result_rows([
        ("dro.eta=0.1", "loss_over_ref", "reweight"),
        ("dro.eta=0.2", "loss_over_ref", "reweight"),
    ])
    assert results_table(by_eta)[0][0] == "arm"
