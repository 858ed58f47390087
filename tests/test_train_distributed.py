"""Two real gloo processes (`accelerate launch`) against one process on the full batch.

One launch covers: cross-device InfoNCE with hard negatives gives the single-process loss and gradients
(within 1e-5), whole, GradCache-chunked, in length-aware chunks and both; and the training stage runs on
2 processes with a checkpoint holding each process's state.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from tdro.enums import Pooling
from tdro.modeling.encoder import Encoder
from tdro.modeling.losses import ContrastiveLoss
from tdro.spec.retriever import RetrieverConfig
from tests.dist_train_check import VARIANTS
from tests.train_helpers import dataset_cards, grad_check_batch, model_card, stage_file

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_full_batch(tmp_path, tiny_bert_dir):
    cards = dataset_cards(tmp_path / "data")
    stage = stage_file(tmp_path / "run", model_card(tiny_bert_dir), cards, steps=3, checkpoint_every=2)
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [
        str(accelerate),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        str(REPO / "tests" / "dist_train_check.py"),
        str(tiny_bert_dir),
        str(tmp_path / "grads"),
        str(tmp_path / "run" / "stage.json"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    encoder = Encoder.from_pretrained(tiny_bert_dir, RetrieverConfig(pooling=Pooling.mean))
    encoder.eval()
    query, passages = grad_check_batch(encoder.tokenizer)
    loss = ContrastiveLoss(passages_per_query=3, temperature=0.05)(encoder(**query), encoder(**passages))
    loss.backward()
    expected = {n: p.grad for n, p in encoder.named_parameters() if p.grad is not None}

    ranks = [torch.load(tmp_path / f"grads.rank{r}.pt") for r in (0, 1)]
    for saved in ranks:
        assert saved["world"] == 2
        for label, _, _ in VARIANTS:
            assert saved[f"{label}_loss"] == pytest.approx(loss.item(), abs=1e-5)
            grads = saved[f"{label}_grads"]
            assert grads.keys() == expected.keys()
            worst = max((grads[n] - expected[n]).abs().max().item() for n in expected)
            assert worst < 1e-5, (label, worst)
    assert max(g.abs().max().item() for g in expected.values()) > 1e-3  # the check is not vacuous

    out = tmp_path / "run"
    result = json.loads((out / "result.json").read_text())
    assert result["num_processes"] == 2 and result["steps"] == 3
    assert sorted(p.name for p in (out / "checkpoints" / "step-2").iterdir()) == [
        "complete",
        "model.pt",
        "optimizer.pt",
        "rank-0.pt",
        "rank-1.pt",
        "scheduler.pt",
        "trainer.pt",
    ]
    assert [r["step"] for r in pq.read_table(out / "metrics.parquet").to_pylist()] == [1, 2, 3]
    assert Encoder.from_pretrained(out / "model").dim == 32
    assert stage.output == out
