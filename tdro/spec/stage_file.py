"""The resolved stage file: everything a launched job needs, and nothing it must look up elsewhere.

The runner writes `<stage dir>/stage.json`; `accelerate launch -m tdro.stages.<kind> STAGE_FILE` reads
it. This is the only way the work plane learns about the control plane. Paths are absolute.

The stage file is also the stage's identity: `tdro.spec.identity.stage_id(file)` hashes it, minus the
fields marked run-only here (`Annotated[..., RUN_ONLY]`). Edges of the stage graph are `Upstream` values
inside the file (the stage-0 model of stage 1, the alpha file of stage 2, the model under evaluation):
their stage ids count, their paths do not. Input content enters as fingerprints (`dataset_fingerprints`,
`benchmark_fingerprints`, `model_weights`), which replace the paths and sources that are run-only.

Stage outputs, all in `output_dir` (the runner launches into `runs/<kind>-<id12>.partial/` and renames it
to `runs/<kind>-<id12>/` once `result.json` exists and the job exited 0). Jobs never open the catalog.
What each kind writes (`result.json`, its files and parquet columns) is stated once, by the result models
in `tdro.spec.stage_result` (`TrainResult`, `OptimizeResult`, `EvaluateResult`, `HoldoutResult`,
`MineResult`, `DedupResult`).
A job exits 0 on success, 2 on a `UserError` (one line on stderr), anything else on a bug.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from tdro.spec.cards import BenchmarkCard, DatasetCard, ModelCard
from tdro.spec.experiment import (
    DataSpec,
    DedupSpec,
    DroSpec,
    EvaluateSpec,
    HoldoutSpec,
    MineSpec,
    ResourcesSpec,
    TrackingSpec,
    TrainSpec,
    TransferSpec,
)
from tdro.spec.identity import RUN_ONLY, identity

STAGE_FILE = "stage.json"
RESULT_FILE = "result.json"
MODEL_DIR = "model"  # a training stage's retriever folder, inside its stage folder
CHECKPOINTS_DIR = "checkpoints"  # a training stage's resumable checkpoints, inside its stage folder


class Upstream(BaseModel):
    """A file or folder that another stage writes: an edge of the stage graph."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage_id: str
    path: Annotated[str, RUN_ONLY]  # absolute; where that stage's output lies on this machine


