"""A dense retriever: a Hugging Face model (encoder, decoder, or T5's encoder) + pooling + optional L2 norm.

Query and passage towers are tied (one model). `forward(input_ids, attention_mask, **extra)` returns one
vector per sequence (float32; L2-normalised when the config says so, i.e. score `cos`; otherwise `dot`).
The temperature is applied in the loss, not here.

- `Encoder.from_pretrained(path, config=None, *, dtype, trust_remote_code)`: a folder or hub id; `config`
  defaults to the folder's tdro_retriever.json. A model that cannot be loaded is a `UserError`.
  Encoder-decoder checkpoints of the T5 family (t5, mt5, umt5: GTR) load as their encoder stack alone
  (`T5EncoderModel`, ...); any other encoder-decoder model type is a `UserError`.
- `Encoder.from_card(card)`: the same from a registry model card (source, dtype, pooling, gradient
  checkpointing).
- `save_pretrained(folder, state_dict=None)`: HF weights + tokenizer + tdro_retriever.json +
  sentence-transformers module files, so `transformers.AutoModel` (T5 family: `T5EncoderModel`, ...) and
  `sentence_transformers.SentenceTransformer` load it directly (`state_dict`: the gathered full state of a
  sharded model, FSDP/DeepSpeed).

With left padding, position ids are counted from each sequence's first real token, so models with
absolute position embeddings give the same vectors for left and right padding (T5's relative position
biases need none). Only the extras a model's forward accepts are passed (T5 takes no token_type_ids).

Parameters that never receive a gradient in retrieval (BERT's pooler head) are frozen, so DDP needs no
`find_unused_parameters`; they are still saved.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tdro.enums import PaddingSide
from tdro.errors import UserError
from tdro.modeling.pooling import pool
from tdro.modeling.st_files import write_st_files
from tdro.modeling.tokenizer import ensure_pad_token
from tdro.spec.cards import ModelCard
from tdro.spec.retriever import RetrieverConfig

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_FORWARD_EXTRAS = ("token_type_ids", "position_ids")
# Encoder-decoder families whose encoder stack alone is the retriever (GTR), by config.model_type. The
# dedicated classes save a folder that loads as an encoder again (a saved T5EncoderModel's config says
# is_encoder_decoder false, so the model type decides, not that flag).
_ENCODER_ONLY = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _model_class(hf_config: Any, path: str | Path) -> Any:
    """The transformers class that loads the retriever's model: AutoModel, or a T5-family encoder."""
    import transformers

    model_type = getattr(hf_config, "model_type", "")
    if model_type in _ENCODER_ONLY:
        return getattr(transformers, _ENCODER_ONLY[model_type])
    if getattr(hf_config, "is_encoder_decoder", False):
        supported = ", ".join(_ENCODER_ONLY)
        raise UserError(
            f"model {path}: encoder-decoder model type {model_type!r} is not supported (tdro loads the "
            f"encoder alone only for {supported})"
        )
    return transformers.AutoModel


class Encoder(nn.Module):
    def __init__(self, model: nn.Module, tokenizer, config: RetrieverConfig) -> None:
        super().__init__()
        self.model: Any = model  # a transformers PreTrainedModel (nn.Module's getattr types it as a union)
        self.tokenizer = tokenizer
        self.config = config
        params = inspect.signature(model.forward).parameters
        open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        # A forward without **kwargs rejects unknown arguments: T5's encoder takes no token_type_ids.
        self._extras = tuple(k for k in _FORWARD_EXTRAS if k in params or open_kwargs)
        self._takes_positions = "position_ids" in params
        unused = getattr(model, "pooler", None)  # BERT-style pooler: not part of the retrieval graph
        if isinstance(unused, nn.Module):
            unused.requires_grad_(False)

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
        from transformers import AutoConfig, AutoTokenizer

        if config is None:
            if not RetrieverConfig.exists(path):
                raise UserError(f"{path}: no tdro_retriever.json; give pooling and normalisation explicitly")
            config = RetrieverConfig.load(path)
        if Path(path).is_dir() and not (Path(path) / "config.json").is_file():
            raise UserError(f"model {path}: cannot be loaded (no config.json in the folder)")
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
            model_class = _model_class(
                AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code), path
            )
            model = model_class.from_pretrained(
                str(path), dtype=_DTYPES[str(dtype)], trust_remote_code=trust_remote_code
            )
        except UserError:
            raise
        except Exception as exc:  # whatever transformers raises, the fix is the user's: path, files, access
            raise UserError(f"model {path}: cannot be loaded ({_first_line(exc)})") from None
        tokenizer.padding_side = config.padding_side.value
        ensure_pad_token(tokenizer)
        return cls(model, tokenizer, config)

    @classmethod
    def from_card(cls, card: ModelCard, *, path: str | None = None) -> Encoder:
        """The base model of a card (`path` overrides the card's source, e.g. a resolved local copy)."""
        from tdro.modeling.source import resolve_model_path

        source = path or resolve_model_path(card.source)
        encoder = cls.from_pretrained(
            source, card.retriever_config(), dtype=card.dtype.value, trust_remote_code=card.trust_remote_code
        )
        if card.gradient_checkpointing:
            encoder.enable_gradient_checkpointing()
        return encoder

    def enable_gradient_checkpointing(self) -> None:
        if not getattr(self.model, "supports_gradient_checkpointing", False):
            raise UserError(f"model {type(self.model).__name__}: does not support gradient checkpointing")
        self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor
    ) -> torch.Tensor:
        kwargs = {k: v for k, v in extra.items() if k in self._extras}
        left = self.config.padding_side is PaddingSide.left
        if left and "position_ids" not in kwargs and self._takes_positions:
            # Left padding would shift absolute positions (BERT-style embeddings); count from the first token.
            kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        reps = pool(hidden, attention_mask, self.config.pooling).float()
        if self.config.normalize:
            reps = F.normalize(reps, dim=-1)
        return reps

    def save_pretrained(self, folder: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Write the retriever folder (the caller makes it atomic: write to a temp name, then rename).

        `state_dict`: this Encoder's full state dict when the live one is sharded (FSDP, DeepSpeed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        inner = None if state_dict is None else {
            k.removeprefix("model."): v for k, v in state_dict.items() if k.startswith("model.")
        }
        self.model.save_pretrained(folder, state_dict=inner, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        self.config.save(folder)
        write_st_files(folder, self.config, self.dim)
        return folder
