"""`tdro bench convert miracl SRC DST`: benchmark files into the layout a benchmark card reads.

Pure file work (`tdro.retrieval.miracl` is standard library only): no torch. Problems raise `UserError`;
the boundary (`tdro.cli.boundary`) prints them as one line each and exits with code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tdro.enums import BenchmarkSource

app = typer.Typer(help="Benchmark files: convert official layouts to BEIR layout.", no_args_is_help=True)


@app.command("convert")
def convert(
    source: Annotated[BenchmarkSource, typer.Argument(help="The source layout.")],
    src: Annotated[Path, typer.Argument(help="Folder: topics, qrels, docs-*.jsonl.gz (one language).")],
    dst: Annotated[Path, typer.Argument(help="BEIR folder to write (corpus.jsonl, queries.jsonl, qrels/).")],
    split: Annotated[str, typer.Option(help="The split to convert (dev, train, testA, testB).")] = "dev",
) -> None:
    """Convert one language of MIRACL's official layout into a BEIR folder a miracl-* card reads."""
    from tdro.retrieval.miracl import convert_miracl

    done = convert_miracl(src, dst, split)
    typer.echo(f"{dst}: {done.docs} documents, {done.queries} queries, {done.judgments} judgments ({split})")
