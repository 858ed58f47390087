"""STS datasets trained with CoSENT beside query groups: reading scored pairs, the plan's rules, and one
baseline run through the runner (tiny BERT) evaluated on a retrieval and an STS benchmark."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tdro.catalog.query import run_sql
from tdro.data.reader import JsonlReader
from tdro.data.records import decode_scored_pair
from tdro.errors import UserError
from tdro.plan.graph import build_plan
from tdro.plan.runner import Runner
from tests.runner_project import load, write_project
from tests.tiny_models import WORDS

TRAIN = {"steps": 4, "batch_size": 8, "warmup_steps": 0, "checkpoint_every": 2, "homogeneous_batches": True,
         "passages_per_query": 2, "loss": {"temperature": 0.05}}


def scored_pairs(count: int, seed: int) -> list[dict]:
    """Pairs sharing 0-3 of 3 topic words, scored by the overlap (a graded similarity a model can learn)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        words = rng.sample(WORDS[20:80], 6)
        shared = rng.randint(0, 3)
        second = words[:shared] + words[3 : 6 - shared]
        rows.append({"sentence1": " ".join(words[:3]), "sentence2": " ".join(second), "score": float(shared)})
    return rows


def sts_project(root: Path, model_dir: Path, **spec) -> Path:
    """`write_project` with an STS dataset `pairs` beside `alpha`, and an STS benchmark `sts-tiny`."""
    spec.setdefault("dro", None)
    spec.setdefault("transfer", [])
    spec.setdefault("train", TRAIN)
    path = write_project(root, model_dir, datasets=("alpha",), **spec)
    reg = root / "registry"
    train = root / "data" / "pairs.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in scored_pairs(48, seed=0)))
    card = {"name": "pairs", "path": str(train), "source": "sts", "symmetric": True,
            "instructions": ["similar"]}
    (reg / "datasets" / "pairs.yaml").write_text(yaml.safe_dump(card))
    bench = root / "bench" / "sts-tiny"
    bench.mkdir(parents=True, exist_ok=True)
    (bench / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in scored_pairs(30, seed=1)))
    (reg / "benchmarks" / "sts-tiny.yaml").write_text(yaml.safe_dump(
        {"name": "sts-tiny", "kind": "sts", "path": str(bench), "split": "test", "score_range": [0, 3]}))
    data = yaml.safe_load(path.read_text())
    data["datasets"] = ["alpha", "pairs"]
    data["evaluate"]["benchmarks"] = ["tiny", "sts-tiny"]
    data["evaluate"]["zero_shot"] = True
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_scored_pairs_are_read_and_bad_lines_named(tmp_path: Path) -> None:
    path = tmp_path / "sts.jsonl"
    path.write_text('{"sentence1": "a cat", "sentence2": "a small cat", "score": 4}\n'
                    '{"sentence1": " ", "sentence2": "x", "score": 1}\n'
                    '{"sentence1": "a", "sentence2": "b", "score": "high"}\n')
    with pytest.raises(UserError) as err:
        JsonlReader(path, cache_dir=tmp_path / "idx", decode=decode_scored_pair)
    assert err.value.problems[0] == f"{path}:2: empty sentence1"
    reader = JsonlReader(path, cache_dir=tmp_path / "idx", decode=decode_scored_pair, skip_bad_lines=True)
    assert len(reader) == 1 and (reader[0].sentence2, reader[0].score) == ("a small cat", 4.0)
    assert reader.skipped[1].startswith(f"{path}:3: Expected `float`")
    # the same file read as query groups is indexed apart: every line is bad there
    with pytest.raises(UserError, match=":1: missing field"):
        JsonlReader(path, cache_dir=tmp_path / "idx")


