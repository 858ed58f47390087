"""Dynamic re-mining (Conan-Embedding's rule) on a scripted score sequence, derived by hand, and a real
training stage that re-mines, resumed after a kill to the same negatives."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from tdro.data.remine import EFFECT_DELAY, Remining, stale
from tdro.spec.experiment import RemineSpec

SPEC = RemineSpec(every=10)  # Conan's ratio 1.15 and max score 0.8


@pytest.mark.parametrize(("initial", "current", "expected"), [
    pytest.param(0.70, 0.60, True, id="fell-13pct"),  # 1.15 * 0.60 = 0.69 < 0.70, and 0.60 < 0.8
    pytest.param(0.50, 0.45, False, id="fell-10pct"),  # 1.15 * 0.45 = 0.5175 >= 0.50
    pytest.param(0.95, 0.81, False, id="still-high"),  # 0.9315 < 0.95, but 0.81 >= 0.8
    pytest.param(0.92, 0.80, False, id="equal-bound"),  # 1.15 * 0.80 = 0.92: not below
])
def test_the_staleness_rule(initial: float, current: float, expected: bool) -> None:
    assert stale(initial, current, ratio=1.15, max_score=0.8) is expected


def test_a_scripted_score_sequence() -> None:
    # dataset 0: row 0's pool a..e, row 1's pool x; 2 negatives per group. Rows 2 and 3 do not go stale.
    remining = Remining([[list("abcde"), ["x"], ["p", "q"], ["r"]]], [2], SPEC)
    for step, row, score in [(3, 0, 0.70), (7, 0, 0.60), (5, 1, 0.90), (8, 1, 0.50), (4, 2, 0.50),
                             (9, 2, 0.45), (2, 3, 0.95), (6, 3, 0.81)]:
        remining.observe(0, row, step, score)
    [count] = remining.check(10, remining.take_pending())
    assert (count.groups_checked, count.groups_remined, count.exhausted) == (4, 2, 0)
    assert remining.negatives_slice(0, 0, 10 + EFFECT_DELAY - 1) is None  # step 11 may be drawn already
    assert remining.negatives_slice(0, 0, 12) == ["a", "b"] and remining.negatives_slice(0, 1, 12) == ["x"]
    assert remining.negatives_slice(0, 2, 12) is None

    # Second interval: a use of row 0's old negatives (step 11) is ignored; the new ones start at 0.5.
    saved = json.loads(json.dumps(remining.state_dict()))
    for step, row, score in [(11, 0, 0.10), (13, 0, 0.50), (15, 0, 0.30), (14, 1, 0.60), (16, 1, 0.20)]:
        remining.observe(0, row, step, score)
    [count] = remining.check(20, remining.take_pending())
    assert (count.groups_checked, count.groups_remined, count.exhausted) == (2, 1, 1)  # row 1: pool empty
    assert remining.negatives_slice(0, 0, 21) == ["a", "b"]
    assert remining.negatives_slice(0, 0, 22) == ["c", "d"]
    assert remining.negatives_slice(0, 1, 30) == ["x"]

    # The state restores exactly: the same observations give the same decisions.
    again = Remining([[list("abcde"), ["x"], ["p", "q"], ["r"]]], [2], SPEC)
    again.load_state_dict(saved)
    for step, row, score in [(11, 0, 0.10), (13, 0, 0.50), (15, 0, 0.30), (14, 1, 0.60), (16, 1, 0.20)]:
        again.observe(0, row, step, score)
    assert again.check(20, again.take_pending()) == [count]
    assert again.state_dict() == remining.state_dict()


@pytest.mark.slow
def test_a_training_stage_remines_and_resumes_to_the_same_negatives(tmp_path: Path,
                                                                    tiny_bert_dir: Path) -> None:
    from tdro.catalog.query import run_sql
    from tdro.plan.graph import build_plan
    from tdro.plan.runner import Runner
    from tdro.stages import train
    from tdro.stages.loop import StoppedEarly
    from tests.test_prepare_stages import PREPARE, pairs_project, run_prepare

    # ratio 0.001 and max score 1.1: every group seen twice is stale, so the counts are known exactly
    remine = {"every": 2, "ratio": 0.001, "max_score": 1.1}
    options = {"steps": 6, "batch_size": 8, "warmup_steps": 0, "checkpoint_every": 2, "passages_per_query": 2,
               "homogeneous_batches": True, "learning_rate": 1e-3, "loss": {"temperature": 0.05},
               "remine": remine}
    plan = build_plan(pairs_project(tmp_path, tiny_bert_dir, prepare=PREPARE, train=options))
    run_prepare(plan)
    reference = next(s for s in plan.stages if s.kind.value == "reference")
    assert set(reference.stage_file.remine_sources) == {"pairs"}  # alpha is not mined: nothing to re-mine

    def stage(name: str):
        return reference.stage_file.model_copy(update={"output_dir": str(tmp_path / name)})

    full = train.run(stage("full"))
    assert full is not None and full.remining_file == "remining.parquet"
    killed = stage("killed")
    with pytest.raises(StoppedEarly):
        train.run(killed, stop_after_step=3)  # checkpoint at step 2 (after the first check), step 3 lost
    assert train.run(killed) is not None
    checks = [pq.read_table(tmp_path / n / "remining.parquet").to_pylist() for n in ("full", "killed")]
    assert checks[0] == checks[1]
    assert {c["dataset"] for c in checks[0]} == {"pairs"} and [c["step"] for c in checks[0]] == [2, 4, 6]
    assert sum(c["groups_remined"] for c in checks[0]) > 0
    assert all(c["groups_remined"] + c["exhausted"] == c["groups_checked"] for c in checks[0])
    losses = [[r["loss"] for r in pq.read_table(tmp_path / n / "metrics.parquet").to_pylist()]
              for n in ("full", "killed")]
    assert losses[0] == losses[1]
    from safetensors.torch import load_file

    a, b = (load_file(tmp_path / n / "model" / "model.safetensors") for n in ("full", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)

    # Two real processes, through the runner: each observes its own rows and they gather every step, so
    # the decisions (here independent of score values) are the one-process run's; the catalog has them.
    two = tmp_path / "two"
    plan2 = build_plan(pairs_project(two, tiny_bert_dir, prepare=PREPARE, train=options,
                                     resources={"processes": 2}))
    run_prepare(plan2)
    reference2 = next(s for s in plan2.stages if s.kind.value == "reference")
    runner = Runner(plan2, gpu=False)
    runner.register()
    outcome = runner.run_stage(reference2)
    assert outcome.outcome.value == "done", outcome
    assert pq.read_table(reference2.folder / "remining.parquet").to_pylist() == checks[0]
    rows = run_sql(plan2.catalog, "SELECT step, dataset, groups_checked, groups_remined, exhausted "
                                  "FROM remining WHERE transfer = 'baseline' ORDER BY step").rows
    assert [dict(zip(("step", "dataset", "groups_checked", "groups_remined", "exhausted"), r, strict=True))
            for r in rows] == checks[0]


def test_the_stream_draws_a_remined_row_with_its_replacement(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from tdro.data.records import Passage
    from tdro.data.remine_pools import RemineSource
    from tdro.data.stream import TrainingStream
    from tdro.enums import MixtureMode
    from tdro.modeling.encoder import Encoder
    from tests.train_helpers import dataset_cards, model_card

    cards = dataset_cards(tmp_path / "data", names=("alpha",), groups=8)
    encoder = Encoder.from_card(model_card(tiny_bert_dir))
    remining = Remining([[["P1"]] * 8], [1], RemineSpec(ratio=0.001, max_score=2.0))
    for row in range(8):  # every row stale at check -1: replaced from step -1 + EFFECT_DELAY = 1 on
        remining.observe(0, row, -3, 0.5)
        remining.observe(0, row, -2, 0.4)
    assert remining.check(-1, remining.take_pending())[0].groups_remined == 8
    source = RemineSource(remining, [{"P1": Passage(text="winter summer king")}])

    def first_batch(remine):
        stream = TrainingStream(cards, [1.0], mode=MixtureMode.homogeneous, batch_size=8,
                                passages_per_query=2, seed=0, config=encoder.config,
                                tokenizer=encoder.tokenizer, remine=remine)
        [batch] = stream.next_step()
        return stream, batch

    stream, remined = first_batch(source)
    _, plain = first_batch(None)
    assert torch.equal(remined.query["input_ids"], plain.query["input_ids"])  # same rows, same queries
    replacement = stream.collator.encode(["winter summer king"], 64)["input_ids"][0].tolist()
    negatives = remined.passages["input_ids"][1::2]  # passage 1 of each query: its one negative
    for ids in negatives.tolist():
        assert [t for t in ids if t != encoder.tokenizer.pad_token_id] == replacement
    assert not any([t for t in ids if t != encoder.tokenizer.pad_token_id] == replacement
                   for ids in plain.passages["input_ids"][1::2].tolist())


def test_remining_without_a_mined_dataset_is_refused(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from tdro.errors import UserError
    from tdro.plan.graph import build_plan
    from tests.runner_project import load, write_project

    spec = write_project(tmp_path, tiny_bert_dir, train={"steps": 2, "batch_size": 8, "remine": {"every": 1}})
    with pytest.raises(UserError) as err:
        build_plan(load(spec))
    assert err.value.problems[0].startswith("train.remine: no dataset of the experiment is mined")
