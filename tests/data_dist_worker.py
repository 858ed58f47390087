"""Run by `accelerate launch` from tests/test_data_stream.py: each rank writes what its stream handed out.

Usage: accelerate launch ... -m tests.data_dist_worker DEMO_DIR TOKENIZER_DIR OUT_DIR
Writes OUT_DIR/<mode>.rank<i>.json for both mixture modes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from transformers import AutoTokenizer

from tdro.data.stream import TrainingStream
from tdro.enums import MixtureMode, Pooling
from tdro.spec.cards import DatasetCard
from tdro.spec.retriever import RetrieverConfig

NAMES = ["demo_lexical", "demo_map_small", "demo_noise"]


def main() -> None:
    demo, tok_dir, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    # Without a GPU, accelerate 1.x only forms the gloo group when asked for CPU explicitly.
    state = PartialState(cpu=not torch.cuda.is_available())
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    for mode in (MixtureMode.homogeneous, MixtureMode.mixed):  # balanced: tests/test_balanced_batches.py
        run(state, demo, tokenizer, out, mode)
    state.wait_for_everyone()
    state.destroy_process_group()  # a gloo group left open aborts the process at exit


def run(state: PartialState, demo: Path, tokenizer, out: Path, mode: MixtureMode) -> None:
    cards = [DatasetCard(name=n, path=str(demo / "train" / f"{n}.jsonl"), instructions=["x"]) for n in NAMES]
    stream = TrainingStream(
        cards, [1.0, 2.0, 1.0], mode=mode, batch_size=8, passages_per_query=2, seed=13,
        config=RetrieverConfig(pooling=Pooling.mean, query_max_length=16, passage_max_length=16),
        tokenizer=tokenizer, num_processes=state.num_processes,
        process_index=state.process_index,
    )
    steps = []
    for _ in range(12):
        batches = stream.next_step(micro_batches=2)
        steps.append({
            "pairs": stream.last_pairs,
            "dataset_ids": [b.dataset_ids.tolist() for b in batches],
            "query_rows": [b.query["input_ids"].shape[0] for b in batches],
            "gathered": gather_object(list(stream.last_pairs)),  # over gloo: both ranks' pairs, in order
        })
    record = {"rank": state.process_index, "world": state.num_processes, "steps": steps}
    (out / f"{mode.value}.rank{state.process_index}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
