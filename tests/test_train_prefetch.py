"""The prefetcher hands out exactly the stream's own sequence, and its state excludes the step in flight."""

from __future__ import annotations

import torch

from tdro.data.stream import TrainingStream
from tdro.enums import MixtureMode
from tdro.spec.retriever import RetrieverConfig
from tdro.stages.prefetch import Prefetcher
from tests.train_helpers import dataset_cards


def _stream(cards, tokenizer) -> TrainingStream:
    return TrainingStream(
        cards,
        [1.0, 2.0],
        mode=MixtureMode.homogeneous,
        batch_size=4,
        passages_per_query=2,
        seed=3,
        config=RetrieverConfig(pooling="mean"),
        tokenizer=tokenizer,
    )


def test_prefetch_matches_stream_and_resumes(tmp_path, tiny_bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    cards = dataset_cards(tmp_path / "data", groups=8)
    plain = _stream(cards, tokenizer)
    expected = [plain.next_step(2) for _ in range(4)]
    prefetch = Prefetcher(_stream(cards, tokenizer), micro_batches=2, steps=4)
    got = [prefetch.next(), prefetch.next()]
    state = prefetch.state_dict()  # after 2 steps, although the 3rd is being prepared
    got += [prefetch.next(), prefetch.next()]
    prefetch.close()
    resumed = _stream(cards, tokenizer)
    resumed.load_state_dict(state)
    pairs = [*zip(expected, got, strict=True), (expected[2], resumed.next_step(2))]
    for want, have in pairs:
        for a, b in zip(want, have, strict=True):
            assert torch.equal(a.query["input_ids"], b.query["input_ids"])
            assert torch.equal(a.passages["input_ids"], b.passages["input_ids"])
            assert torch.equal(a.dataset_ids, b.dataset_ids)
