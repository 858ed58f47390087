"""What a finished stage leaves in its folder: one pydantic model per stage kind, the only statement of it.

A job writes `<output_dir>/result.json` with `<Kind>Result(...).write(folder)` (atomic: temp name, then
rename) as its last act; the runner's ingest reads it back with `read_result(folder)` (or
`<Kind>Result.read(folder)`). The file names and the parquet column tuples of each kind are class
constants here, used by the stage that writes them, by the ingest that reads them, and checked against
the catalog's DDL by a test. Paths inside a result are relative to the stage folder.

- `TrainResult` (kinds `reference`, `train`): `model/` (a retriever folder), `metrics.parquet`
  (`METRIC_COLUMNS`: one row per optimizer step), the mixture used and the datasets read.
- `OptimizeResult` (`optimize`): `weights.json` (`tdro.weights_file.WeightsFile`), `trajectory.parquet`
  (`TRAJECTORY_COLUMNS`: one row per alpha update and dataset), alpha's diagnostics.
- `EvaluateResult` (`evaluate`): one `BenchmarkRecord` per benchmark (any kind);
  `per_query/<benchmark>.parquet` (retrieval; answer_recall with query ids `<language>/<id>`).
- `HoldoutResult` (`holdout`): `train.jsonl` (the pairs left to train on) and `test/` (a BEIR folder: the
  held-out queries, their qrels and a corpus of the dataset's passages).
- `MineResult` (`mine`): `groups.jsonl` (query groups with mined negatives), `candidates.parquet`
  (`CANDIDATE_COLUMNS`: each query's ranked top-k doc ids and scores) and the counts of what was dropped.
- `DedupResult` (`dedup`): `groups.jsonl` (the rows kept, verbatim), `removed.jsonl` (one `DedupMatch`
  per removed row: the training query and the test query it matched).
Torch-free: the control plane imports it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from tdro.enums import BenchmarkKind, Measure, RatioMode
from tdro.spec.stage_file import RESULT_FILE
from tdro.weights_file import WEIGHTS_FILE

R = TypeVar("R", bound="_StageResult")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetUse(_Record):
    """A training dataset as the job read it."""

    name: str
    rows: int
    fingerprint: str
    skipped_lines: int


class _StageResult(_Record):
    FILE: ClassVar[str] = RESULT_FILE

    kind: str
    stage_id: str
    status: Literal["complete"] = "complete"
    wall_seconds: float

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / self.FILE
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls: type[R], folder: str | Path) -> R:
        return cls.model_validate_json((Path(folder) / cls.FILE).read_text())


class TrainResult(_StageResult):
    MODEL_DIR: ClassVar[str] = "model"
    METRICS_FILE: ClassVar[str] = "metrics.parquet"
    METRIC_COLUMNS: ClassVar[tuple[str, ...]] = ("step", "loss", "lr", "dataset", "grad_norm", "seconds")
    # re-mining (train.remine): one row per check and re-mined dataset (tdro.data.remine.CheckCount)
    REMINING_FILE: ClassVar[str] = "remining.parquet"
    REMINING_COLUMNS: ClassVar[tuple[str, ...]] = (
        "step", "dataset", "groups_checked", "groups_remined", "exhausted",
    )

    kind: Literal["reference", "train"]
    steps: int
    final_loss: float | None
    model_dir: str = MODEL_DIR
    metrics_file: str = METRICS_FILE
    resumed_from_step: int | None = None
    num_processes: int = 1
    mixture: dict[str, float]  # dataset -> sampling weight (normalised)
    datasets: list[DatasetUse]
    remining_file: str | None = None  # REMINING_FILE when the stage re-mined


class OptimizeResult(_StageResult):
    WEIGHTS_FILE: ClassVar[str] = WEIGHTS_FILE
    TRAJECTORY_FILE: ClassVar[str] = "trajectory.parquet"
    TRAJECTORY_COLUMNS: ClassVar[tuple[str, ...]] = (
        "step", "dataset", "alpha", "alpha_mean", "alpha_ema", "group_measure", "proxy_loss", "ref_loss",
        "samples",
    )

    kind: Literal["optimize"] = "optimize"
    steps: int
    weights_file: str = WEIGHTS_FILE
    trajectory_file: str = TRAJECTORY_FILE
    measure: Measure
    ratio: RatioMode
    ref_floor_batch: int | None = None
    diagnostics: dict[str, Any]  # `tdro.dro.Diagnostics.model_dump()` (that module needs torch)
    warnings: list[str] = Field(default_factory=list)
    final_loss: float | None
    seconds_per_step: float | None = None  # mean over steps after the first (warm-up)
    median_seconds_per_step: float | None = None
    resumed_from_step: int | None = None
    num_processes: int = 1
    datasets: list[DatasetUse]


class BenchmarkRecord(_Record):
    """One benchmark's scores. `metrics` is the benchmark's score: for `answer_recall` the mean over its
    languages, each language's own in `per_language`. `num_queries` counts STS pairs for `sts` (and
    `num_docs` is 0), and all languages' queries for `answer_recall`."""

    benchmark: str
    kind: BenchmarkKind = BenchmarkKind.retrieval
    benchmark_group: str | None = None  # the card's `group`, what averages are taken over
    language: str | None = None  # the card's; None for answer_recall (its languages: `per_language`)
    split: str
    num_queries: int
    num_docs: int
    top_k: int
    ignore_identical_ids: bool
    metrics: dict[str, float]  # "ndcg@10" -> value
    per_language: dict[str, dict[str, float]] = Field(default_factory=dict)  # language -> metrics


