"""Cross-GPU batch balance (Conan-Embedding's CBB): the sampler's layout, the loss on fixed embeddings
across two real gloo processes against hand-derived numbers, and a training stage on two processes."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tdro.data.sampler import MixtureSampler, allocate
from tdro.enums import MixtureMode
from tests.balanced_dist_worker import step_loss

REPO = Path(__file__).resolve().parents[1]


def test_allocation_gives_every_dataset_its_share() -> None:
    assert allocate(10, np.array([0.5, 0.3, 0.2])).tolist() == [5, 3, 2]
    assert allocate(4, np.array([0.97, 0.01, 0.01, 0.01])).tolist() == [1, 1, 1, 1]  # at least one each
    assert allocate(7, np.array([0.5, 0.0, 0.5])).tolist() == [4, 0, 3]  # remainder tie: the first
    with pytest.raises(ValueError, match="3 datasets do not fit in a batch of 2"):
        allocate(2, np.array([0.4, 0.3, 0.3]))


def test_every_step_holds_every_dataset_and_every_process_the_same_rows() -> None:
    samplers = [MixtureSampler([30, 40, 50], [2, 1, 1], MixtureMode.balanced, batch_size=8, seed=3,
                               num_processes=2, process_index=r) for r in (0, 1)]
    for _ in range(5):
        first, second = (s.next_step() for s in samplers)
        assert first == second and len(first) == 8  # the whole batch on both processes
        assert [d for d, _ in first] == [0, 0, 0, 0, 1, 1, 2, 2]
    assert samplers[0].local_batch_size == 8


# The fixed case (tests/balanced_dist_worker.py), temperature 1, the shared map W the identity:
# q0 = (1, 0), q1 = (0, 1); positives the same; negatives per query, rank 0: (0, 1), (1, 0); rank 1: 0, 0.
# Query 0's scores against [pos0, pos1, rank-0 negatives, rank-1 negatives] are (1, 0, 0, 1, 0, 0), query
# 1's (0, 1, 1, 0, 0, 0), so each cross-entropy is -1 + log(2e + 4) = 1.244592.
# CoSENT on pairs with cosines (1, 0) and scores (2, 1), scale 1: log(1 + e^(0 - 1)) = 0.313262.
HAND_LOSS = -1 + math.log(2 * math.e + 4) + math.log(1 + math.exp(-1))


def test_one_process_holding_every_negative_gives_the_hand_derived_loss() -> None:
    loss = step_loss(torch.eye(2), None)
    assert loss.item() == pytest.approx(HAND_LOSS, abs=1e-6)
    assert pytest.approx(1.557854, abs=1e-6) == HAND_LOSS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_give_the_loss_and_gradient_of_one_holding_every_negative(tmp_path: Path) -> None:
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(REPO / "tests" / "balanced_dist_worker.py"), str(tmp_path / "out")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    weight = torch.nn.Parameter(torch.eye(2))
    step_loss(weight, None).backward()
    for rank in (0, 1):
        saved = torch.load(tmp_path / f"out.rank{rank}.pt")
        assert saved["world"] == 2
        assert saved["loss"] == pytest.approx(HAND_LOSS, abs=1e-6)  # the same number on both processes
        torch.testing.assert_close(saved["grad"], weight.grad, atol=1e-6, rtol=0)
    # Without the world-size factor on the local negatives' gradient, DDP's average would halve their
    # share: the case is built so that it matters.
    assert weight.grad is not None and weight.grad.abs().max() > 0.01


@pytest.mark.slow
def test_a_balanced_stage_trains_retrieval_and_sts_on_two_processes(tmp_path: Path,
                                                                     tiny_bert_dir: Path) -> None:
    import pyarrow.parquet as pq

    from tdro.plan.graph import build_plan
    from tdro.plan.runner import Runner
    from tdro.spec.stage_result import TrainResult
    from tests.runner_project import load
    from tests.test_sts_training import TRAIN, sts_project

    train = {**TRAIN, "balanced_batches": True, "homogeneous_batches": False}
    plan = build_plan(load(sts_project(tmp_path, tiny_bert_dir, train=train, resources={"processes": 2})))
    reference = next(s for s in plan.stages if s.kind.value == "reference")
    runner = Runner(plan, gpu=False)
    runner.register()
    outcome = runner.run_stage(reference)
    assert outcome.outcome.value == "done", outcome
    assert TrainResult.read(reference.folder).num_processes == 2
    metrics = pq.read_table(reference.folder / "metrics.parquet").to_pylist()
    assert [m["dataset"] for m in metrics] == ["mixed"] * 4  # both datasets in every step
    assert all(math.isfinite(m["loss"]) for m in metrics)


def test_processes_share_queries_and_positives_and_draw_their_own_negatives(tmp_path: Path,
                                                                           tiny_bert_dir: Path) -> None:
    from tdro.data.stream import TrainingStream
    from tdro.modeling.encoder import Encoder
    from tests.train_helpers import dataset_cards, model_card

    cards = dataset_cards(tmp_path / "data", names=("alpha", "beta"), groups=16)  # 3 negatives per group
    encoder = Encoder.from_card(model_card(tiny_bert_dir))
    streams = [TrainingStream(cards, [1.0, 1.0], mode=MixtureMode.balanced, batch_size=6,
                              passages_per_query=3, seed=0, config=encoder.config,
                              tokenizer=encoder.tokenizer, num_processes=2, process_index=r) for r in (0, 1)]
    differing = 0
    for _ in range(3):
        first, second = (s.next_step() for s in streams)
        assert [b.dataset_ids.tolist() for b in first] == [[0, 0, 0], [1, 1, 1]]  # one batch per dataset
        for a, b in zip(first, second, strict=True):
            assert torch.equal(a.query["input_ids"], b.query["input_ids"])
            assert torch.equal(a.passages["input_ids"][0::3], b.passages["input_ids"][0::3])  # positives
            negatives = [a.passages["input_ids"][k::3].tolist() != b.passages["input_ids"][k::3].tolist()
                         for k in (1, 2)]
            differing += any(negatives)
    assert differing >= 4  # of 6 task batches: negatives are drawn per process
