"""Which (dataset, row) pairs each optimizer step trains on: a deterministic, resumable mixture.

Every draw is a pure function of counters, never of a shared RNG's history: the dataset(s) of step `s`
come from a numpy Generator seeded by `(seed, s)`, and dataset `d`'s rows follow a permutation seeded by
`(seed, d, epoch)`, taken in order and replaced by the next epoch's when exhausted. Every process
computes the whole global batch and keeps its own contiguous slice, so slices are disjoint, together
complete, and the global sequence does not depend on the number of processes.

- `homogeneous`: one dataset per step (the global batch), drawn with probability w_d / sum(w).
- `mixed`: each of the step's `batch_size` positions draws its dataset independently.
- `balanced` (cross-GPU batch balance): every step holds every dataset of positive weight, `allocate`d
  `batch_size * w_d / sum(w)` positions (largest remainder, at least one each), in dataset order; every
  process gets the whole global batch (the processes share the queries and differ in their negatives).

Weights need not sum to 1; a zero weight means the dataset is never drawn. The state (step and each
dataset's epoch and position) is a small JSON-able dict. `derived_seed(seed, purpose)` gives a stage a
sequence of its own from the experiment's seed (stage 1 uses it so as not to replay stage 0's batches).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from tdro.enums import MixtureMode

_DATASET_STREAM = 0x5EED_D5  # separates the seed sequences of dataset draws and row permutations
_ROW_STREAM = 0x5EED_60


def allocate(total: int, probs: np.ndarray) -> np.ndarray:
    """`total` positions shared by weight: at least one per positive weight, the rest by largest remainder."""
    positive = probs > 0
    if positive.sum() > total:
        raise ValueError(f"{int(positive.sum())} datasets do not fit in a batch of {total}")
    counts = positive.astype(np.int64)
    rest = total - int(counts.sum())
    exact = probs * rest
    floor = np.floor(exact).astype(np.int64)
    counts += floor
    remainders = np.where(positive, exact - floor, -1.0)
    counts[np.argsort(-remainders, kind="stable")[: rest - int(floor.sum())]] += 1
    return counts


def derived_seed(seed: int, purpose: str) -> int:
    """A seed for a stream of its own, determined by (seed, purpose) and unrelated to `seed`'s sequence."""
    digest = hashlib.sha256(f"tdro-seed|{seed}|{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # >= 0, fits numpy's and the state's int64


class MixtureSampler:
    def __init__(self, sizes: Sequence[int], weights: Sequence[float], mode: MixtureMode, batch_size: int,
                 seed: int, num_processes: int = 1, process_index: int = 0) -> None:
        if len(sizes) != len(weights) or not sizes:
            raise ValueError(f"need one weight per dataset: {len(sizes)} sizes, {len(weights)} weights")
        w = np.asarray(weights, dtype=np.float64)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"weights must be finite, >= 0 and not all 0, got {list(weights)}")
        empty = [d for d, (n, wd) in enumerate(zip(sizes, w, strict=True)) if wd > 0 and n <= 0]
        if empty:
            raise ValueError(f"datasets {empty} have weight > 0 but no rows")
        balanced = MixtureMode(mode) is MixtureMode.balanced  # every process holds the whole batch
        if batch_size <= 0 or num_processes <= 0 or (batch_size % num_processes and not balanced):
            raise ValueError(f"batch_size {batch_size} must be a positive multiple of num_processes "
                             f"{num_processes}")
        if not 0 <= process_index < num_processes:
            raise ValueError(f"process_index {process_index} not in [0, {num_processes})")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.sizes = [int(n) for n in sizes]
        self.weights = [float(x) for x in weights]
        self.probs = w / w.sum()
        self.mode = MixtureMode(mode)
        self.batch_size = batch_size
        self.seed = seed
        self.num_processes = num_processes
        self.process_index = process_index
        self.local_batch_size = batch_size if balanced else batch_size // num_processes
        self.counts = allocate(batch_size, self.probs) if balanced else None
        self.step = 0
        self._cursors = [[0, 0] for _ in self.sizes]  # per dataset: [epoch, position in its permutation]
        self._perms: dict[int, tuple[int, np.ndarray]] = {}  # dataset -> (epoch, permutation)

    # -- the draws -------------------------------------------------------------------------------
    def datasets_of_step(self, step: int) -> np.ndarray:
        """The dataset of each position of global step `step` (a pure function of seed and step)."""
        rng = np.random.default_rng([self.seed, _DATASET_STREAM, step])
        k = len(self.sizes)
        if self.mode is MixtureMode.homogeneous:
            return np.full(self.batch_size, rng.choice(k, p=self.probs), dtype=np.int64)
        if self.counts is not None:
            return np.repeat(np.arange(k), self.counts)
        return rng.choice(k, size=self.batch_size, p=self.probs)

    def _permutation(self, d: int, epoch: int) -> np.ndarray:
        cached = self._perms.get(d)
        if cached is None or cached[0] != epoch:
            perm = np.random.default_rng([self.seed, _ROW_STREAM, d, epoch]).permutation(self.sizes[d])
            cached = self._perms[d] = (epoch, perm.astype(np.int32 if self.sizes[d] < 2**31 else np.int64))
        return cached[1]

    def _take(self, d: int, n: int) -> np.ndarray:
        """The next `n` rows of dataset `d`, moving on to a fresh permutation when one runs out."""
        out = []
        epoch, pos = self._cursors[d]
        while n:
            perm = self._permutation(d, epoch)
            part = perm[pos:pos + n]
            out.append(part)
            n -= part.size
            pos += part.size
            if pos == perm.size:
                epoch, pos = epoch + 1, 0
        self._cursors[d] = [epoch, pos]
        return np.concatenate(out) if len(out) > 1 else out[0]

    def next_global(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole next step: dataset and row of every position, for all processes."""
        datasets = self.datasets_of_step(self.step)
        rows = np.empty(self.batch_size, dtype=np.int64)
        for d in np.unique(datasets).tolist():
            where = np.flatnonzero(datasets == d)
            rows[where] = self._take(d, where.size)
        self.step += 1
        return datasets, rows

    def next_step(self) -> list[tuple[int, int]]:
        """This process's slice of the next step's global batch, as (dataset_index, row_index) pairs."""
        datasets, rows = self.next_global()
        if self.counts is not None:
            return list(zip(datasets.tolist(), rows.tolist(), strict=True))
        lo = self.process_index * self.local_batch_size
        hi = lo + self.local_batch_size
        return list(zip(datasets[lo:hi].tolist(), rows[lo:hi].tolist(), strict=True))

    # -- resume -------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "version": 1, "step": self.step, "cursors": [list(c) for c in self._cursors],
            "sizes": list(self.sizes), "weights": list(self.weights), "mode": self.mode.value,
            "batch_size": self.batch_size, "seed": self.seed,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where `state` was taken; refuse a state from a different mixture."""
        mine = self.state_dict()
        for key in ("sizes", "weights", "mode", "batch_size", "seed"):
            if state.get(key) != mine[key]:
                raise ValueError(f"sampler state has {key}={state.get(key)!r}, this run has {mine[key]!r}")
        cursors = [[int(e), int(p)] for e, p in state["cursors"]]
        if len(cursors) != len(self.sizes) or any(
            not 0 <= p < max(n, 1) for (_, p), n in zip(cursors, self.sizes, strict=True)
        ):
            raise ValueError("sampler state has invalid cursors")
        self.step = int(state["step"])
        self._cursors = cursors
