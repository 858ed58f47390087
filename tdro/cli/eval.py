"""`tdro eval MODEL BENCHMARK`: evaluate any retriever on a benchmark of any kind and print a table.

MODEL is a tdro-saved folder, a sentence-transformers / Hugging Face folder, a model card name or a hub
id (see `tdro.retrieval.model_folder`). BENCHMARK is a BEIR folder (kind retrieval) or a benchmark card
name, whose `kind` says how it is evaluated (`tdro.retrieval.kinds`): retrieval, answer_recall, sts. The
command is one function on the typer app `app`; `tdro.cli.app` mounts it, and errors end in the one
boundary (`tdro.cli.boundary`). Torch, transformers and faiss are imported inside the command only.

The model-setting flags carry the field names of `RetrieverConfig` and `LoadSettings`, the search flags
those of `SearchConfig`; a flag left unset keeps what the folder, card or SearchConfig says.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from tdro.enums import DType, EosHandling, OutputFormat, PaddingSide, Pooling, PromptStyle
from tdro.spec.retriever import LoadSettings, RetrieverConfig
from tdro.spec.search import SearchConfig

app = typer.Typer(help="Evaluate a retriever on a benchmark (BEIR folder or card).", no_args_is_help=True)


def _benchmark_card(benchmark: str, split: str | None, instruction: str | None):
    """The card of a benchmark card name, or a plain card for a folder; given split and instruction win."""
    from tdro.spec.cards import BenchmarkCard

    if Path(benchmark).expanduser().is_dir() or "/" in benchmark:
        folder = Path(benchmark).expanduser()
        return BenchmarkCard(name=folder.name, path=str(folder), split=split or "test",
                             instruction=instruction)
    from tdro.spec.registry import Registry

    card = Registry.load().benchmark(benchmark)
    return card.model_copy(update={"path": str(Path(card.path).expanduser()), "split": split or card.split,
                                   "instruction": instruction or card.instruction})


def _given(ctx: typer.Context, *models: type[BaseModel]) -> dict[str, Any]:
    """The flags given on the command line that name a field of `models` (unset: None, the model's value)."""
    names = {name for model in models for name in model.model_fields}
    return {name: value for name, value in ctx.params.items() if name in names and value is not None}


def _default(name: str) -> str:
    return f"(default: {SearchConfig.model_fields[name].default})"


_AS_SAVED = "(default: as the model folder or card states)"


@app.command("eval")
def eval_command(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Argument(help="Model folder (tdro, sentence-transformers or HF), card name or hub id.")
    ],
    benchmark: Annotated[
        str, typer.Argument(help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or card name (any kind).")
    ],
    split: Annotated[
        str | None, typer.Option(help="Qrels split to evaluate (default: test, or the card's).")
    ] = None,
    metrics: Annotated[
        str | None, typer.Option(help="Comma-separated, e.g. ndcg@10,recall@100 (default: the BEIR set).")
    ] = None,
    instruction: Annotated[
        str | None, typer.Option(help="Query instruction (used with prompt style e5) (default: the card's).")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Embedding cache folder; an unchanged model is not re-encoded.")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Also write the result as JSON to this file.")] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Print a table or JSON.")
    ] = OutputFormat.table,
    per_query: Annotated[bool, typer.Option(help="Include per-query scores in the JSON.")] = False,
    progress: Annotated[bool, typer.Option(help="Show encoding progress bars.")] = True,
    # SearchConfig fields, by their names.
    top_k: Annotated[
        int | None, typer.Option(min=1, help=f"Documents retrieved per query {_default('top_k')}.")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help=f"Texts per encoding batch {_default('batch_size')}.")
    ] = None,
    chunk_size: Annotated[
        int | None, typer.Option(min=1, help=f"Corpus vectors searched at a time {_default('chunk_size')}.")
    ] = None,
    ignore_identical_ids: Annotated[
        bool | None,
        typer.Option(help="Never retrieve a document whose id equals the query id (ArguAna, Quora; a "
                          "benchmark card with ignore_identical_ids: true turns it on too) (default: off)."),
    ] = None,
    # RetrieverConfig and LoadSettings fields, by their names; unset: the folder's or card's value.
    pooling: Annotated[Pooling | None, typer.Option(help=f"Pooling {_AS_SAVED}.")] = None,
    normalize: Annotated[
        bool | None, typer.Option("--normalize/--no-normalize", help=f"L2-normalise embeddings {_AS_SAVED}."),
    ] = None,
    query_max_length: Annotated[
        int | None, typer.Option(min=1, help=f"Max query tokens {_AS_SAVED}.")
    ] = None,
    passage_max_length: Annotated[
        int | None, typer.Option(min=1, help=f"Max passage tokens {_AS_SAVED}.")
    ] = None,
    eos: Annotated[
        EosHandling | None, typer.Option(help=f"How sequences end in EOS (last-token pooling) {_AS_SAVED}.")
    ] = None,
    padding_side: Annotated[PaddingSide | None, typer.Option(help=f"Padding side {_AS_SAVED}.")] = None,
    prompt_style: Annotated[
        PromptStyle | None,
        typer.Option(help=f"e5 puts 'Instruct: {{instruction}}\\nQuery: ' before queries {_AS_SAVED}."),
    ] = None,
    query_prefix: Annotated[
        str | None, typer.Option(help=f"Fixed text put before every query {_AS_SAVED}.")
    ] = None,
    passage_prefix: Annotated[
        str | None, typer.Option(help=f"Fixed text put before every passage {_AS_SAVED}.")
    ] = None,
    dtype: Annotated[DType | None, typer.Option(help="Weight dtype (default: float32 / card).")] = None,
    trust_remote_code: Annotated[
        bool | None, typer.Option(help="Allow model code from the model folder (default: no / card).")
    ] = None,
) -> None:
    """Evaluate MODEL on BENCHMARK: retrieval (faiss exact search, pytrec_eval metrics), answer_recall
    (accuracy@k per language and mean) or sts (cosine Spearman/Pearson), as the card's kind says."""
    payload = _evaluate(
        model, benchmark, split=split, metrics=metrics, instruction=instruction, cache_dir=cache_dir,
        per_query=per_query, progress=progress, search=_given(ctx, SearchConfig),
        overrides=_given(ctx, RetrieverConfig, LoadSettings),
    )
    text = json.dumps(payload, indent=2)
    if output is not None:
        from tdro.retrieval.cache import atomic_write_bytes

        atomic_write_bytes(output, lambda h: h.write((text + "\n").encode()))
    if output_format is OutputFormat.json:
        typer.echo(text)
    else:
        _print_table(payload)


