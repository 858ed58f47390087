"""Contrastive losses against numbers derived by hand / with plain-Python loops, and the LR schedule."""

from __future__ import annotations

import math

import pytest
import torch

from tdro.enums import Schedule
from tdro.errors import UserError
from tdro.modeling.losses import ContrastiveLoss, gtr_loss, info_nce, matryoshka
from tdro.modeling.schedule import lr_factor
from tdro.spec.experiment import DroLossSpec, DroSpec, LossSpec, TrainSpec

# q0=(1,0), q1=(0,1); passages [pos, neg] per query: p0=(1,0) p1=(.6,.8) | p2=(0,1) p3=(.8,.6)
Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
P = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])
TAU = 0.5


def _ce(logits: list[float], target: int) -> float:
    return -logits[target] + math.log(sum(math.exp(x) for x in logits))


def _loop_info_nce(q, p, n, tau, only_hn=False) -> list[float]:
    """Independent per-query InfoNCE with explicit loops over python lists."""
    out = []
    for i, qi in enumerate(q):
        cols = range(i * n, (i + 1) * n) if only_hn else range(len(p))
        logits = [sum(a * b for a, b in zip(qi, p[j], strict=True)) / tau for j in cols]
        out.append(_ce(logits, 0 if only_hn else i * n))
    return out


def test_info_nce_by_hand():
    # q0 scores /0.5: [2, 1.2, 0, 1.6], target 0; q1: [0, 1.6, 2, 1.2], target 2
    l0 = -2 + math.log(math.exp(2) + math.exp(1.2) + math.exp(0) + math.exp(1.6))
    l1 = -2 + math.log(math.exp(0) + math.exp(1.6) + math.exp(2) + math.exp(1.2))
    per = info_nce(Q, P, passages_per_query=2, temperature=TAU, reduction="none")
    assert per.tolist() == pytest.approx([l0, l1], abs=1e-6)
    mean = info_nce(Q, P, passages_per_query=2, temperature=TAU)
    assert mean.item() == pytest.approx((l0 + l1) / 2, abs=1e-6)


def test_only_hard_negatives_sees_own_block():
    # q0 over (p0, p1): [2, 1.2]; q1 over (p2, p3): [2, 1.2]
    expected = -2 + math.log(math.exp(2) + math.exp(1.2))
    per = info_nce(Q, P, passages_per_query=2, temperature=TAU, only_hard_negatives=True, reduction="none")
    assert per.tolist() == pytest.approx([expected, expected], abs=1e-6)


def test_random_against_loops():
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(3, 5, generator=g), dim=-1)
    p = torch.nn.functional.normalize(torch.randn(9, 5, generator=g), dim=-1)
    for only_hn in (False, True):
        expected = _loop_info_nce(q.tolist(), p.tolist(), 3, 0.05, only_hn)
        got = info_nce(
            q, p, passages_per_query=3, temperature=0.05, only_hard_negatives=only_hn, reduction="none"
        )
        assert got.tolist() == pytest.approx(expected, rel=1e-5)


def test_gtr_bidirectional_by_hand():
    l_qp = _loop_info_nce(Q.tolist(), P.tolist(), 2, TAU)
    # p->q: positive p0 against (q0, q1) = [2, 0] target 0; p2: [0, 2] target 1
    l_pq = [_ce([2.0, 0.0], 0), _ce([0.0, 2.0], 1)]
    got = gtr_loss(Q, P, passages_per_query=2, temperature=TAU, reduction="none")
    assert got.tolist() == pytest.approx([(a + b) / 2 for a, b in zip(l_qp, l_pq, strict=True)], abs=1e-6)
    loss = ContrastiveLoss(passages_per_query=2, temperature=TAU, bidirectional=True)
    assert loss(Q, P).item() == pytest.approx(sum(l_qp + l_pq) / 4, abs=1e-6)


def test_matryoshka_sums_renormalised_truncations():
    q = torch.tensor([[3.0, 4.0, 0.0], [1.0, -2.0, 2.0]])
    p = torch.tensor([[2.0, 1.0, 2.0], [-1.0, 0.0, 0.0], [0.0, 3.0, 4.0], [1.0, 1.0, 0.0]])

    def unit(v):
        norm = math.sqrt(sum(x * x for x in v))
        return [x / norm for x in v]

    expected = 0.0
    for d in (2, 3):
        qd = [unit(r[:d]) for r in q.tolist()]
        pd = [unit(r[:d]) for r in p.tolist()]
        expected += sum(_loop_info_nce(qd, pd, 2, 0.1)) / 2
    loss = ContrastiveLoss(passages_per_query=2, temperature=0.1, normalize=True, matryoshka_dims=(2, 3))
    got = loss(torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(p, dim=-1))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    plain = matryoshka(
        lambda a, b: info_nce(a, b, passages_per_query=2, temperature=0.1), q, p, [1], renormalize=False
    )
    assert plain.item() == pytest.approx(
        sum(_loop_info_nce([[3.0], [1.0]], [[2.0], [-1.0], [0.0], [1.0]], 2, 0.1)) / 2
    )


