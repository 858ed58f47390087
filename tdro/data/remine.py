"""Dynamic hard-negative re-mining during training (Conan-Embedding's rule), as pure state.

Contract:
- `stale(initial, current, ratio=, max_score=)`: a group's negatives are no longer hard when
  `ratio * current < initial` and `current < max_score` (Conan: 1.15 and 0.8), where `initial` is the
  mean cosine of the query with its current negatives when they were first used, and `current` the same
  at a later use.
- `Remining(pools, negatives, spec)`: `pools[d][row]` is the ordered list of replacement candidates of row
  `row` of dataset `d` (the mined ranking within the mining depth, minus the group's positives and its
  original negatives; `tdro.data.remine_pools` builds it; a dataset that was not mined has no rows and
  is never re-mined); `negatives[d]` is n, dataset d's negatives per group.
  The k-th replacement of a row uses `pool[(k-1)n : kn]` (Conan's "ranks i*n to (i+1)*n"), shorter when
  the pool runs out; an empty slice means the row is exhausted and keeps what it has.
- `observe(d, row, step, score)` records a use (the training step's own forward: no extra encoding).
  `check(step, observations)` applies the observations of the interval (every process's, gathered) in
  (step, dataset, row) order, replaces the negatives of every stale row that has a next slice, and
  returns a `CheckCount` per re-mined dataset. A replacement decided at step t takes effect for the draws of
  steps >= t + 2: the draw of step t + 1 may already be running (prefetch), so the delay is fixed and a
  resumed run draws exactly what an uninterrupted one draws. An observation of negatives that were
  replaced meanwhile is ignored; the first use of new negatives sets their `initial`.
- `negatives_slice(d, row, step)` is the pool slice the draw of `step` uses, or None (the original
  negatives). `state_dict()` is JSON-able and restores everything (`load_state_dict`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tdro.spec.experiment import RemineSpec

EFFECT_DELAY = 2  # a replacement decided at step t is used from step t + 2 on (see the docstring)


def stale(initial: float, current: float, *, ratio: float, max_score: float) -> bool:
    return ratio * current < initial and current < max_score


@dataclass(frozen=True)
class Observation:
    step: int
    dataset: int
    row: int
    score: float  # mean cosine of the query with the negatives it was trained with at `step`


@dataclass(frozen=True)
class CheckCount:
    step: int
    dataset: int
    groups_checked: int  # rows with an initial and a later score in this interval
    groups_remined: int  # of those, stale and given their next slice
    exhausted: int  # stale, but their pool has no next slice


@dataclass
class _Row:
    effective: list[int] = field(default_factory=list)  # the step each replacement takes effect
    initial: float | None = None
    initial_step: int = 0
    current: float | None = None


class Remining:
    def __init__(self, pools: Sequence[Sequence[Sequence[Any]]], negatives: Sequence[int],
                 spec: RemineSpec) -> None:
        self.pools = pools
        self.negatives = negatives
        self.spec = spec
        self.rows: dict[tuple[int, int], _Row] = {}
        self.pending: list[Observation] = []

    def replacements(self, dataset: int, row: int, step: int) -> int:
        state = self.rows.get((dataset, row))
        return 0 if state is None else sum(1 for e in state.effective if e <= step)

    def negatives_slice(self, dataset: int, row: int, step: int) -> Sequence[Any] | None:
        k = self.replacements(dataset, row, step)
        if k == 0:
            return None
        n = self.negatives[dataset]
        return self.pools[dataset][row][(k - 1) * n : k * n]

    def remines(self, dataset: int) -> bool:
        return len(self.pools[dataset]) > 0

    def observe(self, dataset: int, row: int, step: int, score: float) -> None:
        self.pending.append(Observation(step, dataset, row, score))

    def take_pending(self) -> list[Observation]:
        taken, self.pending = self.pending, []
        return taken

    def check(self, step: int, observations: Iterable[Observation]) -> list[CheckCount]:
        seen: set[tuple[int, int]] = set()
        for obs in sorted(observations, key=lambda o: (o.step, o.dataset, o.row)):
            if not self.remines(obs.dataset):
                continue  # a dataset without a mined ranking has nothing to replace
            key = (obs.dataset, obs.row)
            state = self.rows.setdefault(key, _Row())
            if state.effective and obs.step < state.effective[-1]:
                continue  # trained with negatives replaced since
            if state.initial is None:
                state.initial, state.initial_step = obs.score, obs.step
            elif obs.step > state.initial_step:
                state.current = obs.score
                seen.add(key)
        counts: dict[int, list[int]] = {d: [0, 0, 0] for d in range(len(self.pools)) if self.remines(d)}
        for key in sorted(seen):
            state = self.rows[key]
            assert state.initial is not None and state.current is not None
            counts[key[0]][0] += 1
            if not stale(state.initial, state.current, ratio=self.spec.ratio, max_score=self.spec.max_score):
                continue
            k, n = len(state.effective), self.negatives[key[0]]
            if not self.pools[key[0]][key[1]][k * n : (k + 1) * n]:
                counts[key[0]][2] += 1
                continue
            state.effective.append(step + EFFECT_DELAY)
            state.initial, state.current = None, None
            counts[key[0]][1] += 1
        return [CheckCount(step, d, *c) for d, c in counts.items()]

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [[d, r, s.effective, s.initial, s.initial_step, s.current]
                         for (d, r), s in sorted(self.rows.items())],
                "pending": [[o.step, o.dataset, o.row, o.score] for o in self.pending]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = {(d, r): _Row(list(eff), initial, initial_step, current)
                     for d, r, eff, initial, initial_step, current in state["rows"]}
        self.pending = [Observation(*o) for o in state["pending"]]
