"""The root `tdro` app: `tdro validate`, and every command group mounted on it.

Control plane: nothing imported here at module level imports torch, transformers or faiss, so
`tdro validate` and `tdro plan` answer in a second or two; the work plane is imported only inside the
commands that do work (`eval`, `data`). Groups: `tdro.cli.runner` (plan, run, status, sql, report, at the
top level), `tdro.cli.eval` (eval, at the top level), `tdro.cli.data` (`tdro data ...`) and
`tdro.cli.weights` (`tdro weights ...`).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tdro.cli import bench, data, runner, weights
from tdro.cli import eval as eval_cli
from tdro.cli.arguments import OverridesArg, SpecArg
from tdro.cli.console import console
from tdro.errors import UserError

app = typer.Typer(
    name="tdro",
    help="Config-as-code experiments for task-level DRO (tDRO) training of dense retrievers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def validate(
    spec: SpecArg,
    overrides: OverridesArg = None,
    check_data: Annotated[
        bool,
        typer.Option(
            "--check-data/--skip-data-check",
            help="Check that every dataset file and benchmark folder exists (skip it on a machine "
            "that does not hold the data, e.g. before submitting to a cluster).",
        ),
    ] = True,
    show_spec: Annotated[
        bool, typer.Option("--show-spec/--no-show-spec", help="Print the resolved spec.")
    ] = True,
) -> None:
    """Resolve and check a spec; print it and a summary of the arms and stages a run would create.

    Example: tdro validate experiments/demo.yaml dro.measure=loss train.steps=5
    """
    import yaml

    from tdro.spec.load import load_experiment

    experiment = load_experiment(spec, overrides or [], check_data=check_data)
    if show_spec:
        console.print(yaml.safe_dump(experiment.resolved, sort_keys=False, allow_unicode=True).rstrip())
        console.rule()
    first = experiment.arms[0]
    console.print(
        f"[bold]{experiment.spec.name}[/bold]: base model [cyan]{first.model.name}[/cyan] "
        f"({first.model.source.describe()}, {first.model.pooling.value} pooling), "
        f"{len(first.datasets)} datasets, {len(first.benchmarks)} benchmarks, {len(experiment.arms)} arm(s)"
    )
    table = Table("dataset", "language", "category", "symmetric", "size", "path", title="datasets")
    for card in first.datasets:
        table.add_row(card.name, card.language, card.category, "yes" if card.symmetric else "",
                      f"{card.size:,}" if card.size else "", card.path)
    console.print(table)
    _print_stages(experiment)
    console.print("[green]valid[/green]")


def _print_stages(experiment) -> None:  # type: ignore[no-untyped-def]
    from tdro.plan.graph import build_plan

    try:
        stages = build_plan(experiment).stages
    except UserError as exc:  # e.g. data that cannot be fingerprinted yet: show arms only
        console.print(f"[yellow]stage ids not computed:[/yellow] {exc.problems[0]}")
        table = Table("arm", "stages", title="arms")
        for arm in experiment.arms:
            n = len(arm.spec.transfer)
            table.add_row(arm.name, f"reference, optimize, {n} train, {n + 1} evaluate")
        console.print(table)
        return
    table = Table("kind", "id", "arms", title=f"{len(stages)} stages")
    for stage in stages:
        table.add_row(str(stage.kind), stage.id[:12], ", ".join(stage.arms))
    console.print(table)


def _mount_commands(group: typer.Typer) -> None:
    """Add the commands of a sub-app at the top level (`tdro eval`, `tdro run`, ...)."""
    app.registered_commands.extend(group.registered_commands)


_mount_commands(runner.app)
_mount_commands(eval_cli.app)
app.add_typer(bench.app, name="bench", help="Convert benchmark files (MIRACL) to BEIR layout.")
app.add_typer(data.app, name="data", help="Check training files; write the demo collection.")
app.add_typer(weights.app, name="weights",
              help="Convert stage-1 mixture weights (alpha) to and from the reference code's JSON files.")
