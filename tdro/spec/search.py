"""How a benchmark is searched, written once: the spec's `evaluate` section and `tdro eval` share it.

`SearchConfig` holds the fields and their one default each; `tdro.spec.experiment.EvaluateSpec` extends
it with the benchmarks and metric names, `tdro.retrieval.evaluator.SearchSettings` with the parsed
metrics, and `tdro eval`'s `--top-k`, `--batch-size`, `--chunk-size` flags override these field names.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from tdro.spec.identity import RUN_ONLY


class SearchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    top_k: int = Field(1000, gt=0)  # documents retrieved per query
    ignore_identical_ids: bool = False  # for every benchmark; a card can turn it on for its own (ArguAna)
    batch_size: Annotated[int, RUN_ONLY] = Field(64, gt=0)  # texts per encoding batch
    chunk_size: Annotated[int, RUN_ONLY] = Field(100_000, gt=0)  # corpus vectors searched at a time
