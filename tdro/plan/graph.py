"""The stage graph of an experiment: per arm, reference -> optimize -> train (one per transfer), and an
evaluate stage for the reference model and every trained model; equal stages are shared between arms.

With `prepare.holdout`, each pairs dataset first gets a `holdout` stage that carves a held-out test set
out of it (`tdro.data.holdout`): mining reads the pairs left, dedup removes training queries that match
any held-out query (of any dataset), and every evaluate stage adds the held-out benchmarks
(`heldout-<dataset>`, group `heldout`; their fingerprint is the holdout stage's id, their folder an
`Upstream` in `benchmark_data`). With `evaluate.zero_shot` (on by default) the base model itself is
evaluated too, under the transfer label `zero_shot`.

With a `prepare` section, each dataset that needs negatives (a pairs or BEIR source, or any dataset
whose override asks) gets a `mine` stage (retriever `prepare.retriever`), and each dataset a `dedup`
stage against the benchmarks (`prepare.dedup.benchmarks`, else the arm's); the training stages then read
the last of them (`prepared_data`, an `Upstream`; the card's path points at its groups file). Dedup does
not depend on the retriever, mining not on the benchmarks, so each changes only what follows it.
A pairs or BEIR source without a `prepare` section is refused: it has no negatives to train on.

Each stage is built once, as the stage file its job receives; its id is that file's hash
(`tdro.spec.identity`), and its inputs are the `Upstream` references inside it. So what is hashed and
what runs cannot drift apart, and a new stage-file field counts toward the id unless the model marks it
run-only.

A `uniform` transfer trains exactly the reference configuration, so it reuses the reference stage (and
its evaluation) instead of a duplicate; the catalog links it to the arm under transfer `uniform`.
A stage is `cached` iff its complete folder `<runs_dir>/<kind>-<id12>/result.json` exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from tdro.catalog.ingest import ArmRecord, DatasetRecord, StageLink
from tdro.catalog.schema import BASELINE, ZERO_SHOT
from tdro.data.demo import write_demo_collection
from tdro.data.files import FINGERPRINT_CACHE_FILE, FingerprintCache
from tdro.enums import DataSource, StageKind, TransferMode
from tdro.errors import UserError
from tdro.plan.fingerprint import benchmark_fingerprint, dataset_fingerprint, model_identity
from tdro.spec.cards import BenchmarkCard, DatasetCard, ModelCard
from tdro.spec.experiment import HoldoutSpec, PrepareSpec, ResourcesSpec, TrackingSpec
from tdro.spec.identity import stage_id
from tdro.spec.load import Arm, Experiment
from tdro.spec.registry import Registry
from tdro.spec.stage_file import (
    MODEL_DIR,
    RESULT_FILE,
    DedupStageFile,
    EvaluateStageFile,
    HoldoutStageFile,
    MineStageFile,
    Mixture,
    OptimizeStageFile,
    StageFileT,
    TrainStageFile,
    Upstream,
)
from tdro.spec.stage_result import DedupResult, HoldoutResult, MineResult
from tdro.weights_file import WEIGHTS_FILE

HELDOUT_GROUP = "heldout"  # the benchmark group of the held-out sets that holdout stages carve out
EMBEDDING_CACHE = ".embedding_cache"


class Status(StrEnum):
    cached = "cached"
    run = "run"


@dataclass
class Stage:
    stage_file: StageFileT  # what the job receives; its id and output_dir (the partial folder) filled in
    runs_dir: Path
    arms: list[str] = field(default_factory=list)
    links: list[StageLink] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.stage_file.stage_id

    @property
    def kind(self) -> StageKind:
        return StageKind(self.stage_file.kind)

    @property
    def inputs(self) -> list[str]:
        """The ids of the stages this one reads."""
        return [upstream.stage_id for upstream in self.stage_file.upstream]

    @property
    def identity(self) -> dict[str, Any]:
        """Exactly what was hashed into the id."""
        return self.stage_file.identity()

    @property
    def resources(self) -> ResourcesSpec:
        return self.stage_file.resources

    @property
    def dataset_fingerprints(self) -> dict[str, str]:
        return dict(getattr(self.stage_file, "dataset_fingerprints", {}))

    @property
    def id12(self) -> str:
        return self.id[:12]

    @property
    def name(self) -> str:
        return f"{self.kind.value}-{self.id12}"

    @property
    def folder(self) -> Path:
        return self.runs_dir / self.name

    @property
    def partial(self) -> Path:
        return self.runs_dir / f"{self.name}.partial"

    @property
    def status(self) -> Status:
        return Status.cached if (self.folder / RESULT_FILE).is_file() else Status.run

    def output(self, name: str) -> Upstream:
        """A reference to file or folder `name` of this stage's output, for a downstream stage file."""
        return Upstream(stage_id=self.id, path=str(self.folder / name))

    def add_link(self, link: StageLink) -> None:
        if link.arm not in self.arms:
            self.arms.append(link.arm)
        if link not in self.links:
            self.links.append(link)


