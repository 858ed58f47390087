"""The alpha update of stage 1 against numbers derived by hand (plain Python + math, no tdro code).

Three datasets, windows of two micro-batches, three updates, for every measure. The derivation below
re-states the reference's rules step by step: per-sample x_i, clamp at 0, per-dataset mean (absent -> 0),
average over the window, clip to norm 1 (torch's eps 1e-6), log alpha += eta * g, softmax, re-centre,
mean of post-update alphas, EMA from the initial weights.
"""

from __future__ import annotations

import math

import pytest
import torch

from tdro.dro import AlphaState, group_measure, robust_loss
from tdro.enums import Measure, RatioMode

N = 3
ETA = 0.3
EMA = 0.1
INITIAL = [0.5, 0.3, 0.2]

# (proxy losses, reference losses, dataset ids) per micro-batch; two micro-batches per window.
# Dataset 2 is absent from micro-batch 0 of window 0; dataset 0 from micro-batch 1 of window 2.
WINDOWS = [
    [([2.0, 1.0, 3.0, 0.5], [1.0, 2.0, 1.5, 0.5], [0, 0, 1, 1]),
     ([1.5, 2.5, 0.2, 1.0], [1.0, 1.0, 0.4, 3.0], [0, 1, 2, 2])],
    [([0.8, 1.2, 2.0, 0.1], [1.0, 1.0, 1.0, 0.05], [2, 1, 0, 2]),
     ([3.0, 0.3, 0.7, 1.1], [2.0, 0.6, 0.7, 2.2], [1, 1, 0, 2])],
    [([1.0, 2.0, 0.5, 0.9], [0.5, 0.5, 1.0, 1.0], [0, 1, 2, 2]),
     ([0.4, 0.6, 5.0, 2.0], [0.8, 0.3, 1.0, 4.0], [1, 2, 2, 1])],
]


