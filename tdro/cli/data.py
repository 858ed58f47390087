"""`tdro data check | demo | mine | dedup`: check a training file or folder; write the demo collection;
mine hard negatives and deduplicate against test queries without a spec (the stages' own code).

Mounted as `tdro data`. Exit codes: 0 clean, 1 when `check` finds bad lines, 2 for a user error (a
missing path), printed by the boundary (`tdro.cli.boundary`). The data modules (work plane) are imported
inside the commands only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tdro.enums import Pooling

app = typer.Typer(help="Training data: validate, mine negatives, deduplicate; write the demo collection.",
                  no_args_is_help=True)


@app.command()
def check(
    path: Annotated[Path, typer.Argument(
        help="A training JSONL file, or a folder of *.jsonl files read as one.")],
    max_problems: Annotated[int, typer.Option(help="How many bad lines to list (all are counted).")] = 20,
    max_rows: Annotated[int, typer.Option(
        help="Rows measured for the mean lengths (evenly spaced).")] = 100_000,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the summary as JSON instead of a table.")] = False,
) -> None:
    """Validate every line of PATH and print rows, mean lengths and bad lines (file:line: reason)."""
    from tdro.data.check import summarize

    summary = summarize(path, max_rows=max_rows)
    console = Console(highlight=False, soft_wrap=True)
    if as_json:
        console.print_json(summary.model_dump_json())
    else:
        table = Table(title=str(path), show_header=False)
        for label, value in [
            ("files", summary.files), ("rows", summary.rows), ("bad lines", summary.bad_lines),
            ("mean query words", summary.mean_query_words), ("mean positives", summary.mean_positives),
            ("mean negatives", summary.mean_negatives), ("min negatives", summary.min_negatives),
            ("mean passage words", summary.mean_passage_words), ("titled passages", summary.titled_fraction),
            ("measured rows", summary.sampled_rows), ("fingerprint", summary.fingerprint[:16]),
        ]:
            table.add_row(label, str(value))
        console.print(table)
        for problem in summary.problems[:max_problems]:
            console.print(f"bad line {problem}")
        if summary.bad_lines > max_problems:
            console.print(f"... and {summary.bad_lines - max_problems} more bad lines")
    if summary.bad_lines:
        raise typer.Exit(1)


@app.command()
def demo(
    folder: Annotated[Path, typer.Argument(help="Where to write train/ and test/.")] = Path("demo_data"),
) -> None:
    """Write the generated demo collection (8 training domains, one BEIR test set each) into FOLDER."""
    from tdro.data.demo import write_demo_collection

    manifest = write_demo_collection(folder)
    table = Table(title=f"demo collection in {folder}")
    for col in ("dataset", "kind", "train rows", "symmetric", "test queries", "test docs"):
        table.add_column(col)
    for d in manifest.datasets:
        table.add_row(d.name, d.kind, str(d.rows), "yes" if d.symmetric else "", str(d.test_queries),
                      str(d.test_documents))
    console = Console(highlight=False, soft_wrap=True)
    console.print(table)
    console.print(f"The demo cards find it with: export TDRO_DEMO_DATA={folder.resolve()}")


def _summary(title: str, rows: list[tuple[str, object]]) -> None:
    table = Table(title=title, show_header=False)
    for label, value in rows:
        table.add_row(label, str(value))
    Console(highlight=False, soft_wrap=True).print(table)


@app.command()
def mine(
    source: Annotated[Path, typer.Argument(
        help="A pairs JSONL file or folder, query groups (--groups) or a BEIR folder (--split).")],
    retriever: Annotated[str, typer.Option(help="A model folder, model card name or hub id.")],
    out: Annotated[Path, typer.Option(help="The query-group JSONL to write; candidates go beside it.")],
    split: Annotated[str | None, typer.Option(help="The BEIR split whose qrels give the positives.")] = None,
    groups: Annotated[bool, typer.Option(
        "--groups", help="SOURCE is query groups (their negatives are replaced).")] = False,
    negatives: Annotated[int, typer.Option(help="Negatives per query.")] = 16,
    depth_start: Annotated[int, typer.Option(help="First candidate rank (0-based).")] = 2,
    depth_end: Annotated[int, typer.Option(help="Candidate ranks end here (exclusive).")] = 100,
    top_k: Annotated[int, typer.Option(help="Ranking depth searched and kept.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the per-query draws.")] = 42,
    false_negative_margin: Annotated[float | None, typer.Option(
        help="Drop candidates above this fraction of the positive's score.")] = None,
    batch_size: Annotated[int, typer.Option(help="Encoding batch size.")] = 128,
    pooling: Annotated[Pooling | None, typer.Option(
        help="Pooling when the model folder does not say.")] = None,
) -> None:
    """Mine hard negatives for SOURCE with RETRIEVER, as the mine stage does; write OUT and its candidates."""
    from tdro.data.miner import mine as mine_data
    from tdro.data.sources import read_source
    from tdro.enums import DataSource
    from tdro.retrieval.model_folder import resolve_model
    from tdro.spec.experiment import MineSpec
    from tdro.spec.stage_result import MineResult
    from tdro.stages.mine import load_evaluator, write_lines
    from tdro.stages.outputs import write_parquet

    kind = DataSource.beir if split else DataSource.groups if groups else DataSource.pairs
    spec = MineSpec(depth=(depth_start, depth_end), top_k=top_k, negatives=negatives, seed=seed,
                    false_negative_margin=false_negative_margin, batch_size=batch_size)
    data = read_source(kind, source, split)
    overrides = {"pooling": pooling} if pooling else None
    evaluator = load_evaluator(resolve_model(retriever, overrides), batch_size=batch_size, cache_dir=None)
    mined = mine_data(data, evaluator, spec)
    assert mined is not None  # one process
    out.parent.mkdir(parents=True, exist_ok=True)
    write_lines(out, mined.lines())
    candidates = out.with_name(out.name.removesuffix(".jsonl") + "." + MineResult.CANDIDATES_FILE)
    write_parquet(candidates, mined.candidate_rows(), MineResult.CANDIDATE_COLUMNS)
    _summary(str(out), [
        ("rows in", data.rows_in), ("groups out", len(mined.groups)), ("corpus", len(data.passages)),
        ("empty dropped", data.empty_dropped), ("no candidates dropped", mined.no_candidates_dropped),
        ("short groups", mined.short_groups), ("negatives", mined.negatives_total),
        ("false negatives removed", mined.false_negatives_removed), ("candidates", candidates),
    ])


@app.command()
def dedup(
    groups: Annotated[Path, typer.Argument(help="A query-group JSONL file or folder.")],
    benchmark: Annotated[list[str], typer.Option(
        help="A BEIR folder or benchmark card name whose test queries are matched (repeatable).")],
    out: Annotated[Path, typer.Option(help="Where the kept query groups go; removed rows beside it.")],
    split: Annotated[str, typer.Option(help="The benchmarks' split.")] = "test",
    max_distance: Annotated[int, typer.Option(help="Hamming distance of a duplicate (64-bit SimHash).")] = 2,
) -> None:
    """Remove the rows of GROUPS whose query matches a benchmark query, as the dedup stage does."""
    from tqdm.auto import tqdm

    from tdro.data.dedup import QueryIndex
    from tdro.spec.cards import BenchmarkCard
    from tdro.spec.registry import Registry
    from tdro.stages.dedup import benchmark_queries, dedup_lines, write_lines

    cards = []
    for name in benchmark:
        if Path(name).expanduser().is_dir():
            cards.append(BenchmarkCard(name=Path(name).name, path=str(Path(name).expanduser()), split=split))
        else:
            cards.append(Registry.load().benchmark(name))
    index = QueryIndex(benchmark_queries(cards), max_distance=max_distance)
    with tqdm(desc="dedup", unit="query") as bar:
        outcome = dedup_lines(groups, index, progress=bar)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_lines(out, outcome.kept)
    removed = out.with_name(out.name.removesuffix(".jsonl") + ".removed.jsonl")
    write_lines(removed, (m.model_dump_json().encode() for m in outcome.removed))
    _summary(str(out), [("rows in", outcome.rows_in), ("rows out", len(outcome.kept)),
                        ("removed", len(outcome.removed)), ("test queries", len(index)),
                        ("removed rows", removed)])