@dataclass(frozen=True)
class HeldOutSet:
    """A dataset's holdout stage, its training pairs, and the benchmark card of its held-out set."""

    stage: Stage
    train: Upstream
    benchmark: BenchmarkCard
    test: Upstream


@dataclass
class Plan:
    experiment: str
    spec_path: str
    resolved: dict[str, Any]
    runs_dir: Path
    catalog: Path
    tracking: TrackingSpec
    keep_checkpoints: bool
    arms: list[ArmRecord]
    datasets: list[DatasetRecord]
    stages: list[Stage]  # graph order: every stage after its inputs

    def stage(self, stage_id: str) -> Stage:
        return next(s for s in self.stages if s.id == stage_id)

    def links(self) -> list[StageLink]:
        return [link for stage in self.stages for link in stage.links]


def ensure_generated(datasets: list[DatasetCard], benchmarks: list[BenchmarkCard]) -> None:
    """Write the demo collection where a card generated by it points, unless what is there is exactly what
    this version of the generator writes (a hash check of ~10 MB): a missing or stale folder is rewritten."""
    cards: list[DatasetCard | BenchmarkCard] = [*datasets, *benchmarks]
    demo_cards = [card for card in cards if card.generated_by == "demo"]
    roots = {Path(card.path).expanduser().resolve().parents[1] for card in demo_cards}
    unknown = [
        c.name for c in cards
        if c.generated_by not in (None, "demo") and not Path(c.path).expanduser().exists()
    ]
    if unknown:
        raise UserError(*(f"card {name}: generated_by: unknown generator and the path is missing"
                          for name in unknown))
    for root in sorted(roots):
        write_demo_collection(root)


def _source_fingerprint(card: DatasetCard, cache: FingerprintCache) -> str:
    """The fingerprint of a dataset's files: a BEIR source's are its split's corpus, queries and qrels."""
    if card.source is not DataSource.beir:
        return dataset_fingerprint(card, cache)
    try:
        return cache.dataset_fingerprint(card.resolved_path, card.split)
    except UserError as exc:
        raise UserError(*(f"dataset {card.name}: {p}" for p in exc.problems)) from None


def _sts_datasets(arm: Arm) -> list[str]:
    """The arm's datasets of scored pairs (CoSENT), which stage 1 cannot weigh."""
    return [card.name for card in arm.datasets if card.source is DataSource.sts]


def _without_model(common: dict[str, Any]) -> dict[str, Any]:
    """The common stage-file fields of a stage that loads no model and runs as one process."""
    return {**common, "resources": ResourcesSpec(), "model": None, "model_weights": None}