def test_gradient_is_softmax_minus_onehot():
    # d loss_i / d s_ij = (softmax_j - [j == target]) / (tau * B): check dL/dq0 by hand
    q = Q.clone().requires_grad_()
    info_nce(q, P, passages_per_query=2, temperature=TAU).backward()
    logits = [2.0, 1.2, 0.0, 1.6]
    z = sum(math.exp(x) for x in logits)
    coef = [math.exp(x) / z - (j == 0) for j, x in enumerate(logits)]
    expected = [sum(c * P[j, k].item() for j, c in enumerate(coef)) / (TAU * 2) for k in range(2)]
    assert q.grad[0].tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("schedule", "step", "expected"),
    [
        (Schedule.cosine, 0, 0.0),
        (Schedule.cosine, 5, 0.5),  # warm-up t/W
        (Schedule.cosine, 10, 1.0),
        (Schedule.cosine, 60, 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 50 / 100))),
        (Schedule.cosine, 110, 0.1),
        (Schedule.cosine, 500, 0.1),
        (Schedule.linear, 35, 0.1 + 0.9 * (110 - 35) / 100),
        (Schedule.linear, 110, 0.1),
        (Schedule.constant, 3, 0.3),
        (Schedule.constant, 100, 1.0),
    ],
)
def test_lr_schedule_formulas(schedule, step, expected):
    got = lr_factor(step, schedule=schedule, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize("spec, only_hn", [
    pytest.param(TrainSpec().loss.model_copy(update={"temperature": TAU}), False, id="stage-0-2"),
    pytest.param(DroSpec().loss.model_copy(update={"temperature": TAU}), True, id="stage-1"),
])
def test_one_factory_builds_each_stage_loss_from_its_spec(spec, only_hn):
    loss = ContrastiveLoss.from_spec(spec, passages_per_query=2, normalize=True, dim=2)
    expected = _loop_info_nce(Q.tolist(), P.tolist(), 2, TAU, only_hn=only_hn)
    assert loss(Q, P, reduction="none").tolist() == pytest.approx(expected, rel=1e-6)


def test_factory_refuses_matryoshka_dims_beyond_the_model():
    spec = LossSpec(matryoshka_dims=[2, 4])
    with pytest.raises(UserError, match="matryoshka_dims: 4 exceeds the model's dimension 2"):
        ContrastiveLoss.from_spec(spec, passages_per_query=2, normalize=True, dim=2)


def test_stage1_loss_never_gathers_representations():
    with pytest.raises(ValueError, match="cross_device_negatives"):
        DroLossSpec(cross_device_negatives=True)


# CoSENT by hand: a = (1, 0) for every pair, b_k = (cos t_k, sin t_k) with t = (0, pi/2, pi/4), so the
# pairs' cosines are (1, 0, 1/sqrt 2); gold scores (1, 3, 2). Ordered pairs (i, j) with s_i > s_j:
# (2,1), (2,3), (3,1) (1-based), so with scale 1
#   loss = log(1 + e^(1 - 0) + e^(0.7071 - 0) + e^(1 - 0.7071)) = log(7.086696) = 1.958219
# and dloss/dcos = (e^1 + e^0.2929, -(e^1 + e^0.7071), e^0.7071 - e^0.2929) / 7.086696
#               = (0.572704, -0.669762, 0.097057); dcos_k/dt_k = -sin t_k.
def test_cosent_value_and_gradient_by_hand() -> None:
    from tdro.modeling.losses import CoSENTLoss, cosent

    angles = torch.tensor([0.0, math.pi / 2, math.pi / 4], requires_grad=True)
    a = torch.tensor([[1.0, 0.0]] * 3)
    b = torch.stack([angles.cos(), angles.sin()], dim=1)
    loss = cosent(a, b, torch.tensor([1.0, 3.0, 2.0]), scale=1.0)
    assert loss.item() == pytest.approx(1.958219, abs=1e-6)
    loss.backward()
    d_cos = torch.tensor([0.572704, -0.669762, 0.097057])
    expected = d_cos * -torch.tensor([0.0, 1.0, math.sqrt(0.5)])
    torch.testing.assert_close(angles.grad, expected, atol=1e-6, rtol=0)
    # the training step's callable form; scale 20 and equal scores (never compared) give log(1) = 0
    assert CoSENTLoss(torch.tensor([2.0, 2.0]))(a[:2], b[:2].detach()).item() == 0.0
    with pytest.raises(ValueError, match="one passage per query"):
        CoSENTLoss(torch.tensor([1.0, 2.0]))(a[:2], torch.zeros(4, 2))


def test_cosent_large_scale_does_not_overflow() -> None:
    from tdro.modeling.losses import cosent

    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # the higher-scored pair has the lower cosine, by 1
    loss = cosent(a, b, torch.tensor([5.0, 0.0]), scale=1000.0)
    assert loss.item() == pytest.approx(1000.0, rel=1e-6)  # log(1 + e^1000) = 1000 + log(1 + e^-1000)
