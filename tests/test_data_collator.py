"""The collator: lengths, padding side, EOS for last-token pooling (tiny Qwen2 tokenizer adds none)."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from tdro.data.collator import TrainCollator, check_eos, last_token_ids, tokenizer_adds_eos
from tdro.data.examples import TrainingExample
from tdro.enums import EosHandling, PaddingSide, Pooling
from tdro.errors import UserError
from tdro.spec.retriever import RetrieverConfig

EXAMPLES = [
    TrainingExample("river", ["the river city", "a bird song"]),
    TrainingExample("what is the tallest mountain in the city",
                    ["mountain", "music science history game film"]),
]


def last_config(side: PaddingSide, eos=EosHandling.append) -> RetrieverConfig:
    return RetrieverConfig(pooling=Pooling.last_token, eos=eos, padding_side=side, query_max_length=5,
                           passage_max_length=4)


@pytest.mark.parametrize("side", list(PaddingSide))
def test_appended_eos_ends_every_sequence_for_both_padding_sides(tiny_decoder_dir, side):
    tok = AutoTokenizer.from_pretrained(tiny_decoder_dir)
    assert not tokenizer_adds_eos(tok)  # like Qwen1.5 / Llama-3
    eos = tok.eos_token_id
    batch = TrainCollator(tok, last_config(side))(EXAMPLES, [3, 1])
    assert batch.dataset_ids.tolist() == [3, 1]
    assert batch.passages["input_ids"].shape[0] == 4 and batch.passages_per_query == 2
    for enc, limit in ((batch.query, 5), (batch.passages, 4)):
        ids, mask = enc["input_ids"], enc["attention_mask"]
        assert ids.shape[1] <= limit  # truncation kept room for the EOS
        for row, m in zip(ids.tolist(), mask.tolist(), strict=True):
            real = [t for t, keep in zip(row, m, strict=True) if keep]
            assert real[-1] == eos and eos not in real[:-1]
            if side is PaddingSide.left:
                assert m[-1] == 1  # left padding: the last position is the real last token
            else:
                assert m[0] == 1
        assert (last_token_ids(ids, mask) == eos).all()
    # the long query was cut to 4 text tokens + EOS
    assert batch.query["attention_mask"][1].sum() == 5
    # rows are ordered [pos, neg] per query: the first query's positive is "the river city" + EOS
    first = batch.passages["input_ids"][0][batch.passages["attention_mask"][0].bool()].tolist()
    assert first == tok("the river city")["input_ids"] + [eos]


def test_bert_tokenizer_without_eos_rule_keeps_cls_and_sep(tiny_bert_dir):
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    cfg = RetrieverConfig(pooling=Pooling.cls, query_max_length=6, passage_max_length=6)
    batch = TrainCollator(tok, cfg)(EXAMPLES, [0, 0])
    assert "token_type_ids" not in batch.query
    ids = batch.query["input_ids"]
    assert (ids[:, 0] == tok.cls_token_id).all()
    assert (last_token_ids(ids, batch.query["attention_mask"]) == tok.sep_token_id).all()
    assert ids.shape[1] == 6


def test_check_eos_refuses_what_cannot_end_in_eos(tiny_decoder_dir, tiny_bert_dir):
    decoder = AutoTokenizer.from_pretrained(tiny_decoder_dir)
    with pytest.raises(UserError, match="does not append EOS.*eos: append"):
        check_eos(decoder, last_config(PaddingSide.left, EosHandling.tokenizer))
    with pytest.raises(UserError, match="does not append EOS"):
        TrainCollator(decoder, last_config(PaddingSide.left, EosHandling.tokenizer))
    bert = AutoTokenizer.from_pretrained(tiny_bert_dir)  # has no eos_token at all
    with pytest.raises(UserError, match="has no eos_token"):
        check_eos(bert, last_config(PaddingSide.right))
    check_eos(decoder, last_config(PaddingSide.right))  # append: fine


def test_tokenizer_mode_accepts_a_tokenizer_that_adds_eos(tiny_decoder_dir):
    from tokenizers import processors

    tok = AutoTokenizer.from_pretrained(tiny_decoder_dir)
    eos = tok.eos_token_id
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="$A <|endoftext|>", special_tokens=[("<|endoftext|>", eos)]
    )
    cfg = last_config(PaddingSide.right, EosHandling.tokenizer)
    batch = TrainCollator(tok, cfg)(EXAMPLES, [0, 1])
    assert (last_token_ids(batch.passages["input_ids"], batch.passages["attention_mask"]) == eos).all()
    assert (last_token_ids(batch.query["input_ids"], batch.query["attention_mask"]) == eos).all()
