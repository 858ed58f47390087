"""The experiment spec: one YAML file states a whole tDRO experiment.

Defaults follow the reference implementation (s0/s1/s2 scripts of tdro-llm/tdro): 1000 steps, 2048
query groups per optimizer step, lr 1e-4 cosine with 100 warm-up steps and min-lr ratio 0.1, temperature
0.002, weight decay 0.1; stage 1 with 8 passages per query, only hard negatives, eta 0.02, grad-norm
clipping at 1, re-centring on every update, EMA 0.1.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tdro.enums import (
    Backend,
    Measure,
    MixedPrecision,
    RatioMode,
    SampleOrder,
    Schedule,
    TrackingMode,
    TransferMode,
    WeightSource,
)
from tdro.spec.cards import ModelCard
from tdro.spec.identity import RUN_ONLY
from tdro.spec.search import SearchConfig

METRIC_PATTERN = re.compile(r"^(ndcg|recall|mrr|map|precision)@(\d+)$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class OptimizerSpec(_Section):
    """Optimizer and schedule of a retriever's training (shared by stages 0, 1 and 2)."""

    learning_rate: float = Field(1e-4, gt=0)
    warmup_steps: int = Field(100, ge=0)
    schedule: Schedule = Schedule.cosine
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.1, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)  # None: no clipping


class LossSpec(_Section):
    """The contrastive loss of a training stage (built by `ContrastiveLoss.from_spec` in tdro.modeling)."""

    temperature: float = Field(0.002, gt=0)
    only_hard_negatives: bool = False  # each query against its own passages only (no in-batch negatives)
    cross_device_negatives: bool = True  # gather queries and passages over processes
    bidirectional: bool = False  # GTR-style query->passage plus passage->query
    matryoshka_dims: list[int] | None = None

    @model_validator(mode="after")
    def _compatible(self) -> LossSpec:
        if self.bidirectional and self.only_hard_negatives:
            raise ValueError("bidirectional needs in-batch queries; it excludes only_hard_negatives")
        return self


class DroLossSpec(LossSpec):
    """Stage 1's proxy loss: the same loss, per sample, each query against its own hard negatives by default.

    Stage 1 gathers the per-sample losses itself (the group measure is taken over the global micro-batch),
    so the loss never gathers representations.
    """

    only_hard_negatives: bool = True
    cross_device_negatives: bool = False

    @model_validator(mode="after")
    def _local(self) -> DroLossSpec:
        if self.cross_device_negatives:
            raise ValueError("cross_device_negatives: stage 1 gathers per-sample losses, not representations")
        return self


# Length-aware chunked forward (tdro/modeling/chunking.py): padded tokens per encoder call; None: the
# whole batch at once. It counts in stage ids: with dropout on, other chunks draw other dropout masks.
TOKEN_BUDGET = 16384  # 64 rows of 256 tokens, 256 of 64


def _split_into_micro_batches(spec: TrainSpec | DroSpec) -> None:
    if spec.batch_size % spec.gradient_accumulation:
        raise ValueError("batch_size must be divisible by gradient_accumulation")


class RemineSpec(_Section):
    """Dynamic hard-negative re-mining in stages 0 and 2 (Conan-Embedding; tdro.data.remine): every
    `every` steps, a group whose negatives' mean cosine fell so that `ratio * current < initial` and
    `current < max_score` gets the next slice of its mined candidates."""

    every: int = Field(100, gt=0)
    ratio: float = Field(1.15, gt=0)
    max_score: float = 0.8


