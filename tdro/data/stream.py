"""The training data of one stage: readers, mixture sampler, example builder and collator in one object.

`TrainingStream(cards, weights, ...)` opens every dataset (validating it, see `reader`), checks the
tokenizer's EOS handling, and hands out optimizer steps: `next_step(micro_batches)` returns this
process's share of the next global batch as `micro_batches` tokenised `TrainBatch`es, consecutive slices
of the process's part of the batch. `state_dict()` is JSON-able; loading it into a stream built
with the same arguments continues the exact sequence (datasets, rows, negatives and prompts).
An STS card (`source: sts`) is read as scored pairs and gives one-passage examples with scores; since a
batch cannot mix them with query groups, such a stream needs homogeneous or balanced batches. In
`balanced` mode (cross-GPU batch balance) `next_step()` returns one batch per dataset, every process the
same query groups with the same positives and prompts, each process its own draw of hard negatives
(`example_rng` of process 0 for the group, of this process for its negatives). With `remine` (a
`tdro.data.remine_pools.RemineSource`), a row whose negatives were re-mined is drawn with the
replacement slice that applies at that step instead of its mined negatives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import msgspec

from tdro.data.collator import TrainBatch, TrainCollator
from tdro.data.examples import build_example, build_scored_example, example_rng
from tdro.data.reader import JsonlReader
from tdro.data.records import ScoredPair, decoder_for
from tdro.data.sampler import MixtureSampler
from tdro.enums import DataSource, MixtureMode
from tdro.errors import UserError
from tdro.spec.cards import DatasetCard
from tdro.spec.retriever import RetrieverConfig

if TYPE_CHECKING:
    from tdro.data.remine_pools import RemineSource


class TrainingStream:
    def __init__(self, cards: list[DatasetCard], weights: Sequence[float], *, mode: MixtureMode,
                 batch_size: int, passages_per_query: int, seed: int, config: RetrieverConfig, tokenizer,
                 num_processes: int = 1, process_index: int = 0, skip_bad_lines: bool = False,
                 fingerprints: Mapping[str, str] | None = None, remine: RemineSource | None = None) -> None:
        if len(cards) != len(weights):
            raise ValueError(f"{len(cards)} datasets but {len(weights)} weights")
        if batch_size % num_processes and mode is not MixtureMode.balanced:
            raise UserError(f"batch_size {batch_size} is not divisible by the {num_processes} processes")
        self.cards = list(cards)
        self.names = [c.name for c in self.cards]
        scored = [c.name for c in self.cards if c.source is DataSource.sts]
        if scored and mode is MixtureMode.mixed and len(self.cards) > 1:
            raise UserError(f"dataset {scored[0]}: STS pairs (CoSENT) cannot share a batch with query "
                            "groups; set homogeneous_batches: true")
        planned = fingerprints or {}  # the stage file's: a reader whose data differs refuses to open
        self.readers = [JsonlReader(c.resolved_path, skip_bad_lines=skip_bad_lines,
                                    decode=decoder_for(c.source), expected_fingerprint=planned.get(c.name))
                        for c in self.cards]
        self.skipped: list[list[str]] = [r.skipped for r in self.readers]
        self.sampler = MixtureSampler(
            [len(r) for r in self.readers], weights, mode, batch_size, seed, num_processes, process_index
        )
        self.passages_per_query = passages_per_query
        self.seed = seed
        self.process_index = process_index
        self.collator = TrainCollator(tokenizer, config)
        self.config = config
        self.last_pairs: list[tuple[int, int]] = []  # (dataset, row) of each local example of the last step
        self.remine = remine

    @property
    def step(self) -> int:
        """Optimizer steps handed out so far."""
        return self.sampler.step

    @property
    def fingerprints(self) -> list[str]:
        return [r.fingerprint for r in self.readers]

    def next_step(self, micro_batches: int = 1) -> list[TrainBatch]:
        if self.sampler.mode is MixtureMode.balanced:
            return self._balanced_step(micro_batches)
        local = self.sampler.local_batch_size
        if micro_batches < 1 or local % micro_batches:
            raise UserError(
                f"{local} query groups per process and step do not split into {micro_batches} micro-batches"
            )
        step = self.sampler.step
        pairs = self.last_pairs = self.sampler.next_step()
        examples = [self._example(d, row, example_rng(self.seed, step, self.process_index, pos), step + 1)
                    for pos, (d, row) in enumerate(pairs)]
        size = local // micro_batches
        parts = [(examples[i:i + size], pairs[i:i + size]) for i in range(0, local, size)]
        return [self.collator(part, [d for d, _ in where], [r for _, r in where]) for part, where in parts]

    def _balanced_step(self, micro_batches: int) -> list[TrainBatch]:
        if micro_batches != 1:
            raise UserError("balanced batches hold every dataset in one step: gradient_accumulation must "
                            "be 1")
        step = self.sampler.step
        pairs = self.last_pairs = self.sampler.next_step()
        examples = [self._example(d, row, example_rng(self.seed, step, 0, pos), step + 1,
                                  example_rng(self.seed, step, self.process_index, pos))
                    for pos, (d, row) in enumerate(pairs)]
        batches = []
        for dataset in sorted({d for d, _ in pairs}):
            where = [i for i, (d, _) in enumerate(pairs) if d == dataset]
            batches.append(self.collator([examples[i] for i in where], [dataset] * len(where),
                                         [pairs[i][1] for i in where]))
        return batches

    def _example(self, dataset: int, row: int, rng, step: int, negatives_rng=None):
        """The example of one row at optimizer step `step` (1-based: the step that trains on it)."""
        record = self.readers[dataset][row]
        if isinstance(record, ScoredPair):
            return build_scored_example(record, self.cards[dataset], rng, self.config)
        if self.remine is not None and (negatives := self.remine.negatives(dataset, row, step)) is not None:
            record = msgspec.structs.replace(record, negatives=negatives)
        return build_example(record, self.cards[dataset], self.passages_per_query, rng, self.config,
                             negatives_rng)

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict(), "fingerprints": self.fingerprints}

    def load_state_dict(self, state: dict) -> None:
        if state.get("fingerprints") != self.fingerprints:
            raise UserError("the training data changed since this checkpoint was written; it cannot resume")
        self.sampler.load_state_dict(state["sampler"])