def test_the_plan_refuses_what_cosent_cannot_do(tmp_path: Path, tiny_bert_dir: Path) -> None:
    with pytest.raises(UserError) as err:  # stage 1 has no per-query loss to weigh for scored pairs
        build_plan(load(sts_project(tmp_path / "dro", tiny_bert_dir, dro={"steps": 2})))
    assert "dataset pairs: STS pairs (CoSENT) have no per-query retrieval loss" in err.value.problems[0]
    with pytest.raises(UserError) as err:
        mixed = {**TRAIN, "homogeneous_batches": False}
        build_plan(load(sts_project(tmp_path / "mixed", tiny_bert_dir, train=mixed)))
    assert err.value.problems[0].endswith("set train.homogeneous_batches: true")
    with pytest.raises(UserError) as err:  # nothing to transfer without stage 1
        load(sts_project(tmp_path / "transfer", tiny_bert_dir, transfer=[{"mode": "reweight"}]))
    assert "transfer: without stage 1 (dro: null)" in " ".join(err.value.problems)


@pytest.mark.slow
def test_a_baseline_trains_cosent_beside_infonce_and_is_evaluated_on_sts(tmp_path: Path,
                                                                        tiny_bert_dir: Path) -> None:
    plan = build_plan(load(sts_project(tmp_path, tiny_bert_dir)))
    assert sorted(s.kind.value for s in plan.stages) == ["evaluate", "evaluate", "reference"]
    report = Runner(plan, gpu=False).run()
    assert report.ok, report.outcomes
    reference = next(s for s in plan.stages if s.kind.value == "reference")
    metrics = pq.read_table(reference.folder / "metrics.parquet").to_pylist()
    assert {m["dataset"] for m in metrics} == {"alpha", "pairs"}  # homogeneous: one dataset per step
    assert all(math.isfinite(m["loss"]) for m in metrics)
    rows = run_sql(plan.catalog, "SELECT transfer, benchmark, metric, value FROM results "
                                 "WHERE metric IN ('cosine_spearman', 'ndcg@10') ORDER BY ALL").rows
    assert [(t, b, m) for t, b, m, _ in rows] == [
        ("baseline", "sts-tiny", "cosine_spearman"), ("baseline", "tiny", "ndcg@10"),
        ("zero_shot", "sts-tiny", "cosine_spearman"), ("zero_shot", "tiny", "ndcg@10")]
    assert all(-1.0 <= v <= 1.0 for *_, v in rows)


def test_a_scored_batch_carries_its_rows_scores_and_gets_cosent(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from tdro.data.stream import TrainingStream
    from tdro.enums import MixtureMode
    from tdro.modeling.encoder import Encoder
    from tdro.modeling.losses import ContrastiveLoss, CoSENTLoss
    from tdro.spec.experiment import TrainSpec
    from tdro.stages.train import TrainTask

    experiment = load(sts_project(tmp_path, tiny_bert_dir))
    cards = experiment.arms[0].datasets
    scored_card = next(c for c in cards if c.name == "pairs").model_copy(update={"cosent_scale": 7.0})
    cards = [c if c.name != "pairs" else scored_card for c in cards]
    encoder = Encoder.from_card(experiment.arms[0].model)
    stream = TrainingStream(cards, [1.0, 1.0], mode=MixtureMode.homogeneous, batch_size=8,
                            passages_per_query=2, seed=0, config=encoder.config, tokenizer=encoder.tokenizer)
    contrastive = ContrastiveLoss(passages_per_query=2, temperature=0.05)
    task = TrainTask(TrainSpec(), stream, encoder, contrastive, accelerator=None)
    kinds = set()
    for _ in range(6):
        [batch] = stream.next_step()
        names = {cards[d].name for d, _ in stream.last_pairs}
        assert len(names) == 1  # homogeneous
        if names == {"pairs"}:
            gold = [stream.readers[d][row].score for d, row in stream.last_pairs]
            assert batch.scores.tolist() == gold and batch.passages["input_ids"].shape[0] == 8
            loss = task.loss_for(batch)
            assert isinstance(loss, CoSENTLoss) and loss.similarity_scale == 7.0
        else:
            assert batch.scores is None and task.loss_for(batch) is contrastive
        kinds |= names
    assert kinds == {"alpha", "pairs"}