class _Builder:
    def __init__(self, runs_dir: Path, experiment: str, registry: Registry | None = None) -> None:
        self.runs_dir = runs_dir
        self.experiment = experiment
        self.registry = registry
        self.cache = FingerprintCache(runs_dir / FINGERPRINT_CACHE_FILE)
        self.candidates: dict[tuple[str, str], Upstream] = {}  # (arm, dataset) -> its mine stage's ranking
        self.stages: dict[str, Stage] = {}
        self.datasets: dict[tuple[str, str], DatasetRecord] = {}
        self._model_weights: dict[str, str] = {}

    def model_weights(self, card: ModelCard) -> str:
        key = card.source.model_dump_json()
        if key not in self._model_weights:
            self._model_weights[key] = model_identity(card.source)
        return self._model_weights[key]

    def make(self, stage_file: StageFileT) -> Stage:
        """The stage of this stage file: its id is the file's hash; an equal stage is shared."""
        sid = stage_id(stage_file)
        if sid not in self.stages:
            partial = self.runs_dir / f"{stage_file.kind}-{sid[:12]}.partial"
            job_file = stage_file.model_copy(update={"stage_id": sid, "output_dir": str(partial)})
            self.stages[sid] = Stage(job_file, self.runs_dir)
        return self.stages[sid]

    def retriever(self, prepare: PrepareSpec, dataset: str) -> ModelCard:
        if isinstance(prepare.retriever, ModelCard):
            return prepare.retriever
        if prepare.retriever is None:
            raise UserError(f"prepare.retriever: needed to mine dataset {dataset} (a model card name)")
        if self.registry is None:
            raise UserError("prepare.retriever: no registry to look the model card up in")
        try:
            return self.registry.model(prepare.retriever)
        except UserError as exc:
            raise UserError(f"prepare.retriever: {exc.problems[0]}") from None

    def dedup_benchmarks(self, prepare: PrepareSpec, arm: Arm) -> list[BenchmarkCard]:
        if prepare.dedup.benchmarks is None:
            return list(arm.benchmarks)
        if self.registry is None:
            raise UserError("prepare.dedup.benchmarks: no registry to look the benchmark cards up in")
        cards = []
        for name in prepare.dedup.benchmarks:
            try:
                cards.append(self.registry.benchmark(name))
            except UserError as exc:
                raise UserError(f"prepare.dedup.benchmarks: {exc.problems[0]}") from None
        return cards

    def holdout(
        self, arm: Arm, card: DatasetCard, fingerprint: str, common: dict[str, Any]
    ) -> HeldOutSet | None:
        """The holdout stage of one dataset and the benchmark it writes, if the spec carves one out."""
        prepare = arm.spec.prepare
        if prepare is None or not prepare.holds_out(card.name, is_pairs=card.source is DataSource.pairs):
            return None
        if card.source is not DataSource.pairs:
            raise UserError(f"prepare.datasets.{card.name}.holdout: holdout splits a pairs source, not "
                            f"{card.source.value}")
        stage = self.make(HoldoutStageFile(
            **_without_model(common),
            dataset=card, dataset_fingerprint=fingerprint, holdout=prepare.holdout or HoldoutSpec(),
        ))
        stage.add_link(StageLink(stage.id, arm.name, None, None))
        test = stage.output(HoldoutResult.TEST_DIR)
        benchmark = BenchmarkCard(
            name=HoldoutResult.benchmark_name(card.name), path=test.path, split=HoldoutResult.TEST_SPLIT,
            instruction=card.instructions[0], language=card.language, group=HELDOUT_GROUP,
        )
        return HeldOutSet(stage, stage.output(HoldoutResult.TRAIN_FILE), benchmark, test)

    def prepare(
        self, arm: Arm, card: DatasetCard, fingerprint: str, common: dict[str, Any],
        heldout: dict[str, HeldOutSet],
    ) -> Upstream | None:
        """The mine and dedup stages of one dataset; the query groups training reads, or None (the card's)."""
        prepare = arm.spec.prepare
        if card.source is DataSource.sts:
            return None  # scored pairs are trained on as they are (CoSENT): nothing to mine
        if prepare is None:
            if card.source is not DataSource.groups:
                raise UserError(f"dataset {card.name}: source {card.source.value} has no negatives; add a "
                                "prepare section (prepare.retriever) to mine them")
            return None
        own = heldout.get(card.name)
        data: Upstream | None = None
        if prepare.mines(card.name, has_negatives=card.source is DataSource.groups):
            retriever = self.retriever(prepare, card.name)
            mine_spec = prepare.mine_spec(card.name)
            mine = self.make(MineStageFile(
                **{**common, "seed": mine_spec.seed, "model": retriever,
                   "model_weights": self.model_weights(retriever)},
                dataset=card, dataset_fingerprint=None if own else fingerprint,
                data=own.train if own else None, mine=mine_spec,
                cache_dir=str(self.runs_dir / EMBEDDING_CACHE),
            ))
            mine.add_link(StageLink(mine.id, arm.name, None, None))
            data = mine.output(MineResult.DATA_FILE)
            self.candidates[(arm.name, card.name)] = mine.output(MineResult.CANDIDATES_FILE)
        elif card.source is not DataSource.groups:
            raise UserError(f"prepare.datasets.{card.name}.mine: a {card.source.value} source must be mined")
        # every held-out set is a test set of every dataset: a query of one domain may copy another's
        benchmarks = [*self.dedup_benchmarks(prepare, arm), *(h.benchmark for h in heldout.values())]
        if prepare.dedups(card.name) and benchmarks:
            dedup = self.make(DedupStageFile(
                **_without_model(common),
                dataset=card, groups=data, dataset_fingerprint=None if data else fingerprint,
                dedup=prepare.dedup, **self.benchmark_inputs(benchmarks, heldout),
            ))
            dedup.add_link(StageLink(dedup.id, arm.name, None, None))
            data = dedup.output(DedupResult.DATA_FILE)
        return data

    def benchmark_inputs(
        self, benchmarks: list[BenchmarkCard], heldout: dict[str, HeldOutSet]
    ) -> dict[str, Any]:
        """The benchmark fields of a stage file: cards, content fingerprints, and the holdout stages'
        folders as edges (a held-out benchmark's fingerprint is the id of the stage that writes it)."""
        carved = {h.benchmark.name: h for h in heldout.values()}
        return {
            "benchmarks": benchmarks,
            "benchmark_fingerprints": {c.name: carved[c.name].stage.id if c.name in carved
                                       else benchmark_fingerprint(c, self.cache) for c in benchmarks},
            "benchmark_data": {c.name: carved[c.name].test for c in benchmarks if c.name in carved},
        }

    def arm(self, arm: Arm) -> None:
        spec = arm.spec
        fingerprints = {card.name: _source_fingerprint(card, self.cache) for card in arm.datasets}
        for card in arm.datasets:
            record = DatasetRecord(card.name, fingerprints[card.name], str(card.resolved_path), card.language,
                                   card.category, card.symmetric)
            self.datasets.setdefault((card.name, record.fingerprint), record)
        common: dict[str, Any] = {
            "experiment": self.experiment, "seed": spec.seed, "model": arm.model,
            "model_weights": self.model_weights(arm.model), "resources": spec.resources,
            "tracking": spec.tracking, "tracking_config": spec.model_dump(mode="json"),
        }
        heldout = {card.name: held for card in arm.datasets
                   if (held := self.holdout(arm, card, fingerprints[card.name], common)) is not None}
        prepared = {
            card.name: data for card in arm.datasets
            if (data := self.prepare(arm, card, fingerprints[card.name], common, heldout)) is not None
        }
        # A prepared dataset's card points at its prepared groups; that stage's id stands for its content.
        datasets = [card.model_copy(update={"path": prepared[card.name].path, "source": DataSource.groups,
                                            "split": None}) if card.name in prepared else card
                    for card in arm.datasets]
        training = {**common, "datasets": datasets, "prepared_data": prepared,
                    "dataset_fingerprints": {n: f for n, f in fingerprints.items() if n not in prepared},
                    "data": spec.data}
        scored = _sts_datasets(arm)
        if scored and len(arm.datasets) > 1 and not (spec.train.homogeneous_batches
                                                      or spec.train.balanced_batches):
            raise UserError(f"dataset {scored[0]}: STS pairs (CoSENT) cannot share a batch with query "
                            "groups; set train.homogeneous_batches: true")
        uniform = {card.name: 1.0 for card in arm.datasets}
        reference = self.make(TrainStageFile(
            **training, kind="reference", mixture=Mixture(weights=uniform), train=spec.train,
            remine_sources=self.remine_sources(arm),
        ))
        reference.add_link(StageLink(reference.id, arm.name, None, BASELINE))
        model_stages: list[tuple[Stage, str, str | None]] = [(reference, BASELINE, None)]
        if spec.dro is not None:
            self.weigh(arm, training, uniform, reference, model_stages)
        self.evaluate(arm, common, heldout, model_stages)

    def remine_sources(self, arm: Arm) -> dict[str, Upstream]:
        """The mined rankings stages 0 and 2 re-mine from (`train.remine`): every mined dataset's."""
        if arm.spec.train.remine is None:
            return {}
        sources = {card.name: self.candidates[(arm.name, card.name)] for card in arm.datasets
                   if (arm.name, card.name) in self.candidates}
        if not sources:
            raise UserError("train.remine: no dataset of the experiment is mined (prepare.mine); re-mining "
                            "replaces negatives from a mine stage's ranked candidates")
        return sources

    def weigh(self, arm: Arm, training: dict[str, Any], uniform: dict[str, float], reference: Stage,
              model_stages: list[tuple[Stage, str, str | None]]) -> None:
        """Stage 1 and the stage-2 trainings of its transfers, appended to `model_stages`."""
        spec = arm.spec
        assert spec.dro is not None
        if scored := _sts_datasets(arm):
            raise UserError(f"dataset {scored[0]}: STS pairs (CoSENT) have no per-query retrieval loss for "
                            "stage 1 to weigh; set dro: null and transfer: [] to train the baseline only")
        measure = spec.dro.measure.value

        optimize = self.make(OptimizeStageFile(
            **training, initial_weights=uniform, reference_model=reference.output(MODEL_DIR), dro=spec.dro,
        ))
        optimize.add_link(StageLink(optimize.id, arm.name, measure, None))

        for transfer in spec.transfer:
            if transfer.mode is TransferMode.uniform:
                reference.add_link(StageLink(reference.id, arm.name, None, transfer.label))
                model_stages.append((reference, transfer.label, None))
                continue
            trained = self.make(TrainStageFile(
                **training, kind="train", train=spec.train, remine_sources=self.remine_sources(arm),
                mixture=Mixture(alpha_file=optimize.output(WEIGHTS_FILE), transfer=transfer),
            ))
            trained.add_link(StageLink(trained.id, arm.name, measure, transfer.label))
            model_stages.append((trained, transfer.label, measure))

    def evaluate(self, arm: Arm, common: dict[str, Any], heldout: dict[str, HeldOutSet],
                 model_stages: list[tuple[Stage, str, str | None]]) -> None:
        """The evaluation of every model of the arm (the base model first, when zero_shot)."""
        spec = arm.spec
        benchmarks = [*arm.benchmarks, *(h.benchmark for h in heldout.values())]
        if not benchmarks:
            return
        evaluation = {
            **common, "evaluate": spec.evaluate, "cache_dir": str(self.runs_dir / EMBEDDING_CACHE),
            **self.benchmark_inputs(benchmarks, heldout),
        }
        models: list[tuple[Upstream | None, str, str | None]] = [
            (model_stage.output(MODEL_DIR), label, model_measure)
            for model_stage, label, model_measure in model_stages
        ]
        if spec.evaluate.zero_shot:
            models.insert(0, (None, ZERO_SHOT, None))  # the base model itself
        for model_under_test, transfer_label, model_measure in models:
            evaluate = self.make(EvaluateStageFile(**evaluation, model_under_test=model_under_test))
            evaluate.add_link(StageLink(evaluate.id, arm.name, model_measure, transfer_label))


