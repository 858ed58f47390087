"""The mixture sampler: realised counts vs weights, determinism, resume, sharding, reshuffles."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from tdro.data.sampler import MixtureSampler
from tdro.enums import MixtureMode

SIZES = [50, 7, 30, 200]
WEIGHTS = [1.0, 3.0, 0.0, 4.0]  # probabilities 1/8, 3/8, 0, 1/2 (weights need not sum to 1)
PROBS = [1 / 8, 3 / 8, 0.0, 1 / 2]


def within_5_sigma(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1e-9


def test_mixed_mode_counts_follow_the_weights():
    s = MixtureSampler(SIZES, WEIGHTS, MixtureMode.mixed, batch_size=16, seed=3)
    draws = [d for _ in range(400) for d, _ in s.next_step()]
    counts = Counter(draws)
    n = len(draws)
    assert counts[2] == 0  # a zero weight is never drawn
    for d, p in enumerate(PROBS):
        assert within_5_sigma(counts[d], n, p), (d, counts[d], n * p)


def test_homogeneous_mode_one_dataset_per_step_with_weighted_counts():
    s = MixtureSampler(SIZES, WEIGHTS, MixtureMode.homogeneous, batch_size=8, seed=11)
    per_step = []
    for _ in range(600):
        pairs = s.next_step()
        assert len({d for d, _ in pairs}) == 1
        per_step.append(pairs[0][0])
    counts = Counter(per_step)
    assert counts[2] == 0
    for d, p in enumerate(PROBS):
        assert within_5_sigma(counts[d], 600, p), (d, counts[d])


def test_rows_cover_every_row_once_per_epoch_then_reshuffle():
    s = MixtureSampler([7], [1.0], MixtureMode.mixed, batch_size=7, seed=5)
    first = [r for _, r in s.next_step()]
    second = [r for _, r in s.next_step()]
    assert sorted(first) == list(range(7)) and sorted(second) == list(range(7))
    assert first != second  # a new permutation for the next epoch
    # batches that straddle an epoch boundary still use every row once per epoch
    s = MixtureSampler([7], [1.0], MixtureMode.mixed, batch_size=3, seed=5)
    rows = [r for _ in range(7) for _, r in s.next_step()]  # 21 rows = 3 epochs
    for epoch in range(3):
        assert sorted(rows[7 * epoch: 7 * epoch + 7]) == list(range(7))


def test_same_seed_same_sequence_other_seed_other_sequence():
    def run(seed):
        s = MixtureSampler(SIZES, WEIGHTS, MixtureMode.mixed, batch_size=8, seed=seed)
        return [s.next_step() for _ in range(20)]

    assert run(1) == run(1)
    assert run(1) != run(2)


@pytest.mark.parametrize("mode", list(MixtureMode))
def test_resume_through_json_continues_the_exact_sequence(mode):
    straight = MixtureSampler(SIZES, WEIGHTS, mode, batch_size=8, seed=7)
    expected = [straight.next_step() for _ in range(60)]

    first = MixtureSampler(SIZES, WEIGHTS, mode, batch_size=8, seed=7)
    got = [first.next_step() for _ in range(23)]
    state = json.loads(json.dumps(first.state_dict()))
    resumed = MixtureSampler(SIZES, WEIGHTS, mode, batch_size=8, seed=7)
    resumed.load_state_dict(state)
    assert resumed.step == 23
    got += [resumed.next_step() for _ in range(37)]
    assert got == expected


def test_resume_refuses_another_mixture():
    s = MixtureSampler(SIZES, WEIGHTS, MixtureMode.mixed, batch_size=8, seed=7)
    other = MixtureSampler(SIZES, [1, 1, 1, 1], MixtureMode.mixed, batch_size=8, seed=7)
    with pytest.raises(ValueError, match="weights"):
        other.load_state_dict(s.state_dict())


@pytest.mark.parametrize("mode", [MixtureMode.homogeneous, MixtureMode.mixed])  # balanced: see its tests
def test_process_slices_are_disjoint_and_complete(mode):
    whole = MixtureSampler(SIZES, WEIGHTS, mode, batch_size=12, seed=9)
    parts = [MixtureSampler(SIZES, WEIGHTS, mode, batch_size=12, seed=9, num_processes=3, process_index=i)
             for i in range(3)]
    for _ in range(30):
        glob = whole.next_step()
        local = [p.next_step() for p in parts]
        assert all(len(part) == 4 for part in local)
        assert [pair for part in local for pair in part] == glob


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match="multiple of num_processes"):
        MixtureSampler([5], [1], MixtureMode.mixed, batch_size=5, seed=0, num_processes=2)
    with pytest.raises(ValueError, match="not all 0"):
        MixtureSampler([5, 5], [0, 0], MixtureMode.mixed, batch_size=4, seed=0)
    with pytest.raises(ValueError, match="no rows"):
        MixtureSampler([5, 0], [1, 1], MixtureMode.mixed, batch_size=4, seed=0)
    # an empty dataset with weight 0 is fine: it is never drawn
    s = MixtureSampler([5, 0], [1, 0], MixtureMode.homogeneous, batch_size=4, seed=0)
    assert {d for _ in range(10) for d, _ in s.next_step()} == {0}
