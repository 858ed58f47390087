"""The evaluate stage: in one process, and under a real 2-process `accelerate launch` (gloo) giving the
same scores query by query (one launch keeps the test affordable; the training tests cover 1-process
launches of the shared runtime)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tdro.spec.cards import BenchmarkCard, ModelCard, ModelSource
from tdro.spec.experiment import EvaluateSpec
from tdro.spec.stage_file import EvaluateStageFile, Upstream
from tdro.stages import evaluate as evaluate_stage

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_beir"
REPO = Path(__file__).resolve().parents[1]


def _stage(tmp_path: Path, minilm_dir: Path, name: str, **changes) -> Path:
    """The evaluate stage file of the fixture; `changes` replace its fields (benchmarks, evaluate, ...)."""
    card = ModelCard(
        name="all-minilm-l6-v2", source=ModelSource(path=str(minilm_dir)), pooling="mean", normalize=True,
        query_max_length=256, passage_max_length=256, prompt_style="none",
    )
    fields = dict(
        benchmarks=[BenchmarkCard(name="tiny", path=str(FIXTURE), instruction="Find the passage")],
        evaluate=EvaluateSpec(metrics=["ndcg@10", "mrr@10", "recall@100"], top_k=100,
                              ignore_identical_ids=True, batch_size=4, chunk_size=7),
    )
    stage = EvaluateStageFile(
        stage_id=f"eval-{name}", experiment="test", seed=0, output_dir=str(tmp_path / name), model=card,
        model_under_test=Upstream(stage_id="minilm", path=str(minilm_dir)), **{**fields, **changes},
    )
    return stage.write()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(stage_file: Path, processes: int) -> subprocess.CompletedProcess:
    accelerate = Path(sys.executable).with_name("accelerate")
    multi = ["--multi_gpu"] if processes > 1 else []
    cmd = [str(accelerate), "launch", *multi, "--num_processes", str(processes), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "tdro.stages.evaluate", str(stage_file)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_stage_one_and_two_processes(tmp_path: Path, minilm_dir: Path) -> None:
    assert evaluate_stage.main([str(_stage(tmp_path, minilm_dir, "one"))]) == 0
    two = _launch(_stage(tmp_path, minilm_dir, "two"), 2)
    assert two.returncode == 0, two.stderr[-3000:]

    result = json.loads((tmp_path / "one" / "result.json").read_text())
    assert (result["kind"], result["status"], result["stage_id"]) == ("evaluate", "complete", "eval-one")
    assert result["model_dir"] == str(minilm_dir)
    [bench] = result["benchmarks"]
    assert {k: bench[k] for k in ("benchmark", "split", "num_queries", "num_docs", "top_k",
                                  "ignore_identical_ids")} == {
        "benchmark": "tiny", "split": "test", "num_queries": 10, "num_docs": 26, "top_k": 100,
        "ignore_identical_ids": True,
    }
    assert set(bench["metrics"]) == {"ndcg@10", "mrr@10", "recall@100"}
    assert bench["metrics"]["ndcg@10"] > 0.95  # MiniLM, identical ids ignored: near-perfect on the fixture
    table = pq.read_table(tmp_path / "one" / result["per_query"]["tiny"]).to_pylist()
    assert len(table) == 10 and {"query_id", "ndcg@10"} <= set(table[0])
    assert sum(r["ndcg@10"] for r in table) / 10 == pytest.approx(bench["metrics"]["ndcg@10"])

    # Two processes shard the corpus and gather it: the same scores, query by query.
    two_result = json.loads((tmp_path / "two" / "result.json").read_text())
    assert two_result["benchmarks"][0]["metrics"] == pytest.approx(bench["metrics"], abs=1e-6)
    two_table = pq.read_table(tmp_path / "two" / two_result["per_query"]["tiny"]).to_pylist()
    assert [r["query_id"] for r in two_table] == [r["query_id"] for r in table]
    for a, b in zip(table, two_table, strict=True):
        assert a["ndcg@10"] == pytest.approx(b["ndcg@10"], abs=1e-6)


def test_stage_bad_benchmark_exits_2_with_one_line(tmp_path: Path, minilm_dir: Path, capsys) -> None:
    stage_file = _stage(tmp_path, minilm_dir, "bad")
    stage = json.loads(stage_file.read_text())
    stage["benchmarks"][0]["split"] = "train"
    stage_file.write_text(json.dumps(stage))
    assert evaluate_stage.main([str(stage_file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {FIXTURE}/qrels/train.tsv: no such file (splits here: dev, test)"]
    assert not (tmp_path / "bad" / "result.json").exists()


def test_a_benchmark_card_turns_ignore_identical_ids_on(tmp_path: Path, minilm_dir: Path) -> None:
    card = BenchmarkCard(name="tiny", path=str(FIXTURE), instruction="Find the passage")
    spec_off = EvaluateSpec(metrics=["mrr@10"], top_k=10, ignore_identical_ids=False, batch_size=8)
    flags = {}
    for name, bench in (("off", card), ("card", card.model_copy(update={"ignore_identical_ids": True}))):
        _stage(tmp_path, minilm_dir, name, benchmarks=[bench], evaluate=spec_off)
        assert evaluate_stage.main([str(tmp_path / name / "stage.json")]) == 0
        [record] = json.loads((tmp_path / name / "result.json").read_text())["benchmarks"]
        flags[name] = (record["ignore_identical_ids"], record["metrics"]["mrr@10"])
    assert flags["off"][0] is False and flags["card"][0] is True
    assert flags["card"][1] > flags["off"][1]  # the ArguAna-style query no longer retrieves itself