class TrainSpec(OptimizerSpec):
    """Stages 0 (reference, uniform mixture) and 2 (transferred mixture)."""

    steps: int = Field(1000, gt=0)
    batch_size: int = Field(2048, gt=0)  # query groups per optimizer step, over all processes
    passages_per_query: int = Field(2, ge=1)  # 1 positive + hard negatives
    homogeneous_batches: bool = True
    # cross-GPU batch balance (Conan-Embedding): every dataset in every step, its loss summed with the
    # others'; the processes share the query groups and each draws its own hard negatives
    balanced_batches: bool = False
    gradient_accumulation: int = Field(1, ge=1)
    chunk_size: int | None = Field(None, gt=0)  # GradCache-style chunked encoding; None: whole batch
    token_budget: int | None = Field(TOKEN_BUDGET, gt=0)
    checkpoint_every: Annotated[int, RUN_ONLY] = Field(100, gt=0)
    loss: LossSpec = LossSpec()
    remine: RemineSpec | None = None  # None: the mined negatives are kept all along

    @model_validator(mode="after")
    def _divisible(self) -> TrainSpec:
        _split_into_micro_batches(self)
        return self

    @model_validator(mode="after")
    def _balanced(self) -> TrainSpec:
        if not self.balanced_batches:
            return self
        if self.gradient_accumulation != 1:
            raise ValueError("balanced_batches: every dataset is in one step; gradient_accumulation "
                             "must be 1")
        if self.passages_per_query < 2:
            raise ValueError("balanced_batches: each process draws its own hard negatives; "
                             "passages_per_query must be at least 2")
        if self.loss.bidirectional or self.loss.matryoshka_dims or self.loss.only_hard_negatives:
            raise ValueError("balanced_batches: the loss is InfoNCE over every process's negatives; "
                             "bidirectional, matryoshka_dims and only_hard_negatives do not apply")
        return self

    def inert_fields(self) -> set[str]:
        inert = {"remine"} if self.remine is None else set()  # stages without it keep their ids
        return inert | ({"homogeneous_batches"} if self.balanced_batches else {"balanced_batches"})


class DroSpec(OptimizerSpec):
    """Stage 1: the proxy model and the learned mixture weights alpha."""

    measure: Measure = Measure.loss_over_ref
    ratio: RatioMode = RatioMode.per_sample_l1
    # per_sample_l1's small-reference floor as it acts on a global micro-batch of this many samples
    # (the paper's is 512); None: on the actual micro-batch, as the reference code does.
    # See tdro/dro/measure.py.
    ref_floor_batch: int | None = Field(None, gt=0)
    # `independent`: stage 1 draws its own sequence of query groups; `as_reference` replays stage 0's (see
    # tdro/stages/optimize.py).
    sample_order: SampleOrder = SampleOrder.independent
    eta: float = Field(0.02, gt=0)
    steps: int = Field(1000, gt=0)
    batch_size: int = Field(2048, gt=0)
    gradient_accumulation: int = Field(4, ge=1)
    passages_per_query: int = Field(8, ge=1)
    max_alpha_grad_norm: float | None = Field(1.0, gt=0)  # clipping of the alpha gradient
    normalize_on_update: bool = True
    ema: float = Field(0.1, gt=0, le=1)
    token_budget: int | None = Field(TOKEN_BUDGET, gt=0)  # the proxy's and the frozen reference's forward
    checkpoint_every: Annotated[int, RUN_ONLY] = Field(100, gt=0)
    loss: DroLossSpec = DroLossSpec()

    @model_validator(mode="after")
    def _divisible(self) -> DroSpec:
        _split_into_micro_batches(self)
        return self

    def inert_fields(self) -> set[str]:
        """Fields that cannot act under the other values: left out of stage ids (tdro.spec.identity)."""
        if self.measure is Measure.loss_over_ref and self.ratio is RatioMode.per_sample_l1:
            return set()
        return {"ref_floor_batch"}  # the floor acts only on the per-sample ratio


class TransferSpec(_Section):
    mode: TransferMode
    percent: float | None = None
    source: WeightSource = WeightSource.curr

    @model_validator(mode="after")
    def _percent(self) -> TransferSpec:
        if self.mode is TransferMode.top_percent:
            if self.percent is None:
                raise ValueError("top_percent needs a percent")
            if not 0 < self.percent <= 100:
                raise ValueError(f"percent must be in (0, 100], got {self.percent}")
        elif self.percent is not None:
            raise ValueError(f"percent is only used by top_percent, not {self.mode.value}")
        return self

    @property
    def label(self) -> str:
        """How the catalog names this transfer: top_percent_70, reweight, uniform."""
        if self.mode is TransferMode.top_percent:
            assert self.percent is not None
            pct = int(self.percent) if float(self.percent).is_integer() else self.percent
            return f"top_percent_{pct}"
        return self.mode.value


