"""Run by tests/test_balanced_batches.py under `accelerate launch --multi_gpu --num_processes 2`.

argv: OUT_PREFIX. Each process holds the same two queries and positives and its own hard negatives
(`balanced_case`), embeds them with a shared linear map (the stand-in for an encoder, identity at start),
computes the balanced step's loss (balanced InfoNCE + CoSENT on the same STS pairs), back-propagates,
averages the map's gradient over processes as DDP does, and saves loss and gradient to OUT_PREFIX.rank<i>.pt.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUERIES = [[1.0, 0.0], [0.0, 1.0]]
POSITIVES = [[1.0, 0.0], [0.0, 1.0]]
NEGATIVES = {0: [[0.0, 1.0], [1.0, 0.0]], 1: [[0.0, 0.0], [0.0, 0.0]]}  # rank -> one per query
STS_A, STS_B, STS_SCORES = [[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], [2.0, 1.0]


def balanced_case(rank: int | None):
    """(q, p, n) of one process (`rank`), or of one process holding every rank's negatives (None)."""
    import torch

    ranks = [rank] if rank is not None else sorted(NEGATIVES)
    rows = [[POSITIVES[i], *(NEGATIVES[r][i] for r in ranks)] for i in range(len(QUERIES))]
    p = torch.tensor([v for block in rows for v in block])
    return torch.tensor(QUERIES), p, 1 + len(ranks)


def step_loss(weight, rank: int | None):
    import torch

    from tdro.modeling.losses import balanced_info_nce, cosent

    q, p, n = balanced_case(rank)
    retrieval = balanced_info_nce(q @ weight, p @ weight, passages_per_query=n, temperature=1.0)
    sts = cosent(torch.tensor(STS_A) @ weight, torch.tensor(STS_B) @ weight, torch.tensor(STS_SCORES), 1.0)
    return retrieval + sts


def main(out_prefix: str) -> None:
    import torch
    import torch.distributed as dist
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    weight = torch.nn.Parameter(torch.eye(2))
    loss = step_loss(weight, accelerator.process_index)
    loss.backward()
    assert weight.grad is not None
    dist.all_reduce(weight.grad)
    weight.grad /= accelerator.num_processes  # what DDP does with every parameter's gradient
    torch.save({"world": accelerator.num_processes, "loss": loss.item(), "grad": weight.grad},
               f"{out_prefix}.rank{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    dist.destroy_process_group()  # a gloo group left open can abort the process at exit


if __name__ == "__main__":
    main(*sys.argv[1:])
