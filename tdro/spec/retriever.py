"""One retriever's settings, written once: how texts become vectors in training, saving and evaluation.

`RetrieverConfig` is the only list of those settings: pooling, normalisation (hence the score, `cos` or
`dot`), query and passage max lengths, EOS handling, padding side, prompt style and fixed prefixes.
- A model card extends it (`tdro.spec.cards.ModelCard`: the same field names, flat in the YAML).
- A saved retriever folder holds exactly its dump (`tdro_retriever.json`); `load` validates it.
- `tdro eval` flags are overrides over its field names (`with_overrides`).

The EOS rule lives here alone: last-token pooling needs every sequence to end in EOS, so `eos` left
unstated follows the pooling (`append` for last_token, `none` otherwise) and a stated `eos: none` with
last_token is refused. Whether a tokenizer can deliver the EOS is checked where the tokenizer is
(`tdro.data.collator.check_eos`).

`LoadSettings` says how the weights are loaded (dtype, remote code). A card extends it too; a saved
folder does not record it (the user loading a folder chooses). Torch-free: the control plane reads these.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tdro.enums import DType, EosHandling, PaddingSide, Pooling, PromptStyle, Score
from tdro.errors import UserError
from tdro.spec.errors import validation_problems

RETRIEVER_CONFIG_FILE = "tdro_retriever.json"


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @classmethod
    def of(cls, other: BaseModel) -> Self:
        """This model's fields as `other` (e.g. a model card) states them; unstated fields stay unstated."""
        stated = other.model_fields_set & set(cls.model_fields)
        return cls.model_validate(other.model_dump(include=stated))

    def with_overrides(self, update: Mapping[str, Any]) -> Self:
        """A copy with `update` (field name -> value) applied and validated again, rules included.

        Fields the original left unstated stay unstated, so what follows from them (the EOS default)
        follows the new values. An unknown field name is a ValueError (a caller's bug, not the user's)."""
        unknown = sorted(set(update) - set(type(self).model_fields))
        if unknown:
            raise ValueError(f"{type(self).__name__} has no field {', '.join(unknown)}")
        copy = self.model_copy(update=dict(update))  # model_copy does not validate: validate below
        return type(self).model_validate(copy.model_dump(include=copy.model_fields_set))


class RetrieverConfig(_Settings):
    pooling: Pooling
    normalize: bool = True  # L2-normalise the vectors: score cos; otherwise dot
    query_max_length: int = Field(128, gt=0)
    passage_max_length: int = Field(512, gt=0)
    eos: EosHandling = EosHandling.none  # unstated: append for last_token pooling (see module docstring)
    padding_side: PaddingSide = PaddingSide.right
    prompt_style: PromptStyle = PromptStyle.e5
    # Fixed prefixes: always with prompt_style `prefix` (E5's "query: " / "passage: "); with `none`, or `e5`
    # when no instruction is given, as they are.
    query_prefix: str = ""
    passage_prefix: str = ""

    @model_validator(mode="after")
    def _eos_for_last_token(self) -> Self:
        if self.pooling is Pooling.last_token and self.eos is EosHandling.none:
            if "eos" in self.model_fields_set:
                raise ValueError("last_token pooling needs eos: append or tokenizer, not none")
            # Unstated: follows the pooling. The model is frozen and still being built, so set it directly.
            self.__dict__["eos"] = EosHandling.append
        return self

    @property
    def score(self) -> Score:
        return Score.cos if self.normalize else Score.dot

    def retriever_config(self) -> RetrieverConfig:
        """These settings alone (a card's other fields dropped)."""
        return RetrieverConfig.of(self)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / RETRIEVER_CONFIG_FILE
        path.write_text(self.retriever_config().model_dump_json(indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> RetrieverConfig:
        """The saved config of a folder, validated (the EOS rule included); a bad file is a UserError."""
        path = Path(folder) / RETRIEVER_CONFIG_FILE
        try:
            return RetrieverConfig.model_validate_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UserError(f"{path}: cannot be read ({exc})") from None
        except ValidationError as exc:
            raise UserError(*validation_problems(exc, RetrieverConfig, str(path))) from None

    @staticmethod
    def exists(folder: str | Path) -> bool:
        return (Path(folder) / RETRIEVER_CONFIG_FILE).is_file()


class LoadSettings(_Settings):
    dtype: DType = DType.float32  # weights are loaded in this dtype; mixed precision is separate
    trust_remote_code: bool = False


def format_query(query: str, instruction: str | None, config: RetrieverConfig) -> str:
    """The query text as the encoder sees it: e5 instruction or fixed prefix (style `prefix`: always)."""
    if config.prompt_style is PromptStyle.e5 and instruction:
        return f"Instruct: {instruction}\nQuery: {query}"
    return config.query_prefix + query


def format_passage(passage: str, instruction: str | None, config: RetrieverConfig) -> str:
    """Passage text; an instruction is given only for symmetric training datasets.

    Style `prefix` ignores the instruction's text; that one is given says the dataset is symmetric, whose
    passages E5 models take with the query prefix."""
    if config.prompt_style is PromptStyle.e5 and instruction:
        return f"Instruct: {instruction}\nQuery: {passage}"
    if config.prompt_style is PromptStyle.prefix and instruction:
        return config.query_prefix + passage
    return config.passage_prefix + passage
