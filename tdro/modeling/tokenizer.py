"""The pad-token fallback, written once: decoders often lack a pad token, and EOS serves.

Padding positions are masked by the attention mask, so which token fills them does not matter; a
tokenizer with neither a pad nor an EOS token cannot pad and is refused. No torch here.
"""

from __future__ import annotations

from tdro.errors import UserError


def tokenizer_name(tokenizer) -> str:
    return getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__


def ensure_pad_token(tokenizer) -> None:
    """Give `tokenizer` its EOS token as pad token when it has none (in place; idempotent)."""
    if tokenizer.pad_token is not None:
        return
    if tokenizer.eos_token is None:
        raise UserError(f"tokenizer {tokenizer_name(tokenizer)} has neither a pad_token nor an eos_token")
    tokenizer.pad_token = tokenizer.eos_token