class EvaluateResult(_StageResult):
    PER_QUERY_FOLDER: ClassVar[str] = "per_query"

    kind: Literal["evaluate"] = "evaluate"
    model_dir: str
    benchmarks: list[BenchmarkRecord]
    per_query: dict[str, str] = Field(default_factory=dict)  # benchmark -> parquet file

    @classmethod
    def per_query_file(cls, benchmark: str) -> str:
        return f"{cls.PER_QUERY_FOLDER}/{benchmark}.parquet"


class HoldoutResult(_StageResult):
    """A pairs dataset split in two: training pairs, and a held-out BEIR folder (its `split` is test)."""

    TRAIN_FILE: ClassVar[str] = "train.jsonl"  # pairs lines `{"query", "positive", "title"?}`
    TEST_DIR: ClassVar[str] = "test"  # corpus.jsonl, queries.jsonl, qrels/test.tsv
    TEST_SPLIT: ClassVar[str] = "test"

    kind: Literal["holdout"] = "holdout"
    dataset: str
    benchmark: str  # the held-out benchmark's name
    rows_in: int  # rows read from the source
    rows_out: int  # training pairs written
    empty_dropped: int  # rows without a non-empty query or positive
    test_queries: int
    test_qrels: int
    test_corpus: int
    train_queries: int  # distinct training queries written
    unused_queries: int  # distinct queries neither held out nor trained on (over `train_queries`)

    @staticmethod
    def benchmark_name(dataset: str) -> str:
        return f"heldout-{dataset}"


class MineResult(_StageResult):
    """Mined query groups (the training format) and each query's ranked candidates."""

    DATA_FILE: ClassVar[str] = "groups.jsonl"
    CANDIDATES_FILE: ClassVar[str] = "candidates.parquet"
    CANDIDATE_COLUMNS: ClassVar[tuple[str, ...]] = ("query_id", "doc_ids", "scores")

    kind: Literal["mine"] = "mine"
    dataset: str
    data_file: str = DATA_FILE
    candidates_file: str = CANDIDATES_FILE
    rows_in: int  # rows read from the source
    rows_out: int  # query groups written
    corpus_size: int
    empty_dropped: int  # rows without a non-empty query or positive
    no_candidates_dropped: int  # queries whose candidate ranks held nothing but positives
    short_groups: int  # queries kept with fewer negatives than asked
    negatives_total: int
    false_negatives_removed: int  # candidates over the false-negative margin
    num_processes: int = 1


class DedupMatch(_Record):
    """A removed training row and the test query it matched."""

    query_id: str
    query: str
    benchmark: str
    test_query_id: str
    test_query: str
    distance: int


class DedupResult(_StageResult):
    """Query groups without the rows whose query matches a benchmark query; the removed rows apart."""

    DATA_FILE: ClassVar[str] = "groups.jsonl"
    REMOVED_FILE: ClassVar[str] = "removed.jsonl"  # one DedupMatch per line

    kind: Literal["dedup"] = "dedup"
    dataset: str
    data_file: str = DATA_FILE
    removed_file: str = REMOVED_FILE
    rows_in: int
    rows_out: int
    removed: int
    test_queries: int
    benchmarks: list[str]


_Results = TrainResult | OptimizeResult | EvaluateResult | HoldoutResult | MineResult | DedupResult
StageResult = Annotated[_Results, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[_Results] = TypeAdapter(StageResult)


def read_result(folder: str | Path) -> _Results:
    """The result of any stage kind; raises ValueError (pydantic's) when the file breaks the contract."""
    return _ADAPTER.validate_python(json.loads((Path(folder) / RESULT_FILE).read_text()))