def _evaluate(model: str, benchmark: str, *, split, metrics, instruction, cache_dir, per_query, progress,
              search: dict[str, Any], overrides: dict[str, Any]) -> dict:
    """`search`: SearchConfig fields, `overrides`: RetrieverConfig / LoadSettings fields, as given."""
    import torch

    from tdro.retrieval.cache import EmbeddingCache
    from tdro.retrieval.evaluator import Evaluator, SearchSettings
    from tdro.retrieval.kinds import evaluate_benchmark, load_benchmark
    from tdro.retrieval.metrics import DEFAULT_METRICS, parse_metrics
    from tdro.retrieval.model_folder import resolve_model

    names = [m for m in metrics.split(",") if m.strip()] if metrics else list(DEFAULT_METRICS)
    parsed = parse_metrics(names, field_name="--metrics")
    card = _benchmark_card(benchmark, split, instruction)
    resolved = resolve_model(model, overrides)
    bench = load_benchmark(card)
    if instruction and resolved.config.prompt_style is PromptStyle.none:
        typer.echo("note: the instruction is not used: the model's prompt style is none "
                   "(pass --prompt-style e5 to use it)", err=True)
    settings = SearchSettings(parsed, **search)
    autocast = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else None
    evaluator = Evaluator.load(resolved, settings, cache=EmbeddingCache(cache_dir), autocast_dtype=autocast,
                               show_progress=progress and sys.stderr.isatty())
    result = evaluate_benchmark(evaluator, bench, ignore_identical_ids=bool(settings.ignore_identical_ids),
                                token_dir=cache_dir)
    assert result is not None  # one process: always the main one
    payload = {"model": resolved.path, "model_config_from": resolved.origin,
               "model_config": resolved.config.model_dump(mode="json"), **result.record(),
               "encoded": result.encoded, "seconds": round(result.seconds, 3)}
    if per_query:
        payload["per_query"] = result.per_query
    return payload


def _print_table(payload: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    kind = payload.get("kind", "retrieval")
    if kind == "sts":
        console.print(f"{payload['benchmark']} ({payload['split']}, sts): {payload['num_queries']} pairs")
    elif kind == "answer_recall":
        console.print(f"{payload['benchmark']} (answer_recall): {payload['num_queries']} queries in "
                      f"{len(payload['per_language'])} languages, {payload['num_docs']} passages, "
                      f"top {payload['top_k']}")
    else:
        console.print(f"{payload['benchmark']} ({payload['split']}): {payload['num_queries']} queries, "
                      f"{payload['num_docs']} docs, top {payload['top_k']}, "
                      f"ignore_identical_ids={payload['ignore_identical_ids']}")
    table = Table()
    if payload.get("per_language"):
        names = list(payload["metrics"])
        table.add_column("language")
        for name in names:
            table.add_column(name, justify="right")
        for language, values in payload["per_language"].items():
            table.add_row(language, *(f"{values[n]:.4f}" for n in names))
        table.add_row("mean", *(f"{payload['metrics'][n]:.4f}" for n in names), style="bold")
    else:
        table.add_column("metric")
        table.add_column("value", justify="right")
        for metric, value in payload["metrics"].items():
            table.add_row(metric, f"{value:.4f}")
    console.print(table)
    console.print(f"model: {payload['model']} (config from {payload['model_config_from']}); "
                  f"encoded {sum(payload['encoded'].values())} texts in {payload['seconds']:.1f}s")
