"""Prepares the next optimizer step's batches in a background thread while the current step computes.

Reading, example building and tokenising (Rust tokenizers release the GIL) then overlap the forward and
backward passes, as a DataLoader worker would, without changing what is drawn: the stream's draws are
pure functions of counters, never of a global RNG, so the batches are identical with or without it.

`Prefetcher(stream, micro_batches, steps, draw=None)`: `next()` returns the next step's batches (a stream
error is raised there), drawn by `draw()` (default: `stream.next_step(micro_batches)`); `state_dict()` is
the stream's state after the steps already returned (the prefetched step is not counted), so a checkpoint
resumes exactly. `close()` waits for the thread.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class Prefetcher:
    def __init__(
        self, stream, micro_batches: int, steps: int, draw: Callable[[], list] | None = None
    ) -> None:
        self._stream = stream
        self._draw = draw or (lambda: stream.next_step(micro_batches))
        self._left = steps  # steps still to hand out; nothing is drawn beyond them
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tdro-prefetch")
        self._state: dict[str, Any] = stream.state_dict()
        self._future: Future | None = self._submit()

    def _submit(self) -> Future | None:
        if self._left <= 0:
            return None
        self._left -= 1
        return self._pool.submit(self._draw)

    def next(self) -> list:
        if self._future is None:
            raise StopIteration("no steps left to prefetch")
        batches = self._future.result()
        self._state = self._stream.state_dict()  # no fetch is running now: the state after this step
        self._future = self._submit()
        return batches

    def state_dict(self) -> dict[str, Any]:
        return self._state

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
