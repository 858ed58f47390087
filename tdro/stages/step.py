"""One contrastive forward/backward of a micro-batch: length-aware chunks, optionally GradCache-style.

`forward_backward(model, query, passages, loss_fn, *, accelerator, token_budget=None, chunk_size=None,
loss_weight=1.0, sync=True) -> Tensor` accumulates `loss_weight * d loss / d params` into the model's
`.grad` and returns the (detached) loss as `loss_fn` computed it. `sync=False` keeps DDP from
all-reducing (gradient accumulation: only the last micro-batch of an optimizer step syncs).

Queries and passages are encoded by the chunk plan of `tdro.modeling.chunking`: with a `token_budget`,
rows of similar length together, each chunk trimmed to its own longest row, the vectors put back in the
batch's order, and the loss computed on the full batch as before (same loss and gradients to float
tolerance, much less padding on real text). Without one: the queries in one call and the b*n passages in
n pieces of b rows (the order of the code before the budget existed).

GradCache mode (`chunk_size` rows per chunk at most; Gao et al. 2021) trades compute for memory with the
same loss and gradients:
1. encode the chunks of the plan without a graph, recording each chunk's RNG state;
2. compute the loss on the detached representations (in batch order) and back-propagate to them only;
3. re-encode the same chunks with a graph under the recorded RNG state (same dropout masks) and
   back-propagate each chunk's rows of the cached gradients. DDP is kept from syncing on all but the very
   last chunk, so a step still does one gradient all-reduce.
The chunk plan is made once and serves both passes, so the replay sees the same rows in the same order.
All processes make the same number of encoder calls (`agreed_plan`): DDP broadcasts buffers in each.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from tdro.modeling.chunking import Features, encode_plan, plan_chunks, restore_order, split_to, take_rows
from tdro.modeling.losses import ContrastiveLoss


def num_rows(features: Features) -> int:
    return int(features["input_ids"].shape[0])


@dataclass
class _RngState:
    cpu: torch.Tensor
    cuda: torch.Tensor | None

    @classmethod
    def capture(cls) -> _RngState:
        cuda = (
            torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        )
        return cls(torch.get_rng_state(), cuda)

    @contextmanager
    def replay(self) -> Iterator[None]:
        devices = [torch.cuda.current_device()] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda)
            yield


def agreed_plan(
    attention_mask: torch.Tensor, *, token_budget: int | None, max_rows: int | None, accelerator
) -> list[torch.Tensor]:
    """This process's chunk plan, cut into as many chunks as the process with the most has (DDP
    broadcasts buffers in every forward call: unequal numbers of calls would hang)."""
    plan = plan_chunks(attention_mask, token_budget=token_budget, max_rows=max_rows)
    if accelerator.num_processes == 1 or token_budget is None:  # without a budget: equal by construction
        return plan
    counts = accelerator.gather(torch.tensor([len(plan)], device=accelerator.device))
    return split_to(plan, int(counts.max()))


def encode_by_length(model: torch.nn.Module, features: Features, token_budget: int | None, *, accelerator):
    """Vectors of the rows in batch order, encoded in length-aware chunks agreed over processes."""
    plan = agreed_plan(features["attention_mask"], token_budget=token_budget, max_rows=None,
                       accelerator=accelerator)
    return encode_plan(model, features, plan)


@dataclass(frozen=True)
class ChunkPlan:
    """The chunks of a micro-batch's queries and passages (row indices), made once per step."""

    query: list[torch.Tensor]
    passages: list[torch.Tensor]

    @classmethod
    def of(
        cls, query: Features, passages: Features, *, token_budget: int | None, chunk_size: int | None,
        accelerator,
    ) -> ChunkPlan:
        # Without a budget and without GradCache, passages go in n pieces of b rows (cache-friendlier).
        passage_rows = chunk_size or (None if token_budget is not None else num_rows(query))
        return cls(
            agreed_plan(query["attention_mask"], token_budget=token_budget, max_rows=chunk_size,
                        accelerator=accelerator),
            agreed_plan(passages["attention_mask"], token_budget=token_budget, max_rows=passage_rows,
                        accelerator=accelerator),
        )


def forward_backward(
    model: torch.nn.Module,
    query: Features,
    passages: Features,
    loss_fn: ContrastiveLoss,
    *,
    accelerator,
    token_budget: int | None = None,
    chunk_size: int | None = None,
    loss_weight: float = 1.0,
    sync: bool = True,
) -> torch.Tensor:
    plan = ChunkPlan.of(query, passages, token_budget=token_budget, chunk_size=chunk_size,
                        accelerator=accelerator)
    if chunk_size is None:
        with nullcontext() if sync else accelerator.no_sync(model):
            loss = loss_fn(encode_plan(model, query, plan.query), encode_plan(model, passages, plan.passages))
            accelerator.backward(loss * loss_weight)
        return loss.detach()

    pieces = [(query, index) for index in plan.query] + [(passages, index) for index in plan.passages]
    states, reps = [], []
    with torch.no_grad():
        for features, index in pieces:
            states.append(_RngState.capture())
            reps.append(model(**take_rows(features, index)))
    n_query = len(plan.query)
    q = restore_order(reps[:n_query], plan.query).requires_grad_()
    p = restore_order(reps[n_query:], plan.passages).requires_grad_()
    loss = loss_fn(q, p)
    accelerator.backward(loss * loss_weight)  # reaches only q and p: they are leaves
    assert q.grad is not None and p.grad is not None
    grads = [q.grad.index_select(0, i.to(q.device)) for i in plan.query]
    grads += [p.grad.index_select(0, i.to(p.device)) for i in plan.passages]
    for k, ((features, index), state, grad) in enumerate(zip(pieces, states, grads, strict=True)):
        last = k == len(pieces) - 1
        with nullcontext() if sync and last else accelerator.no_sync(model), state.replay():
            model(**take_rows(features, index)).backward(gradient=grad)
    return loss.detach()
