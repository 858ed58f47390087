"""`tdro data check | demo`: check a training file or folder; write the demo collection.

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

app = typer.Typer(help="Training data: validate files, write the demo collection.", no_args_is_help=True)


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
