"""A dense retriever: a Hugging Face model (encoder or decoder) + pooling + optional L2 normalisation.

Query and passage towers are tied (one model). `forward` takes tokenised input and returns one vector per
sequence. `save_pretrained` writes a folder that `transformers` loads directly and that records, in
`tdro_retriever.json`, everything needed to use it again (pooling, normalisation, prompts, max lengths),
so evaluation retypes no flag.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tdro.errors import UserError
from tdro.modeling.config import RetrieverConfig
from tdro.modeling.pooling import pool

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Encoder(nn.Module):
    def __init__(self, model: nn.Module, tokenizer, config: RetrieverConfig) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.config = config

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        config: RetrieverConfig | None = None,
        *,
        dtype: str = "float32",
        trust_remote_code: bool = False,
    ) -> Encoder:
        """Load a model folder or hub id; `config` defaults to the folder's tdro_retriever.json."""
        from transformers import AutoModel, AutoTokenizer

        if config is None:
            if not RetrieverConfig.exists(path):
                raise UserError(f"{path}: no tdro_retriever.json; give pooling and normalisation explicitly")
            config = RetrieverConfig.load(path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
            model = AutoModel.from_pretrained(
                str(path), dtype=_DTYPES[str(dtype)], trust_remote_code=trust_remote_code
            )
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"model {path}: cannot be loaded ({first})") from None
        tokenizer.padding_side = config.padding_side.value
        if tokenizer.pad_token is None:
            # Decoders often lack a pad token; padding positions are masked, so EOS serves.
            if tokenizer.eos_token is None:
                raise UserError(f"model {path}: tokenizer has neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token
        return cls(model, tokenizer, config)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        kwargs = {k: v for k, v in extra.items() if k == "token_type_ids"}
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        reps = pool(hidden, attention_mask, self.config.pooling)
        if self.config.normalize:
            reps = F.normalize(reps.float(), dim=-1)
        return reps

    def save_pretrained(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        self.config.save(folder)
        return folder
