"""The resolved stage file: everything a launched job needs, and nothing it must look up elsewhere.

The runner writes `<stage dir>/stage.json`; `accelerate launch -m tdro.stages.<kind> STAGE_FILE` reads
it. This is the only way the work plane learns about the control plane. Paths are absolute.

Stage outputs, all in `output_dir` (the runner launches into `runs/<kind>-<id12>.partial/` and renames it
to `runs/<kind>-<id12>/` once `result.json` exists and the job exited 0). Jobs never open the catalog.
What each kind writes (`result.json`, its files and parquet columns) is stated once, by the result models
in `tdro.spec.stage_result` (`TrainResult`, `OptimizeResult`, `EvaluateResult`).
A job exits 0 on success, 2 on a `UserError` (one line on stderr), anything else on a bug.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tdro.spec.cards import BenchmarkCard, DatasetCard, ModelCard
from tdro.spec.experiment import (
    DataSpec,
    DroSpec,
    EvaluateSpec,
    ResourcesSpec,
    TrackingSpec,
    TrainSpec,
    TransferSpec,
)

STAGE_FILE = "stage.json"
RESULT_FILE = "result.json"


class Mixture(BaseModel):
    """Sampling weights of a training stage: explicit, or derived from a stage-1 weights file."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float] | None = None  # dataset name -> weight (need not sum to 1)
    weights_file: str | None = None  # a stage-1 `weights.json`
    transfer: TransferSpec | None = None


class _StageFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage_id: str
    experiment: str
    seed: int
    output_dir: str
    model: ModelCard  # the base model (for evaluate: the card of the model under test, if any)
    resources: ResourcesSpec = ResourcesSpec()
    tracking: TrackingSpec = TrackingSpec(mode="disabled")
    tracking_config: dict = Field(default_factory=dict)  # the resolved spec, for W&B config

    @property
    def output(self) -> Path:
        return Path(self.output_dir)

    def write(self, path: str | Path | None = None) -> Path:
        target = Path(path) if path else self.output / STAGE_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.model_dump_json(indent=2) + "\n")
        return target


class TrainStageFile(_StageFile):
    kind: Literal["reference", "train"]
    datasets: list[DatasetCard]
    mixture: Mixture
    train: TrainSpec
    data: DataSpec = DataSpec()


class OptimizeStageFile(_StageFile):
    kind: Literal["optimize"] = "optimize"
    datasets: list[DatasetCard]
    initial_weights: dict[str, float]
    reference_model_dir: str | None  # stage-0 model folder; None only for measure `loss`
    dro: DroSpec
    data: DataSpec = DataSpec()


class EvaluateStageFile(_StageFile):
    kind: Literal["evaluate"] = "evaluate"
    model_dir: str  # a retriever folder (tdro-saved, or plain HF / sentence-transformers)
    benchmarks: list[BenchmarkCard]
    evaluate: EvaluateSpec
    cache_dir: str | None = None  # embedding cache shared across stages


StageFile = Annotated[
    TrainStageFile | OptimizeStageFile | EvaluateStageFile, Field(discriminator="kind")
]


def read_stage_file(path: str | Path) -> TrainStageFile | OptimizeStageFile | EvaluateStageFile:
    from pydantic import TypeAdapter

    return TypeAdapter(StageFile).validate_json(Path(path).read_text())