class Mixture(BaseModel):
    """Sampling weights of a training stage: explicit, or derived from stage 1's alpha file."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float] | None = None  # dataset name -> weight (need not sum to 1)
    alpha_file: Upstream | None = None  # a stage-1 `weights.json`
    transfer: TransferSpec | None = None

    @property
    def weights_file(self) -> str | None:
        return self.alpha_file.path if self.alpha_file else None


class _StageFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage_id: Annotated[str, RUN_ONLY] = ""  # filled in once the id is known (it is this file's hash)
    experiment: Annotated[str, RUN_ONLY]  # stages are shared across experiments
    seed: int
    output_dir: Annotated[str, RUN_ONLY] = ""
    model: ModelCard  # the base model (for evaluate: the card of the model under test, if any)
    model_weights: str | None = None  # what identifies the base model's weights (plan/fingerprint.py)
    resources: Annotated[ResourcesSpec, RUN_ONLY] = ResourcesSpec()
    tracking: Annotated[TrackingSpec, RUN_ONLY] = TrackingSpec(mode="disabled")
    tracking_config: Annotated[dict, RUN_ONLY] = Field(default_factory=dict)  # the resolved spec, for W&B

    @property
    def output(self) -> Path:
        return Path(self.output_dir)

    @property
    def upstream(self) -> list[Upstream]:
        """The stages this one reads, in field order."""
        return [value for value in _walk(self) if isinstance(value, Upstream)]

    def identity(self) -> dict:
        """Exactly what the stage id hashes."""
        return identity(self)

    def write(self, path: str | Path | None = None) -> Path:
        target = Path(path) if path else self.output / STAGE_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.model_dump_json(indent=2) + "\n")
        return target


class _TrainingStageFile(_StageFile):
    datasets: list[DatasetCard]  # a prepared dataset's card points at its prepared file (run-only path)
    dataset_fingerprints: dict[str, str] = Field(default_factory=dict)  # name -> tdro.data.files fingerprint
    # name -> the mine or dedup stage's query groups, for datasets prepared in the graph (their data is
    # that stage's output, so its id stands in for a fingerprint)
    prepared_data: dict[str, Upstream] = Field(default_factory=dict)
    data: DataSpec = DataSpec()

    def inert_fields(self) -> set[str]:
        return set() if self.prepared_data else {"prepared_data"}  # unprepared stages keep their ids


class TrainStageFile(_TrainingStageFile):
    kind: Literal["reference", "train"]
    mixture: Mixture
    train: TrainSpec
    # dataset -> its mine stage's candidates.parquet, for re-mining (`train.remine`); empty without it
    remine_sources: dict[str, Upstream] = Field(default_factory=dict)

    def inert_fields(self) -> set[str]:
        return super().inert_fields() | (set() if self.remine_sources else {"remine_sources"})


class OptimizeStageFile(_TrainingStageFile):
    kind: Literal["optimize"] = "optimize"
    initial_weights: dict[str, float]
    reference_model: Upstream | None  # the stage-0 model folder; None only for measure `loss`
    dro: DroSpec

    @property
    def reference_model_dir(self) -> str | None:
        return self.reference_model.path if self.reference_model else None


class _BenchmarkReader(_StageFile):
    benchmarks: list[BenchmarkCard]
    # name -> content hash; a held-out benchmark's is the id of the holdout stage that writes it
    benchmark_fingerprints: dict[str, str] = Field(default_factory=dict)
    # name -> the holdout stage's test folder, for benchmarks carved out in the graph (the card's path)
    benchmark_data: dict[str, Upstream] = Field(default_factory=dict)

    def inert_fields(self) -> set[str]:
        return set() if self.benchmark_data else {"benchmark_data"}  # stages without them keep their ids


class EvaluateStageFile(_BenchmarkReader):
    kind: Literal["evaluate"] = "evaluate"
    # a retriever folder (tdro-saved, or plain HF / sentence-transformers); None: the base model `model`
    model_under_test: Upstream | None
    evaluate: EvaluateSpec
    cache_dir: Annotated[str | None, RUN_ONLY] = None  # embedding cache shared across stages

    def inert_fields(self) -> set[str]:
        # nothing is drawn: the base model's evaluation is shared by every training seed (a trained
        # model's evaluation keeps the seed, as before, and differs by its model's id anyway)
        return super().inert_fields() | ({"seed"} if self.model_under_test is None else set())


class HoldoutStageFile(_StageFile):
    """One pairs dataset split into training pairs and a held-out retrieval benchmark; no model."""

    kind: Literal["holdout"] = "holdout"
    model: ModelCard | None = None  # type: ignore[assignment]
    dataset: DatasetCard
    dataset_fingerprint: str
    holdout: HoldoutSpec

    def inert_fields(self) -> set[str]:
        return {"seed"}  # the split has its own seed, so every training seed shares it


class MineStageFile(_StageFile):
    """Hard negatives for one dataset; `model` is the retriever that ranks the corpus."""

    kind: Literal["mine"] = "mine"
    dataset: DatasetCard  # source pairs or beir (or groups, re-mined on request)
    dataset_fingerprint: str | None  # of the card's own data when `data` is None
    data: Upstream | None = None  # the holdout stage's training pairs; None: the card's own data
    mine: MineSpec
    cache_dir: Annotated[str | None, RUN_ONLY] = None  # the embedding cache shared with evaluate stages

    def inert_fields(self) -> set[str]:
        return set() if self.data else {"data"}

    @property
    def data_path(self) -> Path:
        return Path(self.data.path) if self.data else self.dataset.resolved_path


class DedupStageFile(_BenchmarkReader):
    """One dataset's training queries against benchmark queries; no model (mining's counts via `groups`)."""

    kind: Literal["dedup"] = "dedup"
    model: ModelCard | None = None  # type: ignore[assignment]
    dataset: DatasetCard
    groups: Upstream | None = None  # the mine stage's query groups; None: the card's own query groups
    dataset_fingerprint: str | None = None  # of the card's own data when `groups` is None
    dedup: DedupSpec

    def inert_fields(self) -> set[str]:
        return {"seed", *super().inert_fields()}  # nothing is drawn

    @property
    def groups_path(self) -> str:
        return self.groups.path if self.groups else str(self.dataset.resolved_path)


StageFileT = (TrainStageFile | OptimizeStageFile | EvaluateStageFile | HoldoutStageFile | MineStageFile
              | DedupStageFile)
StageFile = Annotated[StageFileT, Field(discriminator="kind")]


def read_stage_file(path: str | Path) -> StageFileT:
    return TypeAdapter(StageFile).validate_json(Path(path).read_text())


def _walk(value: object):
    if isinstance(value, BaseModel):
        yield value
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
