"""The `tdro` command. Control plane: work-plane modules are imported only inside the commands that do work.

Every user error is one line per problem on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table

from tdro.errors import USER_ERROR_EXIT_CODE, UserError

app = typer.Typer(
    name="tdro",
    help="Config-as-code experiments for task-level DRO (tDRO) training of dense retrievers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)

SpecArg = Annotated[Path, typer.Argument(help="Experiment spec YAML, e.g. experiments/demo.yaml.")]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Dotted overrides key=value, e.g. dro.measure=loss train.steps=5.", show_default=False
    ),
]


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


def _mount_commands(module_name: str) -> None:
    """Add the commands of a sub-app at the top level (`tdro eval`, `tdro run`, ...)."""
    app.registered_commands.extend(importlib.import_module(module_name).app.registered_commands)


def _mount_group(module_name: str, name: str, help_text: str) -> None:
    app.add_typer(importlib.import_module(module_name).app, name=name, help=help_text)


_mount_commands("tdro.runner_cli")
_mount_commands("tdro.retrieval.cli")
_mount_group("tdro.data.cli", "data", "Check training files; write the demo collection.")
_mount_group("tdro.weights_cli", "weights", "Convert mixture weights to and from the reference JSON format.")


_vendored_click: ModuleType | None
try:  # typer 0.2x carries its own copy of click, whose errors are not click's classes
    from typer._click import exceptions as _vendored_click
except ImportError:  # older typer: plain click
    _vendored_click = None
_CLICK = [m for m in (click.exceptions, _vendored_click) if m is not None]
_CLICK_ERRORS = tuple(m.ClickException for m in _CLICK)
_NO_ARGS_HELP = tuple(m.NoArgsIsHelpError for m in _CLICK if hasattr(m, "NoArgsIsHelpError"))
_ABORTS = tuple(m.Abort for m in _CLICK if hasattr(m, "Abort"))
_EXITS = tuple({click.exceptions.Exit, typer.Exit})


def _usage_line(exc: Exception) -> str:
    """One line for a command-line usage error: the command, what is wrong, where help is."""
    ctx = getattr(exc, "ctx", None)
    message = " ".join(exc.format_message().split()).rstrip(".")  # type: ignore[attr-defined]
    if ctx is None:
        return message
    return f"{ctx.command_path}: {message} (see {ctx.command_path} --help)"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (2 for user errors, printed one line per problem)."""
    try:
        code = app(args=argv, standalone_mode=False, prog_name="tdro")
    except UserError as exc:
        for line in exc.problems:
            err_console.print(f"[red]error:[/red] {line}", highlight=False, markup=True)
        return USER_ERROR_EXIT_CODE
    except _EXITS as exc:
        return int(getattr(exc, "exit_code", 0))
    except (*_ABORTS, KeyboardInterrupt):
        err_console.print("aborted")
        return 130
    except _NO_ARGS_HELP as exc:  # `tdro` or `tdro data` alone: the help, as click prints it standalone
        print(exc.format_message())
        return USER_ERROR_EXIT_CODE
    except _CLICK_ERRORS as exc:  # usage errors (an unknown option, a missing argument) and the others
        err_console.print(f"[red]error:[/red] {_usage_line(exc)}", highlight=False, markup=True)
        return USER_ERROR_EXIT_CODE
    # Without standalone mode, click returns (not raises) the code of typer.Exit and of Ctrl-C.
    return code if isinstance(code, int) else 0


def run() -> None:
    sys.exit(main())