def f64(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def hand_group_measure(proxy, ref, ids, measure, ratio):
    if measure == "domain_means":
        g = []
        for d in range(N):
            members = [i for i in range(len(ids)) if ids[i] == d]
            if not members:
                g.append(0.0)
                continue
            mean_l = sum(proxy[i] for i in members) / len(members)
            mean_r = sum(ref[i] for i in members) / len(members)
            g.append(max(0.0, mean_l / (1.0 if mean_r < 1e-4 else mean_r)))
        return g
    if measure == "loss":
        x = list(proxy)
    elif measure == "loss_minus_ref":
        x = [a - b for a, b in zip(proxy, ref, strict=True)]
    else:  # per-sample ratio with L1-normalised reference losses
        total = sum(abs(r) for r in ref)
        x = []
        for a, r in zip(proxy, ref, strict=True):
            q = r / total
            x.append(a / (1.0 if q < 1e-4 else q))
    x = [max(0.0, v) for v in x]
    g = []
    for d in range(N):
        members = [x[i] for i in range(len(ids)) if ids[i] == d]
        g.append(sum(members) / max(1, len(members)))
    return g


def hand_trajectory(measure):
    log_alpha = [math.log(w) for w in INITIAL]
    mean = list(INITIAL)
    ema = list(INITIAL)
    out = []
    for c, window in enumerate(WINDOWS):
        gs = [hand_group_measure(p, r, i, measure, None) for p, r, i in window]
        g = [sum(col) / len(gs) for col in zip(*gs, strict=True)]
        norm = math.sqrt(sum(v * v for v in g))
        scale = min(1.0, 1.0 / (norm + 1e-6))
        g = [v * scale for v in g]
        log_alpha = [la + ETA * v for la, v in zip(log_alpha, g, strict=True)]
        z = sum(math.exp(v) for v in log_alpha)
        alpha = [math.exp(v) / z for v in log_alpha]
        log_alpha = [math.log(a) for a in alpha]
        mean = [(m * c + a) / (c + 1) for m, a in zip(mean, alpha, strict=True)]
        ema = [(1 - EMA) * e + EMA * a for e, a in zip(ema, alpha, strict=True)]
        out.append((alpha, mean, ema))
    return out


CASES = [
    (Measure.loss, RatioMode.per_sample_l1, "loss"),
    (Measure.loss_minus_ref, RatioMode.per_sample_l1, "loss_minus_ref"),
    (Measure.loss_over_ref, RatioMode.per_sample_l1, "per_sample_l1"),
    (Measure.loss_over_ref, RatioMode.domain_means, "domain_means"),
]


@pytest.mark.parametrize(("measure", "ratio", "hand"), CASES, ids=[c[2] for c in CASES])
def test_three_updates_match_hand_derivation(measure, ratio, hand):
    state = AlphaState(INITIAL, eta=ETA, max_grad_norm=1.0, normalize_on_update=True, ema=EMA)
    expected = hand_trajectory(hand)
    for window, (alpha, mean, ema) in zip(WINDOWS, expected, strict=True):
        for proxy, ref, ids in window:
            stats = group_measure(f64(proxy), f64(ref), torch.tensor(ids), N, measure, ratio)
            state.accumulate(stats.measure)
        state.update()
        assert state.alpha.tolist() == pytest.approx(alpha, rel=1e-12)
        assert state.mean.tolist() == pytest.approx(mean, rel=1e-12)
        assert state.ema.tolist() == pytest.approx(ema, rel=1e-12)
        # re-centred: log alpha is log of a distribution
        assert torch.logsumexp(state.log_alpha.detach(), 0).item() == pytest.approx(0.0, abs=1e-12)
    assert state.updates == 3
    # the measures really differ, so each case tests its own formula
    others = [hand_trajectory(h)[-1][0] for _, _, h in CASES if h != hand]
    assert all(max(abs(a - b) for a, b in zip(o, expected[-1][0], strict=True)) > 1e-4 for o in others)


def test_one_update_by_pencil():
    """Two datasets, g = (3, 4): ||g|| = 5, clipped to (3, 4) / (5 + 1e-6); eta 0.5 from uniform:
    log alpha = log 0.5 + 0.5 * (0.6, 0.8) (up to the eps), alpha = softmax = (1, e^0.1) / (1 + e^0.1)."""
    state = AlphaState([1.0, 1.0], eta=0.5, max_grad_norm=1.0, ema=0.1)
    stats = group_measure(torch.tensor([3.0, 4.0]), None, torch.tensor([0, 1]), 2, Measure.loss)
    assert stats.measure.tolist() == [3.0, 4.0]
    state.accumulate(stats.measure)
    update = state.update()
    assert update.grad_norm == pytest.approx(5.0)
    assert state.alpha.tolist() == pytest.approx([0.47502081252106, 0.52497918747894], rel=1e-6)
    assert state.mean.tolist() == pytest.approx(state.alpha.tolist())  # initial value dropped
    assert state.ema.tolist() == pytest.approx([0.9 * 0.5 + 0.1 * 0.47502081252106,
                                                0.9 * 0.5 + 0.1 * 0.52497918747894], rel=1e-6)


def test_absent_dataset_gets_no_update_from_a_micro_batch():
    # dataset 2 absent from micro-batch 0: its g is 0 there, and the window mean divides by 2 micro-batches
    stats0 = group_measure(torch.tensor([1.0, 2.0]), None, torch.tensor([0, 1]), 3, Measure.loss)
    stats1 = group_measure(torch.tensor([4.0, 6.0]), None, torch.tensor([2, 2]), 3, Measure.loss)
    assert stats0.measure.tolist() == [1.0, 2.0, 0.0]
    assert stats0.counts.tolist() == [1, 1, 0]
    assert math.isnan(stats0.proxy_mean[2].item())
    state = AlphaState([1, 1, 1], eta=0.1, max_grad_norm=None, normalize_on_update=False)
    state.accumulate(stats0.measure)
    state.accumulate(stats1.measure)
    update = state.update()
    assert update.grad.tolist() == [0.5, 1.0, 2.5]  # (1+0)/2, (2+0)/2, (0+5)/2
    # a dataset absent from the whole window: log alpha untouched (no re-centring here)
    state2 = AlphaState([1, 1, 1], eta=0.1, max_grad_norm=None, normalize_on_update=False)
    before = state2.log_alpha.detach().clone()
    state2.accumulate(stats0.measure)
    state2.update()
    after = state2.log_alpha.detach()
    assert after[2].item() == before[2].item()
    assert after[0].item() == pytest.approx(before[0].item() + 0.1 * 1.0)
    assert after[1].item() == pytest.approx(before[1].item() + 0.1 * 2.0)


def test_ratio_guard_and_clamp():
    # ref (0.00001, 1, 1): L1-normalised 5e-6 < 1e-4 -> divisor 1; negative excess loss clamps to 0
    proxy = torch.tensor([2.0, 1.0, 0.5])
    ref = torch.tensor([0.00001, 1.0, 1.0])
    ids = torch.tensor([0, 1, 1])
    total = 0.00001 + 2.0
    g = group_measure(proxy, ref, ids, 2, Measure.loss_over_ref).measure.tolist()
    assert g == pytest.approx([2.0, (1.0 * total + 0.5 * total) / 2])
    g = group_measure(proxy, ref, ids, 2, Measure.loss_minus_ref).measure.tolist()
    assert g == pytest.approx([2.0 - 0.00001, (0.0 + 0.0) / 2])  # 1-1=0 and 0.5-1 -> clamped to 0


def test_ref_floor_batch_applies_the_floor_as_on_a_bigger_batch():
    # 4 samples, ref (0.01, 1, 1, 1): sum 3.01, q_0 = 0.01 / 3.01 = 3.3e-3.
    # As written (floor 1e-4) sample 0 is divided by q_0: x_0 = 0.5 * 3.01 / 0.01 = 150.5.
    # As on 512 samples the floor is 1e-4 * 512 / 4 = 0.0128 > q_0, so x_0 = 0.5 / 1 = 0.5.
    # q_1..3 = 1 / 3.01 = 0.33 stay above both floors: x = l * 3.01.
    proxy = torch.tensor([0.5, 1.0, 2.0, 0.4])
    ref = torch.tensor([0.01, 1.0, 1.0, 1.0])
    ids = torch.tensor([0, 1, 1, 0])
    as_written = group_measure(proxy, ref, ids, 2, Measure.loss_over_ref).measure.tolist()
    assert as_written == pytest.approx([(0.5 * 3.01 / 0.01 + 0.4 * 3.01) / 2, (1.0 + 2.0) * 3.01 / 2])
    as_512 = group_measure(proxy, ref, ids, 2, Measure.loss_over_ref, ref_floor_batch=512).measure.tolist()
    assert as_512 == pytest.approx([(0.5 + 0.4 * 3.01) / 2, (1.0 + 2.0) * 3.01 / 2])
    # N equal to the batch size is the reference as written
    as_4 = group_measure(proxy, ref, ids, 2, Measure.loss_over_ref, ref_floor_batch=4).measure.tolist()
    assert as_4 == pytest.approx(as_written)


def test_state_dict_resume_is_exact():
    def run(split: bool):
        state = AlphaState(INITIAL, eta=ETA, ema=EMA)
        for k, window in enumerate(WINDOWS):
            if split and k == 1:
                saved = state.state_dict()
                state = AlphaState([1, 1, 1], eta=ETA, ema=EMA)
                state.load_state_dict(saved)
            for proxy, ref, ids in window:
                stats = group_measure(f64(proxy), f64(ref), torch.tensor(ids), N, Measure.loss_over_ref)
                state.accumulate(stats.measure)
            state.update()
        return state

    a, b = run(False), run(True)
    for key in ("alpha", "mean", "ema", "initial"):
        assert torch.equal(getattr(a, key), getattr(b, key))
    assert a.updates == b.updates == 3


def test_robust_loss_weights_and_process_split():
    alpha = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([0, 1, 2, 0])
    # by hand: weights 0.5, 0.3, 0.2, 0.5 over their sum 1.5
    expected = (0.5 * 1 + 0.3 * 2 + 0.2 * 3 + 0.5 * 4) / 1.5
    loss = robust_loss(losses, ids, alpha)
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert losses.grad.tolist() == pytest.approx([0.5 / 1.5, 0.3 / 1.5, 0.2 / 1.5, 0.5 / 1.5])
    # two processes, global normaliser, x2 for DDP's averaging: the mean of the halves is the whole
    halves = [robust_loss(losses[s].detach(), ids[s], alpha, global_weight_sum=1.5, num_processes=2)
              for s in (slice(0, 2), slice(2, 4))]
    assert (sum(halves) / 2).item() == pytest.approx(expected)
