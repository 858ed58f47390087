"""What a saved retriever needs to be used again without retyping a flag.

Written next to the Hugging Face weights as `tdro_retriever.json`; read by training (from the model
card) and by evaluation (from the saved folder). No torch here.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tdro.enums import EosHandling, PaddingSide, Pooling, PromptStyle

RETRIEVER_CONFIG_FILE = "tdro_retriever.json"


class RetrieverConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pooling: Pooling
    normalize: bool = True
    query_max_length: int = Field(128, gt=0)
    passage_max_length: int = Field(512, gt=0)
    eos: EosHandling = EosHandling.none
    padding_side: PaddingSide = PaddingSide.right
    prompt_style: PromptStyle = PromptStyle.none
    # Fixed prefixes, used when prompt_style is `none` (e.g. "query: " for E5-style models).
    query_prefix: str = ""
    passage_prefix: str = ""

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / RETRIEVER_CONFIG_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> RetrieverConfig:
        return cls.model_validate_json((Path(folder) / RETRIEVER_CONFIG_FILE).read_text())

    @staticmethod
    def exists(folder: str | Path) -> bool:
        return (Path(folder) / RETRIEVER_CONFIG_FILE).is_file()


def format_query(query: str, instruction: str | None, config: RetrieverConfig) -> str:
    """The query text as the encoder sees it: e5 instruction or fixed prefix."""
    if config.prompt_style is PromptStyle.e5 and instruction:
        return f"Instruct: {instruction}\nQuery: {query}"
    return config.query_prefix + query


def format_passage(passage: str, instruction: str | None, config: RetrieverConfig) -> str:
    """Passage text; an instruction is given only for symmetric training datasets."""
    if config.prompt_style is PromptStyle.e5 and instruction:
        return f"Instruct: {instruction}\nQuery: {passage}"
    return config.passage_prefix + passage
