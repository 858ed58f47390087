"""Pooling of token states into one vector per sequence: last token, mean, or CLS.

Correct for right and left padding alike: the last token is found from the attention mask, not from
the sequence end.
"""

from __future__ import annotations

import torch

from tdro.enums import Pooling


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended position of each row (works for left, right or no padding)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(dim=1)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """hidden [B, T, H], attention_mask [B, T] -> [B, H]."""
    if pooling is Pooling.last_token:
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, last_token_index(attention_mask)]
    if pooling is Pooling.cls:
        first = attention_mask.long().argmax(dim=1)  # first attended position (left padding too)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, first]
    if pooling is Pooling.mean:
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    raise ValueError(f"unknown pooling {pooling}")
