"""Length-aware chunked forward: the plan is a length-sorted permutation within the token budget, and the
loss and gradients equal the unchunked ones (with and without GradCache; dropout replay holds)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from tdro.enums import Pooling
from tdro.modeling.chunking import MIN_FILL, encode_by_length, plan_chunks, row_lengths, split_to
from tdro.modeling.encoder import Encoder
from tdro.modeling.losses import ContrastiveLoss
from tdro.spec.experiment import ResourcesSpec
from tdro.spec.retriever import RetrieverConfig
from tdro.stages.runtime import make_accelerator
from tdro.stages.step import forward_backward
from tests.train_helpers import GRAD_PASSAGES, GRAD_QUERIES

LONG_PASSAGES = [text + " and the river" * (i % 4) for i, text in enumerate(GRAD_PASSAGES)]


@dataclass
class Batch:
    query: dict[str, torch.Tensor]
    passages: dict[str, torch.Tensor]


@dataclass
class StepOutcome:
    loss: float
    grads: dict[str, torch.Tensor]


@pytest.fixture
def mixed_lengths() -> torch.Tensor:
    lengths = torch.tensor([3, 9, 1, 9, 5, 2, 7, 4])
    return (torch.arange(10)[None, :] < lengths[:, None]).long()


@pytest.fixture
def encoder(tiny_bert_dir) -> Encoder:
    return Encoder.from_pretrained(tiny_bert_dir, RetrieverConfig(pooling=Pooling.mean))


@pytest.fixture
def batch(encoder) -> Batch:
    def tokens(texts: list[str]) -> dict[str, torch.Tensor]:
        out = encoder.tokenizer(texts, padding=True, return_tensors="pt")
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    return Batch(tokens(GRAD_QUERIES), tokens(LONG_PASSAGES))


def run_step(tiny_bert_dir, batch: Batch, *, train: bool, token_budget: int | None,
             chunk_size: int | None) -> StepOutcome:
    enc = Encoder.from_pretrained(tiny_bert_dir, RetrieverConfig(pooling=Pooling.mean))
    enc.train(train)
    torch.manual_seed(7)
    loss = forward_backward(
        enc, batch.query, batch.passages, ContrastiveLoss(passages_per_query=3, temperature=0.05),
        accelerator=make_accelerator(ResourcesSpec(mixed_precision="no")), token_budget=token_budget,
        chunk_size=chunk_size,
    )
    grads = {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}
    return StepOutcome(loss.item(), grads)


@pytest.mark.parametrize("budget", [pytest.param(1, id="one-row-each"), pytest.param(20, id="20"),
                                    pytest.param(10_000, id="all-in-one")])
def test_plan_covers_every_row_once(mixed_lengths, budget):
    plan = plan_chunks(mixed_lengths, token_budget=budget)
    assert sorted(torch.cat(plan).tolist()) == list(range(8))


@pytest.mark.parametrize("budget", [pytest.param(9, id="9"), pytest.param(20, id="20")])
def test_plan_keeps_chunks_within_the_budget(mixed_lengths, budget):
    lengths = row_lengths(mixed_lengths)
    for chunk in plan_chunks(mixed_lengths, token_budget=budget):
        assert len(chunk) == 1 or len(chunk) * int(lengths[chunk].max()) <= budget


def test_plan_sorts_longest_first_with_ties_in_batch_order(mixed_lengths):
    plan = plan_chunks(mixed_lengths, token_budget=20)
    assert torch.cat(plan).tolist() == [1, 3, 6, 4, 7, 0, 5, 2]


def test_plan_caps_rows_per_chunk():
    equal = torch.ones(8, 10, dtype=torch.long)
    assert [len(c) for c in plan_chunks(equal, token_budget=10_000, max_rows=3)] == [3, 3, 2]


def test_plan_keeps_rows_near_their_chunks_longest(mixed_lengths):
    lengths = row_lengths(mixed_lengths)
    plan = plan_chunks(mixed_lengths, token_budget=10_000)
    assert [c.tolist() for c in plan] == [[1, 3, 6], [4, 7], [0], [5], [2]]
    assert all(int(lengths[c].min()) >= MIN_FILL * int(lengths[c].max()) for c in plan)


def test_plan_without_budget_keeps_batch_order(mixed_lengths):
    plan = plan_chunks(mixed_lengths, token_budget=None, max_rows=3)
    assert [c.tolist() for c in plan] == [[0, 1, 2], [3, 4, 5], [6, 7]]


def test_encode_by_length_returns_rows_in_batch_order(encoder, batch):
    encoder.eval()
    with torch.no_grad():
        whole = encoder(**batch.passages)
        chunked = encode_by_length(encoder, batch.passages, token_budget=12)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("token_budget", "chunk_size"),
    [
        pytest.param(12, None, id="length-chunks"),
        pytest.param(12, 2, id="length-chunks-gradcache"),
        pytest.param(10_000, None, id="one-sorted-chunk"),
    ],
)
def test_length_chunks_give_the_unchunked_loss_and_gradients(tiny_bert_dir, batch, token_budget, chunk_size):
    whole = run_step(tiny_bert_dir, batch, train=False, token_budget=None, chunk_size=None)
    chunked = run_step(tiny_bert_dir, batch, train=False, token_budget=token_budget, chunk_size=chunk_size)
    assert chunked.loss == pytest.approx(whole.loss, abs=1e-6)
    assert chunked.grads.keys() == whole.grads.keys() and len(whole.grads) > 10
    for name in whole.grads:
        torch.testing.assert_close(chunked.grads[name], whole.grads[name], atol=1e-5, rtol=1e-4)


def test_gradcache_replays_dropout_over_the_length_plan(tiny_bert_dir, batch):
    direct = run_step(tiny_bert_dir, batch, train=True, token_budget=12, chunk_size=None)
    cached = run_step(tiny_bert_dir, batch, train=True, token_budget=12, chunk_size=100)
    without_dropout = run_step(tiny_bert_dir, batch, train=False, token_budget=12, chunk_size=None)
    assert abs(direct.loss - without_dropout.loss) > 1e-4  # dropout acts: the check is not vacuous
    assert cached.loss == pytest.approx(direct.loss, abs=1e-6)
    for name in direct.grads:
        torch.testing.assert_close(cached.grads[name], direct.grads[name], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("count", [pytest.param(6, id="6"), pytest.param(8, id="one-row-each")])
def test_split_to_keeps_the_rows_in_plan_order(mixed_lengths, count):
    plan = plan_chunks(mixed_lengths, token_budget=10_000)
    split = split_to(plan, count)
    assert len(split) == count and torch.cat(split).tolist() == torch.cat(plan).tolist()