def build_plan(experiment: Experiment, *, catalog: str | Path | None = None) -> Plan:
    """The stage graph of every arm, shared stages merged, in an order where inputs come first."""
    spec = experiment.spec
    runs_dir = Path(spec.output.runs_dir).expanduser().resolve()
    builder = _Builder(runs_dir, spec.name, getattr(experiment, "registry", None))
    arms: list[ArmRecord] = []
    for arm in experiment.arms:
        ensure_generated(arm.datasets, arm.benchmarks)
        builder.arm(arm)
        resolved = arm.spec.model_dump(mode="json")
        arms.append(ArmRecord(arm.name, dict(arm.assignments), resolved, arm.model.name))
    builder.cache.save()
    order = _topological(builder.stages)
    return Plan(
        experiment=spec.name,
        spec_path=str(experiment.path),
        resolved=experiment.resolved,
        runs_dir=runs_dir,
        catalog=Path(catalog or spec.output.catalog).expanduser().resolve(),
        tracking=spec.tracking,
        keep_checkpoints=spec.output.keep_checkpoints,
        arms=arms,
        datasets=list(builder.datasets.values()),
        stages=order,
    )


_KIND_ORDER = {StageKind.holdout: 0, StageKind.mine: 1, StageKind.dedup: 2, StageKind.reference: 3,
               StageKind.optimize: 4, StageKind.train: 5, StageKind.evaluate: 6}


def _topological(stages: dict[str, Stage]) -> list[Stage]:
    """Trainings before evaluations (an early evaluation failure then stops no training); inputs first."""
    ordered = sorted(stages.values(), key=lambda s: _KIND_ORDER[s.kind])
    placed: set[str] = set()
    out: list[Stage] = []
    while ordered:
        for i, stage in enumerate(ordered):
            if all(dep in placed for dep in stage.inputs):
                out.append(ordered.pop(i))
                placed.add(stage.id)
                break
        else:  # pragma: no cover - ids are hashes of their inputs, so a cycle cannot be built
            raise RuntimeError("stage graph has a cycle")
    return out
