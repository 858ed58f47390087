"""`tdro plan | run | status | sql | report`: the runner's commands, mounted at the top level of `tdro`.

Control plane only: nothing here imports torch, transformers or faiss, so a fully cached `tdro run`
answers in about a second. The report's plotting library is imported inside `tdro report` only.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tdro.catalog.query import cell, run_sql, to_csv, to_json
from tdro.cli.arguments import CatalogOpt, OverridesArg, SpecArg
from tdro.cli.console import console, err_console
from tdro.enums import OutputFormat, RowsFormat
from tdro.errors import INTERRUPTED_EXIT_CODE
from tdro.plan.emit import emit as emit_scripts
from tdro.plan.graph import build_plan
from tdro.plan.launch import gpu_available
from tdro.plan.runner import Outcome, Runner, results_table, stage_command
from tdro.spec.load import load_experiment

app = typer.Typer(help="Plan, run and inspect experiments.", add_completion=False,
                  pretty_exceptions_enable=False)

DEFAULT_CATALOG = "catalog.duckdb"


def _plan(spec: Path, overrides: list[str] | None, catalog: Path | None):  # type: ignore[no-untyped-def]
    return build_plan(load_experiment(spec, overrides or []), catalog=catalog)


def _catalog(catalog: Path | None) -> Path:
    return catalog or Path(DEFAULT_CATALOG)


def plan_rows(plan, *, gpu: bool) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """The plan as plain data: what `tdro plan --format json` prints."""
    port = plan.stages[0].resources.main_process_port if plan.stages else None
    return [
        {
            "id": s.id, "kind": s.kind.value, "arms": s.arms, "status": s.status.value, "inputs": s.inputs,
            "folder": str(s.folder),
            "command": " ".join(stage_command(s, gpu=gpu, port=port or "$PORT")),
        }
        for s in plan.stages
    ]


@app.command()
def plan(
    spec: SpecArg,
    overrides: OverridesArg = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table,
    emit: Annotated[Path | None, typer.Option(
        "--emit", help="Write launch scripts (shell + Slurm) for the stages to run into this folder "
        "instead of running them.")] = None,
    catalog: CatalogOpt = None,
) -> None:
    """Show the stage graph: every stage's id, kind, arms, inputs and whether it is cached or to run.

    Example: tdro plan experiments/demo.yaml dro.eta=0.05 --format json
    """
    the_plan = _plan(spec, overrides, catalog)
    if emit is not None:
        written = emit_scripts(the_plan, emit)
        console.print(f"{len(written.shell)} stage scripts in {emit} (run_all.sh), "
                      f"Slurm batch files in {emit / 'slurm'} (submit_all.sh)")
        return
    rows = plan_rows(the_plan, gpu=gpu_available())
    if format is OutputFormat.json:
        print(json.dumps(rows, indent=2))
        return
    title = f"{the_plan.experiment}: {len(rows)} stages"
    table = Table("kind", "id", "status", "arms", "inputs", title=title)
    for r in rows:
        status = "[green]cached[/green]" if r["status"] == "cached" else "[yellow]run[/yellow]"
        table.add_row(str(r["kind"]), str(r["id"])[:12], status, ", ".join(r["arms"]),  # type: ignore[arg-type]
                      ", ".join(i[:12] for i in r["inputs"]))  # type: ignore[attr-defined]
    console.print(table)


@app.command()
def run(
    spec: SpecArg,
    overrides: OverridesArg = None,
    catalog: CatalogOpt = None,
) -> None:
    """Run every stage not cached, in graph order; ingest each finished stage; print the results.

    A failed stage stops only its dependants; its log path and last lines are printed and the exit code
    is 1. Running again resumes it from its checkpoint. Example: tdro run experiments/demo.yaml
    """
    the_plan = _plan(spec, overrides, catalog)
    todo = sum(1 for s in the_plan.stages if s.status.value == "run")
    progress_columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    try:
        with Progress(*progress_columns, console=err_console, transient=True) as bar:
            description = f"{the_plan.experiment}: {todo} of {len(the_plan.stages)} stages to run"
            task = bar.add_task(description, total=todo)

            def on_event(event: str, stage, outcome) -> None:  # type: ignore[no-untyped-def]
                if event == "start":
                    bar.update(task, description=f"{stage.name} ({', '.join(stage.arms)})")
                elif outcome.outcome is not Outcome.cached:
                    bar.advance(task)
                    colour = {"done": "green", "failed": "red", "skipped": "yellow"}[outcome.outcome.value]
                    bar.console.print(f"[{colour}]{outcome.outcome.value}[/{colour}] {stage.name} "
                                      f"{outcome.seconds:.1f}s {outcome.reason}")

            report = Runner(the_plan, on_event=on_event).run()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the runner has stopped the job it was waiting for
        err_console.print("interrupted: finished stages are kept; run again to resume")
        raise typer.Exit(INTERRUPTED_EXIT_CODE) from None
    columns, body = results_table(report.results)
    if body:
        table = Table(title=f"{the_plan.experiment}: results")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in body:
            table.add_row(*(cell(v) for v in row))
        console.print(table)
    counts = {o.value: sum(1 for x in report.outcomes if x.outcome is o) for o in Outcome}
    console.print(", ".join(f"{n} {k}" for k, n in counts.items() if n) + f"; catalog {the_plan.catalog}")
    for failed in (o for o in report.outcomes if o.outcome is Outcome.failed):
        where = f"; log: {failed.log}" if failed.log else ""
        err_console.print(f"[red]failed[/red] {failed.stage.name}: {failed.reason}{where}", markup=True)
        for line in failed.tail:
            err_console.print("  " + line, markup=False, highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def status(catalog: CatalogOpt = None) -> None:
    """List the experiments in the catalog and their stages (kind, status, seconds, folder)."""
    path = _catalog(catalog)
    rows = run_sql(path, """
        SELECT DISTINCT sa.experiment, s.kind, substr(s.stage_id, 1, 12) AS id, s.status,
               printf('%.1f', s.seconds) AS seconds, strftime(s.finished, '%Y-%m-%d %H:%M:%S') AS finished,
               s.output_dir
        FROM stages s JOIN stage_arms sa USING (stage_id)
        ORDER BY sa.experiment, s.finished NULLS LAST
    """)
    experiments = run_sql(path, "SELECT name, updated FROM experiments ORDER BY name")
    if not experiments.rows:
        console.print(f"{path}: no experiments yet")
        return
    for name, updated in experiments.rows:
        mine = [r for r in rows.rows if r[0] == name]
        title = f"{name} (registered {updated:%Y-%m-%d %H:%M})"
        table = Table("kind", "id", "status", "seconds", "finished", title=title)
        table.add_column("folder", overflow="fold")
        for r in mine:
            table.add_row(*(cell(v) for v in r[1:]))
        console.print(table)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A SQL query; the views results, weights and trajectory "
                                          "answer most questions.")],
    format: Annotated[
        RowsFormat, typer.Option("--format", help="table, csv or json.")
    ] = RowsFormat.table,
    catalog: CatalogOpt = None,
) -> None:
    """Query the catalog read-only.

    Example: tdro sql "SELECT measure, transfer, avg(value) FROM results GROUP BY ALL" --format csv
    """
    rows = run_sql(_catalog(catalog), query, sandboxed=True)
    if format is RowsFormat.csv:
        sys.stdout.write(to_csv(rows))
    elif format is RowsFormat.json:
        print(to_json(rows))
    else:
        table = Table(*rows.columns)
        for row in rows.rows:
            table.add_row(*(cell(v) for v in row))
        console.print(table)


@app.command()
def report(
    experiment: Annotated[str, typer.Argument(help="Experiment name (the spec's `name`).")],
    catalog: CatalogOpt = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for report.md and the PNGs (default runs/reports/<experiment>/).")] = None,
) -> None:
    """Write report.md with PNG plots: alpha trajectories, final alpha, metric per arm and benchmark."""
    from tdro.report import write_report

    t0 = time.monotonic()
    path = write_report(_catalog(catalog), experiment, out)
    console.print(f"{path} ({time.monotonic() - t0:.1f}s)")