class EvaluateSpec(_Section, SearchConfig):
    """The benchmarks and metrics, and how they are searched (SearchConfig's fields, flat)."""

    benchmarks: list[str] = Field(default_factory=list)  # benchmark card names
    # the base model is evaluated too (a `zero_shot` row in every results table); shapes the graph only
    zero_shot: Annotated[bool, RUN_ONLY] = True
    metrics: list[str] = Field(default_factory=lambda: ["ndcg@10", "recall@100"])

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, metrics: list[str]) -> list[str]:
        for m in metrics:
            if not METRIC_PATTERN.match(m):
                raise ValueError(f"unknown metric {m!r}; use e.g. ndcg@10, recall@100, mrr@10, map@100")
        return metrics


class ArmSpec(_Section):
    name: str | None = None
    set: dict[str, Any]  # dotted key -> value


class SweepSpec(_Section):
    """Arms = cartesian product of `grid` x the zipped lists of `zip`, plus each explicit arm."""

    grid: dict[str, list[Any]] = Field(default_factory=dict)
    zip: dict[str, list[Any]] = Field(default_factory=dict)
    arms: list[ArmSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _zip_lengths(self) -> SweepSpec:
        lengths = {len(v) for v in self.zip.values()}
        if len(lengths) > 1:
            raise ValueError("all zip lists must have the same length")
        return self


class ResourcesSpec(_Section):
    processes: int = Field(1, ge=1)  # per machine
    machines: int = Field(1, ge=1)
    mixed_precision: MixedPrecision = MixedPrecision.bf16  # applied on GPUs only
    backend: Backend = Backend.ddp
    zero_stage: int = Field(2, ge=0, le=3)  # DeepSpeed only
    main_process_ip: str | None = None  # multi-machine; Slurm scripts fill it in
    main_process_port: int | None = None

    @property
    def world_size(self) -> int:
        return self.processes * self.machines


class TrackingSpec(_Section):
    mode: TrackingMode = TrackingMode.offline
    project: str = "tdro"
    entity: str | None = None


class OutputSpec(_Section):
    runs_dir: str = "runs"
    catalog: str = "catalog.duckdb"
    # a complete stage keeps its model and outputs; its training checkpoints are deleted unless this is on
    keep_checkpoints: bool = False


class DataSpec(_Section):
    skip_bad_lines: bool = False  # otherwise a malformed training line stops the stage


class MineSpec(_Section):
    """Hard-negative mining of one dataset (reference §6.1: candidates from ranks [2, 100) of the top 100,
    16 drawn at random with seed 42). Draws are seeded per query, so processes and threads do not matter."""

    depth: tuple[int, int] = (2, 100)  # candidate ranks [start, end) of the retriever's ranking
    top_k: int = Field(100, ge=1)  # ranking depth searched and kept beside the groups
    negatives: int = Field(16, ge=1)
    seed: int = 42
    # TopK-PercPos: drop candidates scoring above this fraction of the (lowest) positive's score
    false_negative_margin: float | None = Field(None, gt=0, le=1)
    batch_size: Annotated[int, RUN_ONLY] = Field(128, ge=1)
    chunk_size: Annotated[int, RUN_ONLY] = Field(100_000, ge=1)

    @model_validator(mode="after")
    def _depth(self) -> MineSpec:
        start, end = self.depth
        if not 0 <= start < end <= self.top_k:
            raise ValueError(f"depth [{start}, {end}) must satisfy 0 <= start < end <= top_k ({self.top_k})")
        return self


class DedupSpec(_Section):
    """Test-set deduplication (reference §6.2): SimHash 64-bit of each training query; a query within
    Hamming distance `max_distance` of any test query is removed."""

    enabled: bool = True
    max_distance: int = Field(2, ge=0, le=8)
    benchmarks: list[str] | None = None  # benchmark card names; None: every benchmark the arm evaluates


class HoldoutSpec(_Section):
    """A held-out test set carved out of each pairs dataset before anything else reads it.

    `queries` distinct queries (ranked by a seeded hash of their text, so the choice does not depend on
    row order) become a retrieval benchmark named `heldout-<dataset>`: those queries, their positives as
    qrels, and a corpus of the dataset's passages (their positives first, then others in hash order, up
    to `corpus`). Every row of a held-out query leaves the training data; the rest trains, cut to the
    first `train_queries` distinct queries in the same order when that is set (a CPU-sized run). Only
    queries with at most `max_positives` relevant passages are held out (a review title such as "Great"
    with hundreds of positives measures nothing)."""

    queries: int = Field(200, ge=1)
    max_positives: int | None = Field(None, ge=1)  # None: any query may be held out
    corpus: int | None = Field(None, ge=1)  # None: every distinct passage of the dataset
    train_queries: int | None = Field(None, ge=1)  # None: every query that is not held out
    seed: int = 0

    @model_validator(mode="after")
    def _corpus(self) -> HoldoutSpec:
        if self.corpus is not None and self.corpus < self.queries:
            raise ValueError(f"corpus ({self.corpus}) must hold at least the held-out queries "
                             f"({self.queries})")
        return self


class DatasetPrepareSpec(_Section):
    """Per-dataset overrides of the `prepare` section."""

    holdout: bool | None = None  # None: every pairs dataset when `prepare.holdout` is set
    mine: bool | None = None  # None: mine pairs and BEIR sources only; True: re-mine query groups too
    negatives: int | None = Field(None, ge=1)
    depth: tuple[int, int] | None = None
    false_negative_margin: float | None = Field(None, gt=0, le=1)
    dedup: bool | None = None


class PrepareSpec(_Section):
    """Data preparation before stage 0: `mine` per dataset that needs negatives, then `dedup`."""

    retriever: str | ModelCard | None = None  # model card name or inline card; needed when anything is mined
    holdout: HoldoutSpec | None = None  # None: no held-out test sets are carved out
    mine: MineSpec = MineSpec()
    dedup: DedupSpec = DedupSpec()
    datasets: dict[str, DatasetPrepareSpec] = Field(default_factory=dict)

    def mine_spec(self, dataset: str) -> MineSpec:
        """The mining parameters of `dataset`: the section's, with its overrides applied."""
        override = self.datasets.get(dataset)
        if override is None:
            return self.mine
        changes = override.model_dump(include={"negatives", "depth", "false_negative_margin"},
                                      exclude_none=True)
        return MineSpec.model_validate({**self.mine.model_dump(), **changes})

    def mines(self, dataset: str, has_negatives: bool) -> bool:
        override = self.datasets.get(dataset)
        if override is not None and override.mine is not None:
            return override.mine
        return not has_negatives

    def holds_out(self, dataset: str, is_pairs: bool) -> bool:
        override = self.datasets.get(dataset)
        if override is not None and override.holdout is not None:
            return override.holdout
        return self.holdout is not None and is_pairs

    def dedups(self, dataset: str) -> bool:
        override = self.datasets.get(dataset)
        if override is not None and override.dedup is not None:
            return override.dedup
        return self.dedup.enabled


class ExperimentSpec(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    seed: int = 42
    base_model: str | ModelCard  # a model card name or an inline card
    datasets: list[str] = Field(min_length=1)  # dataset card names
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    dro: DroSpec | None = DroSpec()  # None: no stage 1 and no stage 2, the uniform baseline only
    transfer: list[TransferSpec] = Field(
        default_factory=lambda: [TransferSpec(mode=TransferMode.top_percent, percent=70)]
    )
    evaluate: EvaluateSpec = EvaluateSpec()
    prepare: PrepareSpec | None = None  # mining and dedup before stage 0; None: datasets are used as they are
    sweep: SweepSpec | None = None
    resources: ResourcesSpec = ResourcesSpec()
    tracking: TrackingSpec = TrackingSpec()
    output: OutputSpec = OutputSpec()

    @model_validator(mode="after")
    def _transfer_needs_weights(self) -> ExperimentSpec:
        if self.dro is None and self.transfer:
            raise ValueError("transfer: without stage 1 (dro: null) there are no weights to transfer; "
                             "set transfer: [] (the uniform baseline is trained and evaluated anyway)")
        return self

    @field_validator("datasets")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"datasets listed twice: {', '.join(dup)}")
        return names
