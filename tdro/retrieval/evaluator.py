"""One retriever on one benchmark: encode (or reuse cached vectors), search, score.

`Evaluator` holds a loaded `Encoder`, its identity for the embedding cache and the search settings;
`Evaluator.evaluate(benchmark, instruction)` returns a `BenchmarkResult` on the main process (None on
the others when launched on several). The corpus is encoded and searched one chunk of `chunk_size`
documents at a time (each chunk its own cache entry), so memory stays bounded by the chunk, not the
corpus. Queries get the benchmark's instruction through `format_query`;
the corpus gets only the model's passage prefix (`format_passage` without instruction), as the
reference evaluation does. `encoded` counts the texts actually encoded (0 on a full cache hit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tdro.retrieval.beir import Benchmark
from tdro.retrieval.cache import EmbeddingCache, model_identity, text_key
from tdro.retrieval.encode import encode_texts
from tdro.retrieval.metrics import Metric, evaluate_run
from tdro.retrieval.model_folder import ResolvedModel
from tdro.retrieval.search import TopK, identical_id_positions, to_run
from tdro.spec.retriever import format_passage, format_query
from tdro.spec.search import SearchConfig
from tdro.spec.stage_result import BenchmarkRecord

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator

    from tdro.modeling.encoder import Encoder


QUERY_ROLE = "query"


def corpus_role(number: int, chunks: int) -> str:
    """The cache role of corpus chunk `number` of `chunks`. Mining uses these roles too: the cache key
    already holds the formatted texts and the max length, and the encoder does not depend on the role, so
    a corpus mined with the base model is not encoded again by that model's zero-shot evaluation."""
    return "passage" if chunks == 1 else f"passage {number}/{chunks}"


class BenchmarkResult(BenchmarkRecord):
    """A benchmark's evaluation: its `result.json` record plus what only this process needs."""

    per_query: dict[str, dict[str, float]] = Field(default_factory=dict)
    encoded: dict[str, int] = Field(default_factory=dict)  # role -> texts encoded (not from cache)
    seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        """The entry of `result.json`'s `benchmarks` list (`tdro.spec.stage_result.BenchmarkRecord`)."""
        return self.model_dump(include=set(BenchmarkRecord.model_fields))


class SearchSettings(SearchConfig):
    """SearchConfig's fields (and defaults) plus the parsed metrics."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    metrics: list[Metric]

    def __init__(self, metrics: list[Metric], /, **search: Any) -> None:
        # metrics first and positional, as every caller passes them
        BaseModel.__init__(self, metrics=metrics, **search)


class Evaluator:
    def __init__(
        self,
        encoder: Encoder,
        model: ResolvedModel,
        settings: SearchSettings,
        *,
        cache: EmbeddingCache | None = None,
        accelerator: Accelerator | None = None,
        autocast_dtype: torch.dtype | None = None,
        show_progress: bool = True,
    ) -> None:
        self.encoder = encoder
        self.model = model
        self.settings = settings
        self.cache = cache or EmbeddingCache(None)
        self.accelerator = accelerator
        self.autocast_dtype = autocast_dtype
        self.show_progress = show_progress
        self._model_key: str | None = None

    @classmethod
    def load(cls, model: ResolvedModel, settings: SearchSettings, **kwargs: Any) -> Evaluator:
        """Load the encoder of a resolved model onto the accelerator's device (or GPU/CPU)."""
        import torch

        from tdro.modeling.encoder import Encoder

        encoder = Encoder.from_pretrained(
            model.path, model.config, dtype=model.loading.dtype.value,
            trust_remote_code=model.loading.trust_remote_code,
        )
        accelerator = kwargs.get("accelerator")
        fallback = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = accelerator.device if accelerator else fallback
        encoder.to(device).eval()
        return cls(encoder, model, settings, **kwargs)

    @property
    def is_main(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    @property
    def model_key(self) -> str:
        if self._model_key is None:
            m = self.model
            self._model_key = model_identity(m.path, m.config, m.loading.dtype.value, self.cache)
        return self._model_key

    def embed(self, texts: list[str], *, role: str, max_length: int) -> tuple[np.ndarray | None, int]:
        """Embeddings of `texts` (on main; None elsewhere) and how many texts were encoded.

        The cache is read and written on the main process only; it tells the others whether to encode."""
        cached = None
        key = ""
        if self.cache.enabled and self.is_main:
            key = text_key(self.model_key, role, max_length, texts)
            cached = self.cache.load(self.model_key, key, len(texts))
        hit = cached is not None
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            flag = [hit]
            broadcast_object_list(flag, from_process=0)
            hit = bool(flag[0])
        if hit:
            return cached, 0
        vectors = encode_texts(
            self.encoder, texts, max_length=max_length, batch_size=self.settings.batch_size,
            accelerator=self.accelerator, autocast_dtype=self.autocast_dtype,
            show_progress=self.show_progress, desc=role,
        )
        if vectors is not None and self.cache.enabled and self.is_main:
            self.cache.save(self.model_key, key, vectors)
        return vectors, len(texts)

    def rank(self, queries: list[str], docs: list[str], top_k: int, *,
             exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, int]] | None:
        """Encode formatted `queries`, then encode and search the formatted `docs` one chunk of
        `chunk_size` documents at a time: `(scores, indices, encoded)` on main, None elsewhere."""
        config, s = self.encoder.config, self.settings
        q_vectors, q_encoded = self.embed(queries, role=QUERY_ROLE, max_length=config.query_max_length)
        top = TopK(q_vectors, top_k, exclude=exclude) if q_vectors is not None else None
        d_encoded = 0
        chunks = range(0, len(docs), s.chunk_size)
        for number, start in enumerate(chunks, start=1):
            vectors, encoded = self.embed(docs[start : start + s.chunk_size],
                                          role=corpus_role(number, len(chunks)),
                                          max_length=config.passage_max_length)
            d_encoded += encoded
            if top is not None and vectors is not None:
                top.add(vectors, start)
        if top is None:
            return None
        scores, indices = top.result(len(docs))
        return scores, indices, {"query": q_encoded, "passage": d_encoded}

    def evaluate(self, bench: Benchmark, instruction: str | None = None, *,
                 ignore_identical_ids: bool | None = None) -> BenchmarkResult | None:
        """Rank the corpus for every query (`rank`), then score the run against the qrels.

        `ignore_identical_ids` overrides the settings' for this benchmark (a card may turn it on)."""
        import time

        started = time.perf_counter()
        config, s = self.encoder.config, self.settings
        queries = [format_query(q, instruction, config) for q in bench.query_texts]
        docs = [format_passage(d, None, config) for d in bench.doc_texts]
        ignore = s.ignore_identical_ids if ignore_identical_ids is None else ignore_identical_ids
        exclude = identical_id_positions(bench.query_ids, bench.doc_ids) if ignore else None
        ranked = self.rank(queries, docs, s.top_k, exclude=exclude)
        if ranked is None:
            return None
        scores, indices, encoded = ranked
        result = evaluate_run(bench.qrels, to_run(scores, indices, bench.query_ids, bench.doc_ids), s.metrics)
        return BenchmarkResult(
            benchmark=bench.name, split=bench.split, num_queries=bench.num_queries, num_docs=bench.num_docs,
            top_k=s.top_k, ignore_identical_ids=ignore, metrics=result.mean,
            per_query=result.per_query, encoded=encoded, seconds=time.perf_counter() - started,
        )
