"""Encoder: pooling under left/right padding, chunked = full batch, saved folders load in HF and ST."""

from __future__ import annotations

import json

import pytest
import torch

from tdro.data.collator import TrainCollator
from tdro.enums import EosHandling, PaddingSide, Pooling
from tdro.modeling.encoder import Encoder
from tdro.modeling.losses import ContrastiveLoss
from tdro.modeling.pooling import pool
from tdro.spec.experiment import ResourcesSpec
from tdro.spec.retriever import RetrieverConfig
from tdro.stages.runtime import make_accelerator
from tdro.stages.step import forward_backward
from tests.train_helpers import GRAD_PASSAGES, GRAD_QUERIES

TEXTS = ["river", "the king and the queen of the city", "blue bird"]


def test_pool_by_hand():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)  # row0: 0..3, row1: 4..7
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert pool(hidden, right, Pooling.last_token).flatten().tolist() == [2.0, 7.0]
    assert pool(hidden, left, Pooling.last_token).flatten().tolist() == [3.0, 7.0]
    assert pool(hidden, left, Pooling.cls).flatten().tolist() == [1.0, 6.0]
    assert pool(hidden, right, Pooling.mean).flatten().tolist() == [1.0, 5.5]
    assert pool(hidden, left, Pooling.mean).flatten().tolist() == [2.0, 6.5]


def _alone_and_batched(path, config: RetrieverConfig) -> tuple[torch.Tensor, torch.Tensor]:
    enc = Encoder.from_pretrained(path, config)
    enc.eval()
    collator = TrainCollator(enc.tokenizer, config)
    with torch.no_grad():
        alone = torch.cat([enc(**collator.encode([t], 32)) for t in TEXTS])
        batched = enc(**collator.encode(TEXTS, 32))
    return alone, batched


@pytest.mark.parametrize("side", [PaddingSide.left, PaddingSide.right])
@pytest.mark.parametrize("pooling", [Pooling.last_token, Pooling.mean])
def test_padding_side_does_not_change_decoder_vectors(tiny_decoder_dir, side, pooling):
    eos = EosHandling.append if pooling is Pooling.last_token else EosHandling.none
    alone, batched = _alone_and_batched(
        tiny_decoder_dir, RetrieverConfig(pooling=pooling, eos=eos, padding_side=side)
    )
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", [Pooling.cls, Pooling.mean])
def test_left_padded_bert_equals_unpadded(tiny_bert_dir, pooling):
    alone, batched = _alone_and_batched(
        tiny_bert_dir, RetrieverConfig(pooling=pooling, padding_side=PaddingSide.left)
    )
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_chunked_equals_full_batch(tiny_decoder_dir):
    config = RetrieverConfig(
        pooling=Pooling.last_token, eos=EosHandling.append, padding_side=PaddingSide.left
    )
    accelerator = make_accelerator(ResourcesSpec(mixed_precision="no"))
    loss_fn = ContrastiveLoss(passages_per_query=3, temperature=0.05)
    results = []
    for chunk in (None, 3):
        enc = Encoder.from_pretrained(tiny_decoder_dir, config)  # Qwen2 has no dropout: train mode is fine
        collator = TrainCollator(enc.tokenizer, config)
        query, passages = collator.encode(GRAD_QUERIES, 16), collator.encode(GRAD_PASSAGES, 16)
        loss = forward_backward(enc, query, passages, loss_fn, accelerator=accelerator, chunk_size=chunk)
        results.append(
            (loss.item(), {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None})
        )
    (full_loss, full), (chunk_loss, chunked) = results
    assert chunk_loss == pytest.approx(full_loss, abs=1e-6)
    assert full.keys() == chunked.keys() and len(full) > 10
    for name in full:
        torch.testing.assert_close(chunked[name], full[name], atol=1e-5, rtol=1e-4)


def test_saved_retriever_loads_in_transformers_and_sentence_transformers(tmp_path, minilm_dir):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    config = RetrieverConfig(pooling=Pooling.mean, query_prefix="query: ", passage_prefix="passage: ")
    enc = Encoder.from_pretrained(minilm_dir, config)
    enc.eval()
    enc.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "1_Pooling" / "config.json").read_text())[
        "pooling_mode_mean_tokens"
    ]
    assert type(AutoModel.from_pretrained(tmp_path / "saved")).__name__ == "BertModel"
    again = Encoder.from_pretrained(tmp_path / "saved")
    assert again.config == config
    st = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    texts = ["query: where do rivers start", "passage: rivers start in the mountains"]
    with torch.no_grad():
        ours = enc(**enc.tokenizer(texts, padding=True, return_tensors="pt"))
    theirs = torch.as_tensor(st.encode(texts, convert_to_numpy=True))
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-4)
    prompted = torch.as_tensor(
        st.encode(["where do rivers start"], prompt_name="query", convert_to_numpy=True)
    )
    torch.testing.assert_close(prompted[0], ours[0], atol=1e-5, rtol=1e-4)


def test_sentence_transformers_last_token_needs_the_eos_text(tmp_path, tiny_decoder_dir):
    """ST's tokenizer does not append EOS: it reproduces our vectors when the EOS token is in the text."""
    from sentence_transformers import SentenceTransformer

    config = RetrieverConfig(
        pooling=Pooling.last_token, eos=EosHandling.append, padding_side=PaddingSide.left
    )
    enc = Encoder.from_pretrained(tiny_decoder_dir, config)
    enc.eval()
    enc.save_pretrained(tmp_path / "saved")
    pooling = json.loads((tmp_path / "saved" / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_lasttoken"] and not pooling["pooling_mode_mean_tokens"]
    with torch.no_grad():
        ours = enc(**TrainCollator(enc.tokenizer, config).encode(TEXTS, 32))
    st = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    with_eos = torch.as_tensor(st.encode([t + enc.tokenizer.eos_token for t in TEXTS], convert_to_numpy=True))
    torch.testing.assert_close(with_eos, ours, atol=1e-5, rtol=1e-4)
    without = torch.as_tensor(st.encode(TEXTS, convert_to_numpy=True))
    assert (without - ours).abs().max() > 1e-3


def test_gradient_checkpointing_from_card_keeps_gradients(tiny_decoder_dir):
    from tests.train_helpers import model_card

    grads = []
    for checkpointing in (False, True):
        enc = Encoder.from_card(model_card(tiny_decoder_dir, gradient_checkpointing=checkpointing))
        enc.train()  # Qwen2 has no dropout, so recomputation must give the same gradients
        assert enc.model.is_gradient_checkpointing is checkpointing
        query = enc.tokenizer(GRAD_QUERIES, padding=True, return_tensors="pt")
        passages = enc.tokenizer(GRAD_PASSAGES, padding=True, return_tensors="pt")
        ContrastiveLoss(passages_per_query=3, temperature=0.05)(enc(**query), enc(**passages)).backward()
        grads.append({n: p.grad for n, p in enc.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)
